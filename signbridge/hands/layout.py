"""The landmark layout (``docs/contracts.md``): ``(2, 21, 3)`` per image, slot 0 = "Right", slot 1 = "Left"
(MediaPipe's labels for the unflipped image), coordinates relative to each hand's wrist; a missing hand is zeros with
``present=False``."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

NUM_HANDS = 2
NUM_POINTS = 21
NUM_COORDS = 3
SLOT_LABELS = ("Right", "Left")
RIGHT, LEFT = 0, 1
WRIST = 0
FINGERTIPS = (4, 8, 12, 16, 20)
# wrist -> four points of each finger (thumb, index, middle, ring, pinky); joint angles are taken at the middle three
FINGER_CHAINS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))
INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 5, 9, 13, 17
# the four finger knuckles: their distance to the wrist is the palm size
PALM_POINTS = (INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP)
# the same points as a slice, for tensors on a GPU: an index list is copied there at every use, which waits for it
PALM_SLICE = slice(INDEX_MCP, PINKY_MCP + 1, MIDDLE_MCP - INDEX_MCP)
assert tuple(range(NUM_POINTS))[PALM_SLICE] == PALM_POINTS
GEOMETRY_PER_HAND = 34  # 5 tip-wrist + 10 tip-tip distances, 15 joint angles, 3 palm normal, 1 openness
GEOMETRY_FEATURES = NUM_HANDS * GEOMETRY_PER_HAND

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def flip_landmarks(landmarks: Array, present: Array) -> tuple[Array, Array]:
    """Landmarks and presence of the horizontally mirrored image: x is negated and the two hand slots swap.

    Works on numpy arrays and torch tensors with any leading dimensions (``(..., 2, 21, 3)`` and ``(..., 2)``).
    """
    if isinstance(landmarks, np.ndarray):
        mirrored = landmarks * np.array([-1.0, 1.0, 1.0])
        return np.ascontiguousarray(mirrored[..., ::-1, :, :]).astype(landmarks.dtype), present[..., ::-1].copy()
    return (landmarks * landmarks.new_tensor([-1.0, 1.0, 1.0])).flip(-3), present.flip(-1)
