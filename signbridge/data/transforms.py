"""Image preprocessing and augmentation that keeps the hand landmarks consistent with the pixels."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..errors import check_range
from ..hands.layout import NUM_COORDS, PALM_SLICE, WRIST, flip_landmarks


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

    def __post_init__(self):
        check_range("augment flip_prob", self.flip_prob, 0, 1)
        check_range("augment max_rotation_degrees", self.max_rotation_degrees, 0, 180)
        for name in ("zoom", "contrast", "brightness", "landmark_stretch"):  # factors drawn from 1 +- this
            check_range(f"augment {name}", getattr(self, name), 0, 1, high_open=True)
        check_range("augment landmark_jitter", self.landmark_jitter, 0)

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


    def landmarks_batch(self, landmarks: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The landmark part of ``__call__`` for a whole batch in one vectorised pass (``(B, 2, 21, 3)``, ``(B, 2)``,
        on any device): each sample draws its own flip, rotation, zoom and stretch. For landmark-only data, where
        there are no pixels to move with them (``LandmarkDataModule``)."""
        batch, device = landmarks.shape[0], landmarks.device
        landmarks = landmarks.float()
        if self.flip_prob:
            flip = torch.rand(batch, device=device) < self.flip_prob
            flipped, flipped_present = flip_landmarks(landmarks, present)
            landmarks = torch.where(flip[:, None, None, None], flipped, landmarks)
            present = torch.where(flip[:, None], flipped_present, present)
        angle = torch.empty(batch, device=device).uniform_(-self.max_rotation_degrees, self.max_rotation_degrees)
        scale = torch.empty(batch, device=device).uniform_(1 - self.zoom, 1 + self.zoom)
        landmarks = rotate_scale_landmarks(landmarks, angle[:, None, None], scale[:, None, None])
        if self.landmark_stretch or self.landmark_jitter:
            landmarks = random_stretch_jitter(landmarks, present, self.landmark_stretch, self.landmark_jitter)
        return landmarks, present


def rotate_scale_landmarks(landmarks: torch.Tensor, angle: float | torch.Tensor, scale: float | torch.Tensor
                           ) -> torch.Tensor:
    """Move wrist-relative landmarks of a square image as ``F.affine(angle, scale)`` moves its pixels.

    ``F.affine`` turns the picture clockwise on screen for a positive angle (x right, y down); z scales with the zoom.
    """
    cos: float | torch.Tensor
    sin: float | torch.Tensor
    if isinstance(angle, torch.Tensor):  # one angle (and scale) per sample, broadcast over the points
        cos, sin = angle.deg2rad().cos() * scale, angle.deg2rad().sin() * scale
    else:
        cos, sin = math.cos(math.radians(angle)) * scale, math.sin(math.radians(angle)) * scale
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
    # drawn where the generator is (reproducible), else on the landmarks' device: a batch on a GPU
    # (``landmarks_batch``) would otherwise wait for a host-to-device copy of the random numbers
    device = generator.device if generator is not None else landmarks.device
    stretch = 1 + (torch.rand((*batch, 1, 1, NUM_COORDS), generator=generator, device=device) * 2 - 1) * max_stretch
    points = landmarks.float() * stretch.to(landmarks.device)
    if jitter:
        palm = landmarks[..., PALM_SLICE, :].float().norm(dim=-1).mean(-1)  # (..., 2)
        noise = torch.randn(points.shape, generator=generator, device=device).to(points.device)
        points = points + noise * jitter * palm[..., None, None]
        points = points - points[..., WRIST : WRIST + 1, :]
    return points * present.to(points.dtype)[..., None, None]


