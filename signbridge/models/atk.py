"""The small tunable CNN of the reference project ("ATK CNN", see ``docs/origins.md``)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


class ATKCNN(nn.Module):
    """rescale 1/255 -> conv(f1, 3x3) + ReLU -> maxpool 2 -> conv(f2, 3x3) + ReLU -> maxpool 2 -> flatten ->
    dense(units) + ReLU -> dropout -> dense(classes). Convolutions are unpadded, like Keras' default.

    Args:
        num_classes: number of classes.
        filters1: channels of the first convolution.
        filters2: channels of the second convolution.
        units: width of the hidden dense layer.
        dropout: dropout rate before the output layer.
        image_size: side of the square input (300 in the reference project); fixes the flattened size.
    """

    def __init__(
        self, num_classes: int, filters1: int = 32, filters2: int = 64, units: int = 128, dropout: float = 0.5,
        image_size: int = 300,
    ):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, filters1, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(filters1, filters2, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = ((image_size - 2) // 2 - 2) // 2
        if side < 1:
            raise InputError(f"image_size {image_size} is too small for two conv + pool blocks (at least 10)")
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(filters2 * side * side, units), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(units, num_classes),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image``: ``(B, 3, S, S)`` with values in 0..255 (uint8 or float)."""
        return self.head(self.features(image.float() / 255))
