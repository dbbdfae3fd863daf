"""Image preprocessing and augmentation that keeps the hand landmarks consistent with the pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..hands.layout import NUM_COORDS, PALM_POINTS, WRIST, flip_landmarks


@dataclass(frozen=True)
class HandAugment:
    """Augmentation of a square image and its wrist-relative landmarks together (or of landmarks alone).

    A horizontal flip mirrors x and swaps the hand slots; rotation and zoom (about the image centre) rotate and scale
    the landmark vectors exactly as they move the pixels; contrast and brightness touch the image only; stretch and
    jitter touch the landmarks only (see ``random_stretch_jitter``). The defaults were chosen by measurement
    (``docs/hybrid.md``): flips are off because they turn a right-hand sign into a left-hand one, which hurt on a
    one-handed dataset, and the rotation is +-15 degrees. In a config it is the ``augment`` argument of
    ``SignDataModule`` (``--data.init_args.augment.zoom 0.2``; ``augment: null`` turns augmentation off).
    """

    flip_prob: float = 0.0
    """Probability of a horizontal flip."""
    max_rotation_degrees: float = 15.0
    """Rotation drawn uniformly from +-this."""
    zoom: float = 0.15
    """Scale drawn uniformly from ``[1 - zoom, 1 + zoom]``."""
    contrast: float = 0.2
    """Contrast factor drawn from ``[1 - contrast, 1 + contrast]`` (images only)."""
    brightness: float = 0.2
    """Brightness factor drawn from ``[1 - brightness, 1 + brightness]`` (images only)."""
    landmark_stretch: float = 0.1
    """Per-axis landmark scale drawn from ``[1 - stretch, 1 + stretch]``."""
    landmark_jitter: float = 0.0
    """Standard deviation of per-point landmark noise, in palm sizes."""

    def __call__(
        self, image: torch.Tensor | None, landmarks: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``image`` is ``(3, S, S)`` uint8 or None; returns the augmented image, landmarks and presence."""
        if self.flip_prob and torch.rand(()) < self.flip_prob:
            image = image.flip(-1) if image is not None else None
            landmarks, present = flip_landmarks(landmarks, present)
        angle = float(torch.empty(()).uniform_(-self.max_rotation_degrees, self.max_rotation_degrees))
        scale = float(torch.empty(()).uniform_(1 - self.zoom, 1 + self.zoom))
        if angle or scale != 1:
            if image is not None:
                image = F.affine(
                    image, angle=angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR,
                )
            landmarks = rotate_scale_landmarks(landmarks, angle, scale)
        if self.landmark_stretch or self.landmark_jitter:
            landmarks = random_stretch_jitter(landmarks, present, self.landmark_stretch, self.landmark_jitter)
        if image is not None and self.contrast:
            image = F.adjust_contrast(image, float(torch.empty(()).uniform_(1 - self.contrast, 1 + self.contrast)))
        if image is not None and self.brightness:
            factor = float(torch.empty(()).uniform_(1 - self.brightness, 1 + self.brightness))
            image = F.adjust_brightness(image, factor)
        return image, landmarks, present


def rotate_scale_landmarks(landmarks: torch.Tensor, angle: float, scale: float) -> torch.Tensor:
    """Move wrist-relative landmarks of a square image as ``F.affine(angle, scale)`` moves its pixels.

    ``F.affine`` turns the picture clockwise on screen for a positive angle (x right, y down); z scales with the zoom.
    """
    theta = math.radians(angle)
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    x, y, z = landmarks.unbind(-1)
    return torch.stack([cos * x - sin * y, sin * x + cos * y, z * scale], dim=-1)


def resize_square(image: torch.Tensor, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Resize ``(3, H, W)`` uint8 to ``(3, size, size)``, squashing rather than cropping so no finger is cut off and
    normalised landmark coordinates stay valid."""
    return F.resize(image, [size, size], interpolation=InterpolationMode(interpolation), antialias=True)


def random_stretch_jitter(
    landmarks: torch.Tensor,
    present: torch.Tensor,
    max_stretch: float = 0.1,
    jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Landmark-only augmentation: a per-axis stretch (another camera aspect, a hand seen slightly from the side) and
    Gaussian jitter of every point, relative to the palm size. Rotation and zoom are ``rotate_scale_landmarks``, which
    moves the landmarks with the image.

    One stretch per sample applies to both its hands, so their relation is kept; missing hands stay zeros and wrists
    stay at the origin.

    Args:
        landmarks: ``(..., 2, 21, 3)`` wrist-relative landmarks.
        present: ``(..., 2)`` hand presence.
        max_stretch: each axis scaled by a factor drawn from ``[1 - max_stretch, 1 + max_stretch]``.
        jitter: standard deviation of the per-point noise, in palm sizes.
    """
    batch = landmarks.shape[:-3]
    stretch = 1 + (torch.rand((*batch, 1, 1, NUM_COORDS), generator=generator) * 2 - 1) * max_stretch
    points = landmarks.float() * stretch.to(landmarks.device)
    if jitter:
        palm = landmarks[..., PALM_POINTS, :].float().norm(dim=-1).mean(-1)  # (..., 2)
        noise = torch.randn(points.shape, generator=generator).to(points.device)
        points = points + noise * jitter * palm[..., None, None]
        points = points - points[..., WRIST : WRIST + 1, :]
    return points * present.to(points.dtype)[..., None, None]