@functools.lru_cache(maxsize=16)
def mirror_indices(parts: tuple[str, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The point and part orders of the mirror image, made on ``device`` once (a copy per batch waits for the GPU)."""
    from ..hands.sequence import mirror_parts, mirror_permutation

    return (torch.as_tensor(mirror_permutation(parts), device=device),
            torch.as_tensor(mirror_parts(parts), device=device))


@dataclass(frozen=True)
class SequenceAugment:
    """Augmentation of a batch of landmark sequences on tensors (``SequenceDataModule`` applies it to each training
    batch after it reaches the device): one vectorised pass for the whole batch, no per-sample Python.

    Each transform has its own probability per sequence; a magnitude of 0 turns it off. Points that were not found
    stay zeros and padded frames stay padding. ``benchmarks/sequence_kfold.py --ablation`` measures each one.
    """

    mirror: float = 0.5
    """Probability of the mirror image: x -> 1 - x, the hands swap and so do the left and right pose points (a
    left-handed signer)."""
    affine: float = 0.75
    """Probability of a random affine map of x, y about the frame's centre (the next four fields)."""
    scale: float = 0.2
    """Scale drawn from ``[1 - scale, 1 + scale]``, and each axis stretched by up to half of it."""
    shift: float = 0.1
    """Shift of up to this much of the frame."""
    rotation_degrees: float = 15.0
    """In-plane rotation drawn from +-this."""
    shear: float = 0.1
    """Horizontal shear drawn from +-this."""
    resample: float = 0.75
    """Probability of a temporal resampling: a crop and a new speed (the next two fields)."""
    speed: float = 0.3
    """Speed factor drawn from ``[1 - speed, 1 + speed]`` (frames linearly interpolated)."""
    crop: float = 0.2
    """Up to this share of the frames cut from the start and the end together."""
    time_mask: float = 0.3
    """Probability of blanking one span of frames (nothing found there)."""
    time_mask_fraction: float = 0.2
    """The blanked span's largest share of the sequence."""
    part_dropout: float = 0.05
    """Probability of each part (a hand, the pose) being dropped in each frame, as MediaPipe sometimes misses it."""
    point_dropout: float = 0.05
    """Probability of each point being zeros in a whole sequence (the models treat zeros as not found)."""

    def __post_init__(self):
        for name in ("mirror", "affine", "resample", "time_mask", "part_dropout", "point_dropout"):
            check_range(f"augment {name}", getattr(self, name), 0, 1)
        for name in ("scale", "speed", "crop", "time_mask_fraction"):  # shares and factors drawn from 1 +- this
            check_range(f"augment {name}", getattr(self, name), 0, 1, high_open=True)
        check_range("augment shift", self.shift, 0, 1)
        check_range("augment shear", self.shear, 0, 1)
        check_range("augment rotation_degrees", self.rotation_degrees, 0, 180)

    def __call__(self, batch: dict, parts: tuple[str, ...]) -> dict:
        """The batch (``points (B, T, P, 3)``, ``present (B, T, K)``, ``mask (B, T)``) augmented; other keys kept."""
        from ..models.sequence import point_presence

        points, present, mask = batch["points"].float(), batch["present"].bool(), batch["mask"].bool()
        batch_size, device = points.shape[0], points.device
        found = (points != 0).any(-1) & point_presence(present, parts)  # (B, T, P)

        def chosen(probability: float) -> torch.Tensor:
            return torch.rand(batch_size, device=device) < probability

        if self.mirror:
            flip = chosen(self.mirror)
            order, part_order = mirror_indices(parts, device)
            mirrored = points[:, :, order]
            mirrored[..., 0] = found[:, :, order].to(points.dtype) - mirrored[..., 0]  # 1 - x where a point was found
            points = torch.where(flip[:, None, None, None], mirrored, points)
            present = torch.where(flip[:, None, None], present[:, :, part_order], present)
            found = torch.where(flip[:, None, None], found[:, :, order], found)
        if self.affine and (self.scale or self.shift or self.rotation_degrees or self.shear):
            points = self._affine(points, found, chosen(self.affine))
        if self.resample and (self.speed or self.crop):
            points, present, mask = self._resample(points, present, mask, chosen(self.resample))
            found = (points != 0).any(-1) & point_presence(present, parts)
        if self.time_mask and self.time_mask_fraction:
            present = self._time_mask(present, mask, chosen(self.time_mask))
        if self.part_dropout:
            present = present & (torch.rand(present.shape, device=device) >= self.part_dropout)
        if self.point_dropout:
            kept = torch.rand((batch_size, 1, points.shape[2]), device=device) >= self.point_dropout
            points = points * kept[..., None]
        point_present = point_presence(present, parts) & mask[..., None]
        points = points * point_present[..., None]
        return {**batch, "points": points, "present": present, "mask": mask}

    def _affine(self, points: torch.Tensor, found: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
        batch_size, device = points.shape[0], points.device

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return torch.empty((batch_size, *shape), device=device).uniform_(low, high)

        scale = uniform(1 - self.scale, 1 + self.scale, 1) * uniform(1 - self.scale / 2, 1 + self.scale / 2, 2)
        angle = uniform(-self.rotation_degrees, self.rotation_degrees) * math.pi / 180
        shear = uniform(-self.shear, self.shear)
        cos, sin = angle.cos(), angle.sin()
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
        shearing = torch.eye(2, device=device).repeat(batch_size, 1, 1)
        shearing[:, 0, 1] = shear
        matrix = rotation @ shearing * scale[:, :, None]
        matrix = torch.where(apply[:, None, None], matrix, torch.eye(2, device=device))
        shift = uniform(-self.shift, self.shift, 2) * apply[:, None]
        xy = (points[..., :2] - 0.5) @ matrix.transpose(1, 2)[:, None] + 0.5 + shift[:, None, None]
        moved = torch.cat([xy, points[..., 2:] * scale[:, None, None, :1]], dim=-1)
        return torch.where(found[..., None], moved, points)

    def _resample(self, points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor, apply: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random crop at a random speed, with linear interpolation between frames (a part is taken from the
        nearer frame where it is missing in one of the two)."""
        batch_size, frames, device = points.shape[0], points.shape[1], points.device
        lengths = mask.sum(1).float()
        cut = torch.rand(batch_size, device=device) * self.crop * lengths
        start = torch.rand(batch_size, device=device) * cut
        kept = (lengths - cut).clamp_min(1)
        speed = torch.empty(batch_size, device=device).uniform_(1 - self.speed, 1 + self.speed)
        new_lengths = (kept / speed).round().clamp(1, frames)
        start = torch.where(apply, start, 0.0)
        step = torch.where(apply, kept / new_lengths, 1.0)
        new_lengths = torch.where(apply, new_lengths, lengths)
        position = start[:, None] + torch.arange(frames, device=device)[None] * step[:, None]
        position = torch.minimum(position, (lengths - 1)[:, None])
        low = position.floor().long()
        high = torch.minimum(low + 1, (lengths - 1).long()[:, None])
        weight = (position - low)[..., None, None]

        def take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            shape = index.shape + (1,) * (values.dim() - 2)
            return values.gather(1, index.view(shape).expand(-1, -1, *values.shape[2:]))

        low_present, high_present = take(present, low), take(present, high)
        low_points, high_points = take(points, low), take(points, high)
        nearer_high = (weight[..., 0, 0] >= 0.5)[..., None]
        new_present = torch.where(nearer_high, high_present, low_present)
        interpolated = low_points + (high_points - low_points) * weight
        nearest = torch.where(nearer_high[..., None], high_points, low_points)
        usable = ((low_points != 0).any(-1) & (high_points != 0).any(-1))[..., None]
        new_points = torch.where(usable, interpolated, nearest)
        new_mask = torch.arange(frames, device=device)[None] < new_lengths[:, None]
        return new_points * new_mask[..., None, None], new_present & new_mask[..., None], new_mask

    def _time_mask(self, present: torch.Tensor, mask: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
        batch_size, frames, device = present.shape[0], present.shape[1], present.device
        lengths = mask.sum(1).float()
        span = (torch.rand(batch_size, device=device) * self.time_mask_fraction * lengths).floor()
        start = (torch.rand(batch_size, device=device) * (lengths - span + 1)).floor()
        index = torch.arange(frames, device=device)[None]
        blank = (index >= start[:, None]) & (index < (start + span)[:, None]) & apply[:, None]
        return present & ~blank[..., None]
