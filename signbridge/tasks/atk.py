"""LightningModule of the tunable CNN."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import check_range
from ..inference import InputSpec, image_input
from ..models.atk import ATKCNN
from .classification import ClassificationTask


class ATKClassifier(ClassificationTask):
    """``ATKCNN`` trained as a classifier on batches of ``ImageFolderDataModule``.

    Args:
        num_classes: number of classes (default: the datamodule's).
        filters1: first convolution's channels (the reference search: 32, 64, 96, 128).
        filters2: second convolution's channels (same choices).
        units: hidden dense width (32..256 in steps of 32).
        dropout: dropout rate (0.2..0.5).
        image_size: input side (it fixes the dense layer's size); default: the datamodule's ``image_size``.
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, ...).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        filters1: int = 32,
        filters2: int = 64,
        units: int = 128,
        dropout: float = 0.5,
        image_size: int | None = None,
        **kwargs,
    ):
        for name, value in (("filters1", filters1), ("filters2", filters2), ("units", units)):
            check_range(name, value, 1)
        check_range("dropout", dropout, 0, 1, high_open=True)
        if image_size is not None:
            check_range("image_size", image_size, 8)
        super().__init__(num_classes=num_classes, **kwargs)

    data_setting_names = ("num_classes", "image_size")

    def data_settings(self, datamodule) -> dict:
        settings = super().data_settings(datamodule)
        image_size = getattr(datamodule, "hparams", {}).get("image_size")
        return {**settings, "image_size": image_size} if image_size is not None else settings

    def build_model(self) -> nn.Module:
        h = self.hparams
        return ATKCNN(h.num_classes, h.filters1, h.filters2, h.units, h.dropout, h.image_size)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(self.channels_last_input(batch["image"]))

    def input_specs(self) -> tuple[InputSpec, ...]:
        return (image_input(self.hparams.image_size),)
