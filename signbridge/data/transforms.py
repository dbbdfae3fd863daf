"""Image preprocessing and augmentation that keeps the hand landmarks consistent with the pixels."""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..hands.layout import flip_landmarks


class HandAugment:
    """The seed's augmentation applied to a square image and its wrist-relative landmarks together.

    A horizontal flip mirrors x and swaps the hand slots; rotation and zoom (about the image centre) rotate and scale
    the landmark vectors exactly as they move the pixels; contrast and brightness touch the image only. Defaults
    follow the seed's Keras layers: ``RandomRotation(0.15)`` is +-0.15 of a full turn (54 degrees),
    ``RandomZoom(0.15)``, ``RandomContrast(0.2)``, ``RandomBrightness(0.2)``.

    Args:
        flip_prob: probability of a horizontal flip.
        max_rotation_degrees: rotation drawn uniformly from +-this.
        zoom: scale drawn uniformly from ``[1 - zoom, 1 + zoom]``.
        contrast: contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
        brightness: brightness factor drawn from ``[1 - brightness, 1 + brightness]``.
    """

    def __init__(
        self,
        flip_prob: float = 0.5,
        max_rotation_degrees: float = 54.0,
        zoom: float = 0.15,
        contrast: float = 0.2,
        brightness: float = 0.2,
    ):
        self.flip_prob = flip_prob
        self.max_rotation_degrees = max_rotation_degrees
        self.zoom = zoom
        self.contrast = contrast
        self.brightness = brightness

    def __call__(
        self, image: torch.Tensor, landmarks: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image`` is ``(3, S, S)`` uint8; returns the augmented image, landmarks and presence."""
        if torch.rand(()) < self.flip_prob:
            image = image.flip(-1)
            landmarks, present = flip_landmarks(landmarks, present)
        angle = float(torch.empty(()).uniform_(-self.max_rotation_degrees, self.max_rotation_degrees))
        scale = float(torch.empty(()).uniform_(1 - self.zoom, 1 + self.zoom))
        if angle or scale != 1:
            image = F.affine(
                image, angle=angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
                interpolation=InterpolationMode.BILINEAR,
            )
            landmarks = rotate_scale_landmarks(landmarks, angle, scale)
        if self.contrast:
            image = F.adjust_contrast(image, float(torch.empty(()).uniform_(1 - self.contrast, 1 + self.contrast)))
        if self.brightness:
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


def to_model_input(
    image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 ``(3, H, W)`` -> normalised float32."""
    return F.normalize(image.float().div_(255), mean=list(mean), std=list(std))


def resize_square(image: torch.Tensor, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Resize ``(3, H, W)`` uint8 to ``(3, size, size)``, squashing rather than cropping so no finger is cut off and
    normalised landmark coordinates stay valid."""
    return F.resize(image, [size, size], interpolation=InterpolationMode(interpolation), antialias=True)
