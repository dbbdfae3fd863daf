"""LightningModules of the hybrid sign classifier and of the landmark-only classifier."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from ..inference import HAND_INPUTS, InputSpec, image_input
from ..models.hybrid import OUTPUTS, HybridSignNet, HybridSignNetConfig, LandmarkNet, LandmarkNetConfig
from .classification import ClassificationTask


class HybridSignClassifier(ClassificationTask):
    """``HybridSignNet`` trained as a classifier on batches of ``SignDataModule``.

    With both inputs the training loss is the fusion head's cross-entropy plus ``auxiliary_loss_weight`` times each
    branch classifier's. Every validation scores each classifier of the model (``fused``, ``image``,
    ``landmarks``, ``mean``): their losses and accuracies are logged as ``val_{name}_loss`` and ``val_{name}_acc``,
    and with ``select_output`` the one with the lowest validation loss becomes the model's prediction
    (``HybridSignNet.output``, saved in checkpoints). ``val_loss``, ``val_acc``, ``val_top5`` and ``val_f1_macro``
    are those of the chosen classifier, so the model is never worse on validation than its best branch.

    Args:
        num_classes: number of classes (default: the datamodule's).
        net: the architecture (``HybridSignNetConfig``: backbone, inputs, fusion, landmark encoder, ...); in a
            config, e.g. ``net: {backbone: tf_efficientnetv2_s, fusion: concat}``.
        auxiliary_loss_weight: weight of each branch classifier's loss.
        select_output: let the validation loss choose the classifier that predicts (else the fusion head).
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, ...).
    """

    model: HybridSignNet

    def __init__(
        self,
        num_classes: int | None = None,
        net: HybridSignNetConfig = HybridSignNetConfig(),
        auxiliary_loss_weight: float = 1.0,
        select_output: bool = True,
        **kwargs,
    ):
        super().__init__(num_classes=num_classes, **kwargs)

    def build_model(self) -> nn.Module:
        return HybridSignNet(self.hparams.num_classes, HybridSignNetConfig(**self.hparams.net))

    @property
    def _scores_outputs(self) -> bool:
        return self.model.inputs == "both"

    def build_metrics(self) -> None:
        super().build_metrics()
        if self._scores_outputs:
            names = self.model.outputs()
            self.val_outputs = nn.ModuleDict({name: self.val_metrics.clone() for name in names})
            self.val_output_loss = nn.ModuleDict({name: MeanMetric() for name in names})

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
        for name in self.val_outputs:
            if name in outputs:
                metrics, loss = self._output_metrics(name)
                metrics.update(outputs[name], labels)
                loss.update(self.classification_loss(outputs[name], labels), len(labels))
        self.val_confusion.update(outputs["logits"], labels)
        # every output's logits (B, outputs, C): the thresholds are fitted for the output chosen at the epoch's end
        # (an output a progressive stage switched off predicts the mean, as in forward_branches)
        every_output = torch.stack([outputs.get(name, outputs["mean"]) for name in self.val_outputs], 1)
        self.collect_validation(every_output, labels)

    def threshold_logits(self, collected: torch.Tensor) -> torch.Tensor:
        if not self._scores_outputs:
            return collected
        return collected[:, list(self.val_outputs).index(self.model.output)]

    def _output_metrics(self, name: str) -> tuple[MetricCollection, MeanMetric]:
        """The validation metrics and mean loss of one classifier of the model."""
        return self.val_outputs[name], self.val_output_loss[name]  # type: ignore[return-value]  # ModuleDict items

    def on_validation_epoch_end(self) -> None:
        if self._scores_outputs:
            self._choose_output()
        super().on_validation_epoch_end()

    def _choose_output(self) -> None:
        # every rank computes the same synchronised values, so every rank makes the same choice
        metrics = {name: self._output_metrics(name) for name in self.val_outputs}
        scored = [name for name, (_, loss) in metrics.items() if loss.update_count]
        losses = {name: metrics[name][1].compute() for name in scored}
        values = {name: metrics[name][0].compute() for name in scored}
        for values_metric, loss_metric in metrics.values():
            values_metric.reset()
            loss_metric.reset()
        if not losses:
            return
        for name in scored:
            self.log(f"val_{name}_loss", losses[name])
            self.log(f"val_{name}_acc", values[name]["val_acc"])
        best = min(losses, key=lambda n: losses[n].item())
        chosen = best if self.hparams.select_output or self.model.output not in losses else self.model.output
        if self.hparams.select_output and not self.trainer.sanity_checking:
            self.model.output = best
        self.log("val_loss", losses[chosen], prog_bar=True)
        self.log_dict(values[chosen], prog_bar=True)
        self.log("val_output", float(OUTPUTS.index(chosen)))


class LandmarkClassifier(ClassificationTask):
    """``LandmarkNet`` trained on the hand landmarks alone (``LandmarkDataModule``): no image is decoded, so it
    trains in seconds on a CPU. Its network is the hybrid's landmark branch.

    Args:
        num_classes: number of classes (default: the datamodule's).
        net: the architecture (``LandmarkNetConfig``: encoder, rotate_hands, use_geometry, dropout); in a config,
            e.g. ``net: {encoder: attention}``.
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, ...).
    """

    def __init__(self, num_classes: int | None = None, net: LandmarkNetConfig = LandmarkNetConfig(), **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)

    def build_model(self) -> nn.Module:
        return LandmarkNet(self.hparams.num_classes, LandmarkNetConfig(**self.hparams.net))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["landmarks"], batch["present"], batch.get("aspect"))

    def input_specs(self) -> tuple[InputSpec, ...]:
        return HAND_INPUTS
