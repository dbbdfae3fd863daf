"""The LightningModule of the sign-sequence classifiers (``SequenceNet``: conv-transformer, GRU/LSTM, pooled)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import check_range
from ..inference import InputSpec, sequence_inputs
from ..models.sequence import SequenceNet, SequenceNetConfig
from .classification import ClassificationTask


class SequenceClassifier(ClassificationTask):
    """``SequenceNet`` trained on the landmark sequences of ``SequenceDataModule`` (``configs/sign_sequences.yaml``).

    Args:
        num_classes: number of classes (default: the datamodule's).
        parts: the landmark parts the network reads, in the layout's order (default: the datamodule's).
        net: the architecture (``SequenceNetConfig``: encoder, dim, depth, ...); in a config, e.g.
            ``net: {encoder: gru}``.
        late_dropout: the classifier's input dropout from ``late_dropout_start`` on (the Kaggle ISLR winners' "late
            dropout": strong regularisation once the network has learned the easy part); None: ``net.head_dropout``
            throughout.
        late_dropout_start: when it starts, as a share of ``max_epochs``.
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, loss, lr_schedule,
            ...).
    """

    data_setting_names: tuple[str, ...] = ("num_classes", "parts")

    def __init__(self, num_classes: int | None = None, parts: list[str] | None = None,
                 net: SequenceNetConfig = SequenceNetConfig(), late_dropout: float | None = None,
                 late_dropout_start: float = 0.5, **kwargs):
        if late_dropout is not None:
            check_range("late_dropout", late_dropout, 0, 1, high_open=True)
        check_range("late_dropout_start", late_dropout_start, 0, 1)
        super().__init__(num_classes=num_classes, **kwargs)

    def data_settings(self, datamodule) -> dict[str, Any]:
        settings = super().data_settings(datamodule)
        parts = getattr(datamodule, "parts", None)
        if parts is not None:
            settings["parts"] = list(parts)
        return settings

    @property
    def sequence_net(self) -> SequenceNet:
        """The ``SequenceNet`` of the task's model."""
        assert isinstance(self.model, SequenceNet)
        return self.model

    def build_model(self) -> nn.Module:
        return SequenceNet(self.hparams.num_classes, tuple(self.hparams.parts), SequenceNetConfig(**self.hparams.net))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["points"], batch["present"], batch["mask"])

    def input_specs(self) -> tuple[InputSpec, ...]:
        return sequence_inputs(tuple(self.hparams.parts or ()))

    def on_train_epoch_start(self) -> None:
        h = self.hparams
        if h.get("late_dropout") is not None and self.trainer.max_epochs:
            late = self.current_epoch >= int(h.late_dropout_start * self.trainer.max_epochs)
            dropout = self.sequence_net.head_dropout
            assert isinstance(dropout, nn.Dropout)
            dropout.p = h.late_dropout if late else SequenceNetConfig(**h.net).head_dropout
