"""Geometric hand features, vectorised over any batch shape (``docs/contracts.md``: 34 per hand, 68 for both)."""

from __future__ import annotations

import torch

from .layout import FINGER_CHAINS, FINGERTIPS, INDEX_MCP, MIDDLE_MCP, PINKY_MCP, WRIST

_EPS = 1e-8


def hand_geometry(landmarks: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Geometric features of both hands.

    Per hand, in this order: 5 fingertip-wrist distances (thumb..pinky), 10 fingertip-fingertip distances (pairs in
    ``triu_indices`` order), 15 joint angles in radians (3 per finger, at the finger's three middle points; pi for a
    straight finger), 3 components of the unit palm normal ``(index_mcp - wrist) x (pinky_mcp - wrist)``, and
    openness = mean fingertip-wrist distance / wrist-middle_mcp distance. Distances are 3-D, in the landmark units.

    Args:
        landmarks: ``(..., 2, 21, 3)`` wrist-relative landmarks (numpy arrays are accepted too).
        present: ``(..., 2)`` hand presence; the features of a missing hand are zeros.
    Returns:
        ``(..., 68)`` float32 tensor, right-hand slot first.
    """
    points = torch.as_tensor(landmarks, dtype=torch.float32)
    present = torch.as_tensor(present, device=points.device).bool()
    wrist = points[..., WRIST, :]
    tips = points[..., FINGERTIPS, :]  # (..., 2, 5, 3)
    tip_wrist = (tips - wrist.unsqueeze(-2)).norm(dim=-1)
    first, second = torch.triu_indices(len(FINGERTIPS), len(FINGERTIPS), offset=1, device=points.device)
    tip_tip = (tips[..., first, :] - tips[..., second, :]).norm(dim=-1)

    chains = torch.tensor(FINGER_CHAINS, device=points.device)
    joint = points[..., chains[:, 1:4], :]  # (..., 2, 5, 3 joints, 3 coords)
    to_prev = points[..., chains[:, 0:3], :] - joint
    to_next = points[..., chains[:, 2:5], :] - joint
    # atan2(|a x b|, a . b) is accurate near 0 and pi, where acos of a normalised dot product is not
    angles = torch.atan2(torch.linalg.cross(to_prev, to_next).norm(dim=-1), (to_prev * to_next).sum(-1)).flatten(-2)

    normal = torch.linalg.cross(points[..., INDEX_MCP, :] - wrist, points[..., PINKY_MCP, :] - wrist)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    palm_size = (points[..., MIDDLE_MCP, :] - wrist).norm(dim=-1, keepdim=True)
    openness = tip_wrist.mean(-1, keepdim=True) / palm_size.clamp_min(_EPS)

    features = torch.cat([tip_wrist, tip_tip, angles, normal, openness], dim=-1)  # (..., 2, 34)
    return (features * present.unsqueeze(-1)).flatten(-2)
