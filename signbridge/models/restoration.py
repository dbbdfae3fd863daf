"""Image-to-image restoration: a residual generator (same size or x2/x4 super-resolution) and a PatchGAN critic."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# the hook-based spectral norm: the parametrization version cannot be pickled, which ddp_spawn does
from torch.nn.utils import spectral_norm

from ..errors import InputError


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with a scaled identity skip (no normalisation: it blurs restored detail)."""

    def __init__(self, channels: int, residual_scale: float = 0.2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.body(x)


class RestorationGenerator(nn.Module):
    """EDSR-style generator: it predicts a correction to the (bilinearly upscaled) input.

    Args:
        in_channels: image channels (in and out).
        channels: width of the residual trunk.
        num_blocks: residual blocks.
        scale: 1 restores at the input size; 2 or 4 also upscale (PixelShuffle steps of x2).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, num_blocks: int = 8, scale: Literal[1, 2, 4] = 1):
        super().__init__()
        if scale not in (1, 2, 4):
            raise InputError(f"scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.trunk = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)),
                                   nn.Conv2d(channels, channels, 3, padding=1))
        upsample = []
        for _ in range(scale.bit_length() - 1):
            upsample += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*upsample)
        self.tail = nn.Conv2d(channels, in_channels, 3, padding=1)
        # start as the identity (plus the upscaling): the first steps refine instead of undoing noise
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)  # type: ignore[arg-type]  # the conv has a bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = self.upsample(features + self.trunk(features))
        base = x if self.scale == 1 else F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base + self.tail(features)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic (Isola et al., 2017): a logit per overlapping patch, spectrally normalised convolutions.

    Args:
        in_channels: image channels.
        channels: width of the first layer (doubled per stride-2 layer, up to 8x).
        num_layers: stride-2 layers; each doubles the receptive field.
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        width_in, width = in_channels, channels
        for _ in range(num_layers):
            layers += [spectral_norm(nn.Conv2d(width_in, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True)]
            width_in, width = width, min(2 * width, 8 * channels)
        layers += [spectral_norm(nn.Conv2d(width_in, width, 3, padding=1)), nn.LeakyReLU(0.2, True),
                   spectral_norm(nn.Conv2d(width, 1, 3, padding=1))]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits ``(B, 1, H / 2**num_layers, W / 2**num_layers)``."""
        return self.layers(x)
