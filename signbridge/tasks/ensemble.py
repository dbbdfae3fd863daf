"""An ensemble of trained classifiers used as one classifier (``signbridge test|predict``)."""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn

from ..errors import InputError
from ..inference import InputSpec
from ..metrics import fit_logit_biases, macro_f1
from .base import load_model
from .classification import ClassificationTask


def load_member(path: str) -> ClassificationTask:
    """A classifier checkpoint as its task, in eval mode on the CPU."""
    task = load_model(path)
    if not isinstance(task, ClassificationTask):
        raise InputError(f"{path}: a {type(task).__name__} checkpoint is not a classifier: an ensemble needs "
                         "classifiers")
    return task


def fit_member_weights(log_probs: torch.Tensor, labels: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Convex weights of ``(members, N, C)`` log-probabilities minimising the cross-entropy of their weighted mean
    of probabilities on ``labels`` (Adam on softmax-parametrised weights, from equal weights)."""
    # called from test/predict hooks, which run in inference mode: a normal copy of the values, with autograd on
    with torch.inference_mode(False), torch.enable_grad():
        log_probs, labels = log_probs.float().detach().clone(), labels.long().clone()
        scores = torch.zeros(len(log_probs), requires_grad=True)
        optimizer = torch.optim.Adam([scores], lr=0.1)
        true_class = log_probs[:, torch.arange(len(labels)), labels]  # (members, N)
        for _ in range(steps):
            optimizer.zero_grad()
            # log of sum_m w_m p_m(y) for every sample
            loss = -torch.logsumexp(true_class + scores.log_softmax(0)[:, None], dim=0).mean()
            loss.backward()
            optimizer.step()
        return scores.detach().softmax(0)


class EnsembleClassifier(ClassificationTask):
    """N trained checkpoints of one classifier (e.g. trained with different seeds, ``signbridge ensemble``) as one
    classifier: the weighted mean of their class probabilities. Used with ``signbridge test``, ``validate`` and
    ``predict`` (it is not trained itself); ``forward`` returns the log of the mean probabilities.

    The members are rebuilt from their checkpoints (any signbridge classifier; all must have the same classes and
    read the same batches). Each member's own decision thresholds are not used: the ensemble averages their
    probabilities and may fit thresholds of its own.

    Args:
        checkpoints: the members' checkpoint files.
        weights: ``mean`` (equal weights), ``fitted`` (weights minimising the cross-entropy of the mean on the
            datamodule's validation split, fitted when test/validate/predict starts) or one weight per member.
        fit_thresholds: fit per-class logit biases of the ensemble on the validation split (maximising macro F1),
            like ``ClassificationTask``'s, when test/validate/predict starts.
        apply_thresholds: add the fitted biases before the argmax in test and predict.
    """

    def __init__(
        self,
        checkpoints: list[str],
        weights: Literal["mean", "fitted"] | list[float] = "mean",
        fit_thresholds: bool = False,
        apply_thresholds: bool = True,
    ):
        if not checkpoints:
            raise InputError("an ensemble needs at least one checkpoint (model.init_args.checkpoints)")
        if isinstance(weights, list) and len(weights) != len(checkpoints):
            raise InputError(f"{len(weights)} ensemble weights for {len(checkpoints)} checkpoints")
        self._members = [load_member(path) for path in checkpoints]
        sizes = {member.hparams.num_classes for member in self._members}
        names = {tuple(member.class_names or ()) for member in self._members}
        if len(sizes) > 1 or len(names) > 1:
            raise InputError(f"the ensemble's checkpoints were trained on different classes: {', '.join(checkpoints)}")
        super().__init__(fit_thresholds=fit_thresholds, apply_thresholds=apply_thresholds)
        # built here, not from num_classes: LightningCLI saves only the arguments it passed, so the base's settings
        # (the loss of validate/test among them) are set to their defaults first
        for name, parameter in inspect.signature(ClassificationTask.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                self.hparams.setdefault(name, parameter.default)
        self.hparams["num_classes"] = sizes.pop()
        self.logit_bias = torch.zeros(self.hparams.num_classes)
        self._build()
        self.class_names = self._members[0].class_names
        self.preprocessing = self._members[0].preprocessing  # the members read the same batches
        initial = [1.0] * len(checkpoints) if not isinstance(weights, list) else weights
        self.member_weight: torch.Tensor
        self.register_buffer("member_weight", torch.tensor(initial) / sum(initial))

    model: nn.ModuleList
    built_from_checkpoint = False  # from its members' checkpoints

    def input_specs(self) -> tuple[InputSpec, ...]:
        return self._members[0].input_specs()

    def build_model(self) -> nn.Module:
        return nn.ModuleList(self._members)

    def member_log_probs(self, batch: dict) -> torch.Tensor:
        """``(members, B, C)`` log-probabilities of every member."""
        return torch.stack([member(batch).float().log_softmax(-1) for member in self.model])

    def forward(self, batch: dict) -> torch.Tensor:
        log_weight = self.member_weight.clamp_min(1e-12).log()[:, None, None]
        return torch.logsumexp(self.member_log_probs(batch) + log_weight, dim=0)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            raise InputError("an ensemble is not trained: fit its members (signbridge ensemble), then test it")
        super().setup(stage)
        if self.class_names is not None and self._members[0].class_names not in (None, self.class_names):
            raise InputError(f"the ensemble's members were trained on the classes {self._members[0].class_names} "
                             f"but the data has {self.class_names}")

    def _fit_on_validation(self) -> None:
        h = self.hparams
        if h.weights != "fitted" and not h.fit_thresholds:
            return
        datamodule = self.datamodule
        if datamodule is None or not hasattr(datamodule, "val_dataloader"):
            raise InputError("weights: fitted and fit_thresholds need a datamodule with a validation split")
        datamodule.setup("fit")
        was_training = self.training
        self.eval()
        with torch.no_grad():
            batches = [move_data_to_device(batch, self.device) for batch in datamodule.val_dataloader()]
            log_probs = torch.cat([self.member_log_probs(batch) for batch in batches], dim=1)
            labels = torch.cat([batch["label"] for batch in batches])
        self.train(was_training)
        if h.weights == "fitted":
            self.member_weight.copy_(fit_member_weights(log_probs.cpu(), labels.cpu()))
        if h.fit_thresholds:
            mixed = torch.logsumexp(log_probs + self.member_weight.clamp_min(1e-12).log()[:, None, None], dim=0)
            self.logit_bias.copy_(fit_logit_biases(mixed, labels))
            before, after = (macro_f1((mixed + bias).argmax(1), labels, h.num_classes) for bias in (0, self.logit_bias))
            print(f"ensemble thresholds: validation macro F1 {before:.4f} -> {after:.4f}")
        # every process uses the values of the first (they may differ in the last bits)
        self.member_weight.copy_(self.trainer.strategy.broadcast(self.member_weight, 0))
        self.logit_bias.copy_(self.trainer.strategy.broadcast(self.logit_bias, 0))

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._fit_on_validation()

    def on_test_start(self) -> None:
        self._fit_on_validation()

    def on_predict_start(self) -> None:
        self._fit_on_validation()

    def collect_validation(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        pass  # the ensemble's thresholds are fitted once, before it is evaluated
