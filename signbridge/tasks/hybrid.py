"""LightningModules of the hybrid sign classifier and of the landmark-only classifier."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import CatMetric, Metric

from ..errors import InputError
from ..hparams import init_arguments
from ..inference import HAND_INPUTS, InputSpec, image_input
from ..metrics import ClassifierTally, mean_loss, scores_from_counts
from ..models.hybrid import (
    OUTPUTS,
    PARAMETER_GROUPS,
    HybridSignNet,
    HybridSignNetConfig,
    LandmarkNet,
    LandmarkNetConfig,
    ParameterGroup,
)
from .base import load_model
from .classification import ClassificationTask

# the two kinds of sample the hybrid predicts with (possibly) different classifiers
SUBSETS = ("hands", "no_hands")


@dataclass(frozen=True)
class LandmarkPretraining:
    """Train the hybrid's landmark branch first, alone, as ``LandmarkClassifier`` on the same landmark cache and
    split (``configs/sign_landmarks.yaml``'s recipe): no image is decoded, so it takes seconds to a minute on a CPU,
    and joint training starts from a converged branch. The loss settings (``label_smoothing``, ``weight_decay``,
    ``class_weights``, ``loss``) are the hybrid's; the best epoch by ``val_loss`` is kept. In a config it is the
    ``landmark_pretraining`` argument of ``HybridSignClassifier`` (``landmark_pretraining: {epochs: 100}``).
    """

    epochs: int = 100
    """Epochs over the landmark cache (the landmark-only recipe's 100)."""
    lr: float = 1e-3
    """AdamW learning rate (warm-up, then cosine decay)."""
    warmup_epochs: int = 3
    """Linear warm-up of the cosine schedule."""
    batch_size: int = 64
    """Batch size."""


class HybridSignClassifier(ClassificationTask):
    """``HybridSignNet`` trained as a classifier on batches of ``SignDataModule``.

    With both inputs the training loss is the fusion head's cross-entropy plus ``auxiliary_loss_weight`` times each
    branch classifier's. Every validation scores each classifier of the model (``fused``, ``image``,
    ``landmarks``, ``mean``), separately on the photos with a detected hand and on those without: their losses and
    accuracies are logged as ``val_{name}_loss`` and ``val_{name}_acc`` (all photos), and with ``select_output``
    the classifier with the lowest validation loss on each kind of photo predicts it (``HybridSignNet.output`` and
    ``no_hand_output``, saved in checkpoints). ``val_loss``, ``val_acc``, ``val_top5`` and ``val_f1_macro`` are
    those of that combined prediction, so the model is never worse on validation than its best branch.

    The landmark branch can start trained: from a landmark-only checkpoint of the same classes
    (``landmark_checkpoint``) or by a first stage on the landmark cache alone (``landmark_pretraining``); a resumed
    fit keeps its checkpoint's weights. ``lr_scale`` gives a parameter group (``image``, ``landmarks``, ``fusion``,
    ``head``) its own share of the learning rate: 0 keeps its weights (BatchNorm statistics still follow the data).

    Args:
        num_classes: number of classes (default: the datamodule's).
        net: the architecture (``HybridSignNetConfig``: backbone, inputs, fusion, landmark encoder, ...); in a
            config, e.g. ``net: {backbone: tf_efficientnetv2_s, fusion: concat}``.
        auxiliary_loss_weight: weight of each branch classifier's loss.
        select_output: let the validation loss choose the classifiers that predict (else the fusion head).
        landmark_pretraining: train the landmark branch alone first (``LandmarkPretraining``); None: no.
        landmark_checkpoint: a ``LandmarkClassifier`` checkpoint (same classes, same ``net.landmarks``) whose
            network the landmark branch starts from.
        lr_scale: learning-rate factor per parameter group, e.g. ``{landmarks: 0.1}``; the others train at ``lr``.
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, ...).
    """

    # the training step calls forward_branches (every classifier's logits), not forward
    compiled_modules = ("model.forward_branches",)

    model: HybridSignNet

    def __init__(
        self,
        num_classes: int | None = None,
        net: HybridSignNetConfig = HybridSignNetConfig(),
        auxiliary_loss_weight: float = 1.0,
        select_output: bool = True,
        landmark_pretraining: LandmarkPretraining | None = None,
        landmark_checkpoint: str | None = None,
        lr_scale: dict[ParameterGroup, float] | None = None,
        **kwargs,
    ):
        if landmark_pretraining is not None and landmark_checkpoint is not None:
            raise InputError("give landmark_pretraining or landmark_checkpoint, not both")
        unknown = set(lr_scale or {}) - set(PARAMETER_GROUPS)
        if unknown:
            raise InputError(f"lr_scale: unknown parameter groups {sorted(unknown)}; choose from {PARAMETER_GROUPS}")
        super().__init__(num_classes=num_classes, **kwargs)

    def build_model(self) -> nn.Module:
        return HybridSignNet(self.hparams.num_classes, HybridSignNetConfig(**self.hparams.net))

    @property
    def _scores_outputs(self) -> bool:
        return self.model.inputs == "both"

    def build_metrics(self) -> None:
        super().build_metrics()
        if self._scores_outputs:
            n = self.hparams.num_classes
            self.val_tallies = nn.ModuleDict({
                f"{name}_{subset}": ClassifierTally(n) for name in self.model.outputs() for subset in SUBSETS
            })
            # hand presence of the validation samples kept for the thresholds (see threshold_logits)
            self.val_has_hand = CatMetric()

    def forward_outputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """The logits of every classifier of the model and of its prediction (``logits``)."""
        image = batch.get("image")
        image = self.channels_last_input(image) if image is not None else None
        return self.model.forward_branches(image, batch["landmarks"], batch["present"], batch.get("aspect"))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.forward_outputs(batch)["logits"]

    def input_specs(self) -> tuple[InputSpec, ...]:
        inputs = self.model.inputs
        image = (image_input(self.preprocessing.get("image", {}).get("size")),) if inputs != "landmarks" else ()
        return image + (HAND_INPUTS if inputs != "image" else ())

    def optimizer_parameter_groups(self) -> Any:
        scales = self.hparams.get("lr_scale") or {}
        if not scales:
            return self.parameters()
        groups: list[dict[str, Any]] = []
        grouped: set[int] = set()
        for name, modules in self.model.parameter_groups().items():
            params = [p for module in modules for p in module.parameters()]
            grouped.update(map(id, params))
            scale = float(scales.get(name, 1.0))
            if params:
                groups.append({"params": params, "lr": self.hparams.lr * scale, "lr_scale": scale, "name": name})
        rest = [p for p in self.parameters() if id(p) not in grouped]
        return groups + ([{"params": rest}] if rest else [])

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.forward_outputs(batch)
        labels = batch["label"]
        if not self._scores_outputs:
            return self.classification_loss(outputs["logits"], labels), outputs["logits"]
        branch_weight = self.hparams.auxiliary_loss_weight if "fused" in outputs else 1.0
        losses = [
            (1.0 if name == "fused" else branch_weight) * self.classification_loss(outputs[name], labels)
            for name in ("fused", "image", "landmarks") if name in outputs
        ]
        return torch.stack(losses).sum(), outputs["logits"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if not self._scores_outputs:
            return super().validation_step(batch, batch_idx)
        outputs = self.forward_outputs(batch)
        labels = batch["label"]
        has_hand = batch["present"].any(-1)
        for subset, mask in zip(SUBSETS, (has_hand, ~has_hand)):
            if not mask.any():
                continue
            for name in self.model.outputs():
                if name in outputs:
                    logits = outputs[name][mask]
                    loss_sum = self.classification_loss(logits, labels[mask]) * mask.sum()
                    self._tally(name, subset).update(logits, labels[mask], loss_sum)
        # every output's logits (B, outputs, C): the thresholds are fitted for the outputs chosen at the epoch's end
        # (an output a progressive stage switched off predicts the mean, as in forward_branches)
        every_output = torch.stack([outputs.get(name, outputs["mean"]) for name in self.model.outputs()], 1)
        self.collect_validation(every_output, labels)
        if self.hparams.get("fit_thresholds"):
            self.val_has_hand.update(has_hand.float())

    def threshold_logits(self, collected: torch.Tensor) -> torch.Tensor:
        if not self._scores_outputs:
            return collected
        has_hand = self.val_has_hand.compute().bool()
        self.val_has_hand.reset()
        return self.model.prediction(dict(zip(self.model.outputs(), collected.unbind(1))), has_hand)

    def _tally(self, name: str, subset: str) -> ClassifierTally:
        return self.val_tallies[f"{name}_{subset}"]  # type: ignore[return-value]  # ModuleDict items

    def on_validation_epoch_end(self) -> None:
        if not self._scores_outputs:
            return super().on_validation_epoch_end()
        chosen = self._choose_outputs()
        self.fit_thresholds()
        if chosen is not None:  # the figure of the outputs chosen, whose scores were logged
            self.log_confusion_figure("val", chosen["confusion"])

    def _choose_outputs(self) -> dict[str, torch.Tensor] | None:
        """Score every output on the photos with and without a hand, choose the outputs (``select_output``), log
        their validation scores and ``val_{output}_loss``/``_acc``; returns the chosen outputs' counts."""
        # every rank computes the same synchronised counts, so every rank makes the same choice
        counts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for name in self.model.outputs():
            for subset in SUBSETS:
                tally = self._tally(name, subset)
                if tally.update_count:
                    counts[name, subset] = tally.compute()
                tally.reset()
        if not counts:
            return None
        scored = sorted({name for name, _ in counts}, key=self.model.outputs().index)
        for name in scored:
            total = _summed([counts[key] for key in counts if key[0] == name])
            self.log(f"val_{name}_loss", mean_loss(total))
            self.log(f"val_{name}_acc", scores_from_counts(total["confusion"], total["top_k_correct"])["acc"])

        def best(subset: str) -> str | None:
            losses = {name: mean_loss(counts[name, subset]).item() for name in scored if (name, subset) in counts}
            return min(losses, key=losses.__getitem__) if losses else None

        found_with, found_without = best("hands"), best("no_hands")
        with_hand: str = found_with or found_without or scored[0]
        without_hand: str = found_without or with_hand
        kept = (self.model.output, self.model.no_hand_output)
        if not self.hparams.select_output and all(name in scored for name in kept):
            with_hand, without_hand = kept  # scored as the model predicts (a stage may have switched one off)
        elif self.hparams.select_output and not self.trainer.sanity_checking:
            self.model.output = with_hand
            self.model.no_hand_output = without_hand
        chosen = _summed([counts[key] for key in ((with_hand, "hands"), (without_hand, "no_hands")) if key in counts])
        self.log_epoch_scores("val", chosen)
        self.log("val_output", float(OUTPUTS.index(with_hand)))
        self.log("val_no_hand_output", float(OUTPUTS.index(without_hand)))
        return chosen

    def on_fit_start(self) -> None:
        super().on_fit_start()
        h = self.hparams
        wanted = h.get("landmark_checkpoint") or h.get("landmark_pretraining") is not None
        # a resumed fit has its checkpoint's weights; a model without a landmark branch has nothing to start
        if not wanted or self.trainer.ckpt_path is not None or self.model.landmarks is None:
            return
        if h.get("landmark_checkpoint"):
            network = self._landmark_checkpoint_network(h.landmark_checkpoint)
        else:
            # every process trains it (a Trainer makes collective calls while a process group exists); the first
            # keeps its checkpoint in the run's folder and gives its weights to the others
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "landmark_branch"
            with tempfile.TemporaryDirectory() as elsewhere:
                network = self._pretrained_landmark_network(folder if self.trainer.is_global_zero else Path(elsewhere))
        state = {name: value.cpu() for name, value in network.state_dict().items()}
        state = self.trainer.strategy.broadcast(state, src=0)
        self.model.landmarks.load_state_dict(state)  # copies into the parameters the optimiser and DDP hold

    def _landmark_checkpoint_network(self, path: str) -> nn.Module:
        task = load_model(path)
        if not isinstance(task, LandmarkClassifier):
            raise InputError(f"{path}: landmark_checkpoint must be a LandmarkClassifier checkpoint, "
                             f"not {type(task).__name__}")
        if task.class_names != self.class_names:
            raise InputError(f"{path}: trained on the classes {task.class_names}, but the data has {self.class_names}")
        if LandmarkNetConfig(**task.hparams.net) != self.model.config.landmarks:
            raise InputError(f"{path}: its net ({LandmarkNetConfig(**task.hparams.net)}) is not this hybrid's "
                             f"net.landmarks ({self.model.config.landmarks})")
        return task.model

    def _pretrained_landmark_network(self, folder: Path) -> nn.Module:
        """Train ``LandmarkClassifier`` on the landmark cache and split of this fit's datamodule (on the CPU, in
        this process; its checkpoint and metrics go to ``folder``); returns its best network by ``val_loss``."""
        from ..data import LandmarkDataModule, SignDataModule

        datamodule = self.datamodule
        if not isinstance(datamodule, SignDataModule):
            raise InputError("landmark_pretraining needs a SignDataModule (it trains on its landmark cache)")
        h = self.hparams
        settings = LandmarkPretraining(**h.landmark_pretraining)  # saved as a plain dict
        data = LandmarkDataModule(**{**init_arguments(datamodule.hparams), "batch_size": settings.batch_size,
                                     "num_workers": 0, "pin_memory": False, "persistent_workers": False})
        task = LandmarkClassifier(
            self.hparams.num_classes, self.model.config.landmarks, dim=self.model.config.embed_dim,
            lr=settings.lr, weight_decay=h.weight_decay, label_smoothing=h.label_smoothing,
            class_weights=h.class_weights, loss=h.loss, focal_gamma=h.focal_gamma, lr_schedule="cosine",
            warmup_epochs=settings.warmup_epochs, min_lr=h.min_lr,
        )
        # each process sees every sample: its metrics need no other process's
        for metric in task.modules():
            if isinstance(metric, Metric):
                metric.sync_on_compute = False
        best = ModelCheckpoint(folder, filename="best", monitor="val_loss", mode="min", enable_version_counter=False)
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_epochs=settings.epochs, callbacks=[best],
            logger=CSVLogger(folder, name="", version=""), log_every_n_steps=10,
            enable_progress_bar=False, enable_model_summary=False,
        )
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # the fit's own random stream is left where it was
            torch.manual_seed(torch.initial_seed())
            trainer.fit(task, data)
        checkpoint = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        task.load_state_dict(checkpoint["state_dict"])
        rank_zero_info(f"landmark branch trained alone: {trainer.current_epoch} epochs in "
                       f"{time.perf_counter() - start:.0f} s, best val_loss {float(best.best_model_score or 0):.4f} "
                       f"({best.best_model_path})")
        return task.model


def _summed(counts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([c[key] for c in counts]).sum(0) for key in counts[0]}


class LandmarkClassifier(ClassificationTask):
    """``LandmarkNet`` trained on the hand landmarks alone (``LandmarkDataModule``): no image is decoded, so it
    trains in seconds on a CPU. Its network is the hybrid's landmark branch.

    Args:
        num_classes: number of classes (default: the datamodule's).
        net: the architecture (``LandmarkNetConfig``: encoder, rotate_hands, use_geometry, dropout); in a config,
            e.g. ``net: {encoder: attention}``.
        dim: feature width (a hybrid's ``net.embed_dim`` for its landmark branch).
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, ...).
    """

    def __init__(self, num_classes: int | None = None, net: LandmarkNetConfig = LandmarkNetConfig(), dim: int = 256,
                 **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)

    def build_model(self) -> nn.Module:
        net = LandmarkNetConfig(**self.hparams.net)
        return LandmarkNet(self.hparams.num_classes, net, self.hparams.get("dim", 256))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["landmarks"], batch["present"], batch.get("aspect"))

    def input_specs(self) -> tuple[InputSpec, ...]:
        return HAND_INPUTS
