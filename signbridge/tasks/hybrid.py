"""LightningModule of the hybrid sign classifier."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..models.hybrid import HybridSignNet, Inputs
from .classification import ClassificationTask


class HybridSignClassifier(ClassificationTask):
    """``HybridSignNet`` trained as a classifier on batches of ``SignDataModule``.

    Args:
        num_classes: number of classes.
        backbone: timm image backbone (``test_efficientnet`` is a tiny one for tests).
        pretrained: load pretrained backbone weights.
        weights_path: local backbone weights file (nothing is downloaded when given).
        inputs: ``both``, ``image`` or ``landmarks`` (ablation).
        fusion: ``cross_attention`` or ``concat`` (ablation).
        spatial_attention: spatial-attention gate on the backbone features (ablation).
        use_geometry: geometric hand features as a third input (ablation).
        drop_path_rate: stochastic depth of the backbone.
        **kwargs: see ``ClassificationTask`` (lr, weight_decay, label_smoothing, class_weights, ...).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "tf_efficientnetv2_s",
        pretrained: bool = False,
        weights_path: str | None = None,
        inputs: Inputs = "both",
        fusion: Literal["cross_attention", "concat"] = "cross_attention",
        spatial_attention: bool = True,
        use_geometry: bool = False,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(num_classes=num_classes, **kwargs)

    def build_model(self) -> nn.Module:
        h = self.hparams
        return HybridSignNet(
            h.num_classes, backbone=h.backbone, pretrained=h.pretrained, weights_path=h.weights_path,
            inputs=h.inputs, fusion=h.fusion, spatial_attention=h.spatial_attention, use_geometry=h.use_geometry,
            drop_path_rate=h.drop_path_rate,
        )

    def forward(self, batch: dict) -> torch.Tensor:
        image = batch["image"]
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.model(image, batch["landmarks"], batch["present"])
