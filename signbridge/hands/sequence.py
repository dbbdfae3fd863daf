"""Sign sequences: the in-memory layout of landmarks over time (``docs/contracts.md``, "Landmark sequences"), the
per-frame vectors users save (``<sign>/<sequence>/<frame>.npy``), and the sequence cache file.

One sequence is ``points (frames, points, 3)`` float32 (x, y in units of the video frame's width and height, z as
MediaPipe gives it) and ``present (frames, parts)`` bool, with the parts one after another on the point axis in the
order of ``PART_ORDER``: ``pose`` (the 11 upper-body points of ``POSE_POINTS``), ``left_hand`` and ``right_hand`` (21
points each: the signer's own left and right hand), ``face`` (468). A part that was not found in a frame is zeros with
``present`` False. The frame rate is kept beside (0: unknown).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write

PART_SIZES = {"pose": 11, "left_hand": 21, "right_hand": 21, "face": 468}
PART_ORDER = ("pose", "left_hand", "right_hand", "face")
# a continuous recognizer's frame built from tracked landmarks (``sentence_features``), as its contract names it
FRAME_FEATURES = "points+present"
POSE_POINTS = ("nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee")
# those points among MediaPipe Pose's 33
POSE_FROM_HOLISTIC = (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26)
# pose point pairs that a mirror image swaps (left <-> right)
POSE_MIRROR_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10))


@dataclass(frozen=True)
class VectorLayout:
    """One per-frame vector format: its length, and where each part's coordinates are in it."""

    name: str
    length: int
    # part -> (offset, points, values per point (4 for pose: x, y, z, visibility), point indices kept or None)
    parts: dict[str, tuple[int, int, int, tuple[int, ...] | None]]

    def describe(self) -> str:
        return f"{self.length} ({self.name})"


VECTOR_LAYOUTS = {layout.length: layout for layout in (
    VectorLayout("both hands: left 21 x 3, right 21 x 3", 126,
                 {"left_hand": (0, 21, 3, None), "right_hand": (63, 21, 3, None)}),
    VectorLayout("11 pose points x 4, left hand, right hand", 170,
                 {"pose": (0, 11, 4, None), "left_hand": (44, 21, 3, None), "right_hand": (107, 21, 3, None)}),
    VectorLayout("pose 33 x 4, left hand, right hand", 258,
                 {"pose": (0, 33, 4, POSE_FROM_HOLISTIC), "left_hand": (132, 21, 3, None),
                  "right_hand": (195, 21, 3, None)}),
    VectorLayout("MediaPipe Holistic: pose 33 x 4, face 468 x 3, left hand, right hand", 1662,
                 {"pose": (0, 33, 4, POSE_FROM_HOLISTIC), "face": (132, 468, 3, None),
                  "left_hand": (1536, 21, 3, None), "right_hand": (1599, 21, 3, None)}),
)}


def known_layouts() -> str:
    """The vector layouts signbridge recognises, for messages."""
    return "; ".join(layout.describe() for layout in VECTOR_LAYOUTS.values())


