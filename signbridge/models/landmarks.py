"""The landmark branch: hand normalisation and encoders over the ``(2, 21, 3)`` landmarks of both hands.

Why the branch looks like this (``docs/hybrid.md`` has the measurements): the encoder must know which joint is which
(a bag of points cannot tell a raised index from a raised pinky), it must see the relations between the joints, and
its input must not depend on how large the hand is in the photo.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..hands.layout import MIDDLE_MCP, NUM_COORDS, NUM_HANDS, NUM_POINTS, PALM_SLICE, WRIST

LandmarkEncoderKind = Literal["mlp", "attention"]
HAND_FEATURES = NUM_HANDS * NUM_POINTS * NUM_COORDS  # 126


def normalize_hands(
    landmarks: torch.Tensor,
    present: torch.Tensor,
    aspect: torch.Tensor | None = None,
    rotate: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Landmarks made independent of where, how large and (optionally) how turned each hand is in the photo.

    Per hand: coordinates relative to the wrist; x and z multiplied by the image's width/height (MediaPipe gives x in
    units of the image width and y in units of its height, so a hand in a 4:3 photo is otherwise stretched); then
    divided by the palm size, the mean 3-D distance from the wrist to the four finger knuckles (it does not change
    when the fingers bend, so a fist stays smaller than an open hand). With ``rotate`` the hand is also turned in the
    image plane so that the wrist-to-middle-knuckle line points up; that discards the hand's orientation, which tells
    some signs apart, so it is off by default. Missing hands stay all zeros.

    Args:
        landmarks: ``(..., 2, 21, 3)`` landmarks in MediaPipe's normalised image units.
        present: ``(..., 2)`` hand presence.
        aspect: ``(...)`` image width / height; ``None`` for square images.
        rotate: normalise the in-plane rotation too.
    Returns:
        ``(..., 2, 21, 3)`` float tensor; a palm is about 1 unit long.
    """
    points = landmarks.float()
    points = points - points[..., WRIST : WRIST + 1, :]
    if aspect is not None:
        aspect = aspect.to(points.dtype)
        points = points * torch.stack([aspect, torch.ones_like(aspect), aspect], dim=-1)[..., None, None, :]
    palm = points[..., PALM_SLICE, :].norm(dim=-1).mean(-1)  # (..., 2)
    points = points / palm.clamp_min(eps)[..., None, None]
    if rotate:
        up = points[..., MIDDLE_MCP, :2]
        angle = torch.atan2(up[..., 0], -up[..., 1])  # 0 when the middle knuckle is straight above the wrist
        cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
        x, y, z = points.unbind(-1)
        points = torch.stack([cos * x + sin * y, cos * y - sin * x, z], dim=-1)  # turned back by -angle
    return points * present.to(points.dtype)[..., None, None]


class HandMLP(nn.Module):
    """An MLP over the whole normalised landmark vector of both hands (126 coordinates + 2 presence flags).

    Every joint has its own input weights, so the MLP knows which joint is where and combines them freely. The input
    is standardised by a BatchNorm without affine parameters (the coordinates of different joints have very
    different spreads).
    """

    def __init__(self, dim: int = 256, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(HAND_FEATURES + NUM_HANDS, affine=False),
            nn.Linear(HAND_FEATURES + NUM_HANDS, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.GELU(),
        )

    def forward(self, points: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``(B, 2, 21, 3)`` normalised points, ``(B, 2)`` -> ``(B, dim)``."""
        return self.net(torch.cat([points.flatten(1), present.to(points.dtype)], dim=1))


class PointAttention(nn.Module):
    """Self-attention over the 42 points: each point is embedded with its joint identity before any nonlinearity,
    then transformer layers relate the points; missing hands are masked out."""

    def __init__(self, dim: int = 256, depth: int = 2, num_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Linear(NUM_COORDS, dim)
        self.point_embedding = nn.Parameter(torch.zeros(NUM_HANDS * NUM_POINTS, dim))
        nn.init.trunc_normal_(self.point_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=2 * dim, dropout=dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, points: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, 21, 3)``, ``(B, 2)`` -> tokens ``(B, 42, dim)`` and their validity ``(B, 42)``."""
        valid = present.bool().repeat_interleave(NUM_POINTS, dim=1)
        tokens = self.embed(points.flatten(1, 2)) + self.point_embedding
        # a sample without hands would attend over no keys (NaN): let it attend to its own placeholder tokens
        padding = ~valid & valid.any(1, keepdim=True)
        tokens = self.norm(self.layers(tokens, src_key_padding_mask=padding))
        return tokens * valid.unsqueeze(-1), valid


def masked_mean(tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid tokens; zeros where none is valid."""
    weights = valid.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1)


class LandmarkEncoder(nn.Module):
    """Normalised hands -> a pooled feature ``(B, dim)`` and tokens for cross-attention.

    ``mlp`` (default): ``HandMLP``; its feature is the one token (valid when a hand is present). ``attention``:
    ``PointAttention``, pooled over the present points, 42 tokens.

    Args:
        kind: ``mlp`` or ``attention``.
        dim: output width.
        rotate: normalise each hand's in-plane rotation (see ``normalize_hands``).
        dropout: dropout inside the encoder.
    """

    def __init__(self, kind: LandmarkEncoderKind = "mlp", dim: int = 256, rotate: bool = False, dropout: float = 0.2):
        super().__init__()
        self.kind = kind
        self.rotate = rotate
        if kind == "mlp":
            self.encoder: nn.Module = HandMLP(dim, dropout=dropout)
        elif kind == "attention":
            self.encoder = PointAttention(dim, dropout=dropout / 2)
            self.pool = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        else:
            raise ValueError(f"unknown landmark encoder '{kind}' (mlp or attention)")

    def forward(
        self, landmarks: torch.Tensor, present: torch.Tensor, aspect: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 2, 21, 3)``, ``(B, 2)``, ``(B,)`` -> feature ``(B, dim)``, tokens ``(B, T, dim)``, validity
        ``(B, T)``."""
        points = normalize_hands(landmarks, present, aspect, rotate=self.rotate)
        if self.kind == "mlp":
            feature = self.encoder(points, present)
            return feature, feature.unsqueeze(1), present.bool().any(1, keepdim=True)
        tokens, valid = self.encoder(points, present)
        return self.pool(masked_mean(tokens, valid)), tokens, valid