def sentence_features(points: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The per-frame features of a sentence of tracked landmarks (``FRAME_FEATURES``): each frame's points
    ``(T, P, 3)`` flattened, then its parts' presence ``(T, K)`` as 0/1: ``(T, 3P + K)`` float32."""
    points, present = np.asarray(points, dtype=np.float32), np.asarray(present, dtype=np.float32)
    return np.concatenate([points.reshape(len(points), -1), present], axis=1)


def part_slices(parts: Sequence[str]) -> dict[str, slice]:
    """Where each part's points are on the point axis of a sequence with these ``parts``."""
    slices, start = {}, 0
    for name in parts:
        slices[name] = slice(start, start + PART_SIZES[name])
        start += PART_SIZES[name]
    return slices


def part_of_point(parts: Sequence[str]) -> np.ndarray:
    """The index in ``parts`` of each point's part: ``present[..., part_of_point(parts)]`` is the presence of every
    point (a gather, which also exports to ONNX)."""
    return np.repeat(np.arange(len(parts)), [PART_SIZES[name] for name in parts])


def ordered_parts(parts: Sequence[str]) -> tuple[str, ...]:
    """``parts`` in the layout's order; an ``InputError`` for an unknown name."""
    unknown = sorted(set(parts) - set(PART_SIZES))
    if unknown:
        raise InputError(f"unknown landmark parts {unknown}: the parts are {', '.join(PART_ORDER)}")
    return tuple(name for name in PART_ORDER if name in parts)


def from_vectors(vectors: np.ndarray, parts: Sequence[str] | None = None,
                 where: str | os.PathLike = "") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(frames, D)`` per-frame vectors of a known layout (``VECTOR_LAYOUTS``, recognised by ``D``) as ``points
    (frames, P, 3)`` float32, ``present (frames, parts)`` and the parts, keeping ``parts`` (default: all but the face)
    of what the vector has. A part is present in a frame when any of its values is not zero."""
    layout = VECTOR_LAYOUTS.get(vectors.shape[-1]) if vectors.ndim == 2 else None
    if layout is None:
        raise InputError(f"{where}: a frame vector of length {vectors.shape[-1] if vectors.ndim else '?'} "
                         f"(shape {vectors.shape}) is not a layout signbridge knows ({known_layouts()})")
    wanted = ordered_parts(parts) if parts is not None else tuple(p for p in PART_ORDER if p != "face")
    kept = tuple(name for name in wanted if name in layout.parts)
    values = np.nan_to_num(vectors.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    points, present = [], []
    for name in kept:
        offset, count, width, indices = layout.parts[name]
        block = values[:, offset:offset + count * width].reshape(len(values), count, width)
        if indices is not None:
            block = block[:, list(indices)]
        present.append(np.abs(block).sum(axis=(1, 2)) > 0)
        points.append(block[..., :3])
    if not kept:
        raise InputError(f"{where}: none of the parts {list(wanted)} is in a vector of {layout.describe()}")
    present_array = np.stack(present, axis=1)
    points_array = np.concatenate(points, axis=1)
    # a part that was not found is exactly zeros, whatever the file held
    points_array *= present_array[:, part_of_point(kept)][..., None]
    return np.ascontiguousarray(points_array), present_array, kept


def mirror_permutation(parts: Sequence[str]) -> np.ndarray:
    """The point order of the mirror image of a sequence with these parts: the hands swap, and so do the left and
    right pose points; the face keeps its order (its mesh has no mirror map here)."""
    slices = part_slices(parts)
    order = np.arange(sum(PART_SIZES[name] for name in parts))
    if "left_hand" in slices and "right_hand" in slices:
        order[slices["left_hand"]], order[slices["right_hand"]] = (order[slices["right_hand"]].copy(),
                                                                   order[slices["left_hand"]].copy())
    if "pose" in slices:
        start = slices["pose"].start
        for left, right in POSE_MIRROR_PAIRS:
            order[start + left], order[start + right] = start + right, start + left
    return order


def mirror_parts(parts: Sequence[str]) -> np.ndarray:
    """The part order of the mirror image (the hands swap)."""
    order = list(range(len(parts)))
    if "left_hand" in parts and "right_hand" in parts:
        left, right = parts.index("left_hand"), parts.index("right_hand")
        order[left], order[right] = right, left
    return np.array(order)


# ---------------------------------------------------------------------------------------------------------------
# per-frame .npy folders

_NUMBER = re.compile(r"-?\d+")


def frame_files(folder: Path) -> list[Path]:
    """The ``.npy`` frames of one sequence folder in frame order (by the number in their names: 2 before 10); an
    ``InputError`` naming the folder for one without frames or with a name that has no number."""
    files = [path for path in folder.iterdir() if path.suffix == ".npy" and not path.name.startswith(".")]
    if not files:
        raise InputError(f"{folder}: a sequence folder without .npy frames")
    numbered = []
    for path in files:
        match = _NUMBER.search(path.stem)
        if match is None:
            raise InputError(f"{path}: a frame file whose name has no frame number")
        numbered.append((int(match.group()), path.name, path))
    numbers = sorted(number for number, _, _ in numbered)
    if len(set(numbers)) != len(numbers):
        raise InputError(f"{folder}: two frame files have the same number")
    return [path for _, _, path in sorted(numbered)]


def read_npy_sequence(folder: Path, parts: Sequence[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], int]:
    """One ``<sequence>/<frame>.npy`` folder as ``(points, present, parts, bytes read)``; an ``InputError`` naming the
    file for a frame that is not a numeric vector, or of another length than the first."""
    vectors: list[np.ndarray] = []
    size = 0
    files = frame_files(folder)
    for path in files:
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise InputError(f"{path}: not a readable .npy frame ({type(error).__name__}: {error})") from error
        if vector.dtype.kind not in "fiu" or vector.ndim != 1:
            raise InputError(f"{path}: a frame must be a 1-D numeric vector, got {vector.dtype} {vector.shape}")
        if vectors and vector.shape != vectors[0].shape:
            raise InputError(f"{path}: a frame vector of length {len(vector)} in a sequence whose first frame has "
                             f"{len(vectors[0])}")
        vectors.append(vector)
        size += path.stat().st_size
    points, present, kept = from_vectors(np.stack(vectors), parts, files[0])
    return points, present, kept, size


# ---------------------------------------------------------------------------------------------------------------
# the sequence cache

SEQUENCE_CACHE_FORMAT = 1
_SEQUENCE_ARRAYS = {"paths": "U", "offsets": "i", "points": "f", "present": "b", "fps": "f", "file_size": "i"}


@dataclass
class SequenceCache:
    """The landmark sequences of a dataset in one file: the frames of all sequences one after another.

    ``paths[i]`` (relative to the dataset root, ``/`` separators: a sequence folder or a video file) has the frames
    ``offsets[i]:offsets[i + 1]`` of ``points (F, P, 3)`` and ``present (F, parts)``, at ``fps[i]`` frames per second
    (0: unknown); ``file_size[i]`` is the bytes of its files (to notice a changed one). ``meta`` holds the parts, the
    source (``npy`` or ``video``), the detector's fingerprint for videos, the dataset root, the shard, whether the
    extraction completed, and the sequences that could not be read (``skipped``: path -> reason).
    """

    paths: np.ndarray
    offsets: np.ndarray
    points: np.ndarray
    present: np.ndarray
    fps: np.ndarray
    file_size: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.meta.get("parts", ()))

    def sequence(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.points[start:end], self.present[start:end]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def index_of(self) -> dict[str, int]:
        return {str(p): i for i, p in enumerate(self.paths)}

    @classmethod
    def from_rows(cls, rows: list[tuple[str, np.ndarray, np.ndarray, float, int]], parts: Sequence[str],
                  meta: dict) -> SequenceCache:
        """Rows are ``(path, points, present, fps, file_size)``."""
        points_per_frame = sum(PART_SIZES[name] for name in parts)
        lengths = [len(row[1]) for row in rows]
        return cls(
            paths=np.array([row[0] for row in rows], dtype=str),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            points=(np.concatenate([row[1] for row in rows]) if rows else
                    np.zeros((0, points_per_frame, 3))).astype(np.float32),
            present=(np.concatenate([row[2] for row in rows]) if rows else np.zeros((0, len(parts)))).astype(bool),
            fps=np.array([row[3] for row in rows], np.float32),
            file_size=np.array([row[4] for row in rows], np.int64),
            meta={**meta, "parts": list(parts)},
        )

    def rows(self) -> dict[str, tuple[str, np.ndarray, np.ndarray, float, int]]:
        return {str(path): (str(path), *self.sequence(i), float(self.fps[i]), int(self.file_size[i]))
                for i, path in enumerate(self.paths)}

    @classmethod
    def load(cls, path: str | os.PathLike) -> SequenceCache:
        """Read and check a sequence cache; any problem is an ``InputError`` naming the file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            raise InputError(f"{path}: not a readable sequence cache ({type(error).__name__}: {error})") from error
        missing = sorted(set(_SEQUENCE_ARRAYS) - set(arrays))
        if missing:
            raise InputError(f"{path}: sequence cache lacks the keys {missing} (a photo landmark cache?)")
        wrong = [key for key, kind in _SEQUENCE_ARRAYS.items() if arrays[key].dtype.kind != kind]
        parts = meta.get("parts") or []
        count, frames = len(arrays["paths"]), len(arrays["points"])
        consistent = (
            not wrong and set(parts) <= set(PART_SIZES) and arrays["offsets"].shape == (count + 1,)
            and arrays["points"].shape == (frames, sum(PART_SIZES.get(p, 0) for p in parts), 3)
            and arrays["present"].shape == (frames, len(parts)) and len(arrays["fps"]) == count
            and len(arrays["file_size"]) == count and (count == 0 or int(arrays["offsets"][-1]) == frames)
        )
        if not consistent:
            raise InputError(f"{path}: sequence cache arrays do not fit together (keys of the wrong kind: "
                             f"{wrong or 'none'}); delete it to rebuild it")
        return cls(**{key: arrays[key] for key in _SEQUENCE_ARRAYS}, meta=meta)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (a temporary file beside ``path``, then renamed over it)."""
        with atomic_write(path) as f:
            np.savez(f, **{key: getattr(self, key) for key in _SEQUENCE_ARRAYS}, meta=np.array(json.dumps(self.meta)))
