"""Sign sequences: folder-per-class landmark sequences (per-frame ``.npy`` folders or videos) as padded batches."""

from __future__ import annotations

import logging
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..hands.cache import default_cache_path
from ..hands.detect import DetectorSettings
from ..hands.sequence import SequenceCache, ordered_parts, part_slices
from ..hands.video import (
    extract_sequences,
    list_sequence_folder,
    list_sequences,
    sequence_cache_problem,
    sequence_fingerprint,
    tracker_settings,
)
from .folder import ClassificationDataModule
from .splits import group_kfold_split, held_out_classes
from .transforms import SequenceAugment

log = logging.getLogger(__name__)


def even_frames(length: int, most: int) -> np.ndarray:
    """The indices of ``most`` frames spread evenly over ``length`` (all of them when there are no more)."""
    if length <= most:
        return np.arange(length)
    return np.linspace(0, length - 1, most).round().astype(int)


class SequenceDataset(Dataset):
    """Sequences of a ``SequenceCache`` (rows ``rows``), each at most ``max_frames`` long (longer ones are sampled
    evenly); yields ``points (T, P, 3)``, ``present (T, K)``, ``label``, ``path``."""

    def __init__(self, cache: SequenceCache, rows: np.ndarray, labels: list[int], max_frames: int,
                 parts: tuple[str, ...]):
        self.labels = list(labels)
        self.paths = [str(cache.paths[i]) for i in rows]
        slices = part_slices(cache.parts)
        # the points and flags of the parts asked for, in their order (all of the cache's, usually)
        point_index = np.concatenate([np.arange(slices[name].start, slices[name].stop) for name in parts])
        part_index = np.array([cache.parts.index(name) for name in parts])
        self.points, self.present = [], []
        for row in rows:
            points, present = cache.sequence(int(row))
            frames = even_frames(len(points), max_frames)
            self.points.append(torch.from_numpy(points[np.ix_(frames, point_index)]))
            self.present.append(torch.from_numpy(present[np.ix_(frames, part_index)]))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {"points": self.points[index], "present": self.present[index], "label": self.labels[index],
                "path": self.paths[index]}


def collate_sequences(items: list[dict]) -> dict:
    """Pad a list of sequences to the longest: ``points (B, T, P, 3)``, ``present (B, T, K)``, ``mask (B, T)``
    (True for real frames), ``label``, ``path``."""
    frames = max(len(item["points"]) for item in items)
    points = torch.zeros((len(items), frames, *items[0]["points"].shape[1:]))
    present = torch.zeros((len(items), frames, items[0]["present"].shape[1]), dtype=torch.bool)
    mask = torch.zeros((len(items), frames), dtype=torch.bool)
    for i, item in enumerate(items):
        length = len(item["points"])
        points[i, :length], present[i, :length], mask[i, :length] = item["points"], item["present"], True
    return {"points": points, "present": present, "mask": mask,
            "label": torch.tensor([item["label"] for item in items]), "path": [item["path"] for item in items]}


class SequenceDataModule(ClassificationDataModule):
    """Folder-per-class sign sequences, split train/val/test by class (or by signer), as padded batches.

    ``ROOT/<class>/<sequence>/<frame>.npy`` (per-frame MediaPipe vectors: 126, 170, 258 or Holistic's 1662 values,
    recognised by their length) or ``ROOT/<class>/<video>`` (mp4, avi, mov, mkv, webm; the hands are tracked with
    MediaPipe, and the pose and face when their model files are given). ``prepare_data`` reads them into one sequence
    cache (``signbridge sequences extract`` builds the same file; in parallel, resumable, in shards), rebuilt when it
    is missing, incomplete or stale. Sequences that cannot be read are reported and left out.

    Batches are ``points (B, T, P, 3)`` (x, y in units of the frame, z as MediaPipe gives it), ``present (B, T, K)``,
    ``mask (B, T)`` (real frames), ``label``, ``path`` (``docs/contracts.md``); the model normalises the points.
    Training batches are augmented on their device (``augment``).

    Args:
        root: dataset folder.
        landmarks_file: the sequence cache; default: one per dataset in the user cache folder.
        select_parts: the parts the batches hold (``pose``, ``left_hand``, ``right_hand``, ``face``), so the parts
            a model reads; default: all the data has but the face. (The model's ``parts`` are taken from here.)
        max_frames: longer sequences are sampled evenly down to this many frames.
        augment: the training batches' augmentation (``SequenceAugment``; null: none).
        signer_pattern: a regular expression whose first group finds the signer in a sequence's path (e.g.
            ``'signer(\\d+)'``, or ``'^[^/]+/(\\d+)_'``): the splits then keep every signer's sequences in one
            split (k-fold over signers with ``num_folds``, else ``test_fraction`` of the signers for testing).
        predict_root: folder of sequences (any layout: sequence folders or videos below it) for ``predict``.
        hand_model: hand landmarker ``.task`` (videos).
        pose_model: pose landmarker ``.task`` to track the pose of videos too.
        face_model: face landmarker ``.task`` to track the face of videos too.
        mirrored: the videos are mirrored (selfie view).
        extraction_workers: processes reading the sequences (default: one per core for videos).
        unseen_classes: a zero-shot split (``docs/signs_and_words.md``): this many classes, drawn with
            ``unseen_seed``, or these named classes, are held out of training and validation; the test split then
            holds every sequence of them besides the seen classes' test sequences. ``classes`` are the seen classes
            (the training labels), ``test_classes`` the seen then the unseen ones (the test labels).
        unseen_seed: the draw of the unseen classes.
        min_hand_detection_confidence: detector setting (videos).
        min_hand_presence_confidence: detector setting (videos).
        **kwargs: the split (``val_fraction``, ``test_fraction``, ``split_seed``, ``num_folds``, ``fold``,
            ``train_per_class``, ``sampling``) and loader arguments of ``ClassificationDataModule``.
            ``test_fraction: 1`` tests every sequence (a folder of signs a text-aligned model was not trained on).
    """

    collate_fn = staticmethod(collate_sequences)
    in_memory = True
    sample_noun = "sequences"

    def __init__(
        self,
        root: str,
        landmarks_file: str | None = None,
        select_parts: list[str] | None = None,
        max_frames: int = 64,
        augment: SequenceAugment | None = SequenceAugment(),
        signer_pattern: str | None = None,
        predict_root: str | None = None,
        hand_model: str | None = None,
        pose_model: str | None = None,
        face_model: str | None = None,
        mirrored: bool = False,
        extraction_workers: int | None = None,
        min_hand_detection_confidence: float = 0.5,
        min_hand_presence_confidence: float = 0.5,
        unseen_classes: int | list[str] | None = None,
        unseen_seed: int = 0,
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        if max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {max_frames}")
        if select_parts is not None:
            ordered_parts(select_parts)
        if signer_pattern is not None:
            try:
                if re.compile(signer_pattern).groups < 1:
                    raise InputError(f"signer_pattern {signer_pattern!r} needs a group: (...) around the signer")
            except re.error as error:
                raise InputError(f"signer_pattern {signer_pattern!r} is not a regular expression ({error})") from None
        self.detector_settings = DetectorSettings(
            min_hand_detection_confidence=min_hand_detection_confidence,
            min_hand_presence_confidence=min_hand_presence_confidence,
        )
        self.augmenter = SequenceAugment(**self.hparams.augment) if self.hparams.augment is not None else None
        self.fps: float | None = None  # the median frame rate of the videos (None: not known, e.g. .npy frames)
        self.typical_frames: int | None = None  # the median length of the sequences, frames
        # each cache file read once for `parts` and `setup`; let go once the datasets hold their sequences
        self._caches: dict[Path, SequenceCache] = {}

    @cached_property
    def _sequence_listing(self) -> tuple[list[str], list[str], list[int], str]:
        return list_sequence_folder(self.root)

    @property
    def _listing(self) -> tuple[list[str], list[str], list[int]]:
        classes, paths, labels = self._sequence_listing[:3]
        if not self.unseen_classes:
            return classes, paths, labels
        # the seen classes first (the training labels 0..S-1), then the unseen ones (S..)
        order = [name for name in classes if name not in self.unseen_classes] + self.unseen_classes
        label_of = [order.index(name) for name in classes]
        return order[: len(classes) - len(self.unseen_classes)], paths, [label_of[label] for label in labels]

    @cached_property
    def unseen_classes(self) -> list[str]:
        """The classes held out of training for a zero-shot test (``unseen_classes``); empty without one."""
        h = self.hparams
        if h.unseen_classes is None or h.unseen_classes == []:
            return []
        return held_out_classes(self._sequence_listing[0], h.unseen_classes, h.unseen_seed)

    @property
    def test_classes(self) -> list[str]:
        """The names of the test labels: the seen classes, then the unseen ones."""
        return self.classes + self.unseen_classes

    @property
    def source(self) -> str:
        """``npy`` or ``video``."""
        return self._sequence_listing[3]

    @cached_property
    def parts(self) -> tuple[str, ...]:
        """The parts the batches hold (those asked for, of what the data has)."""
        cache = self._cache(self.root)
        wanted = ordered_parts(self.hparams.select_parts) if self.hparams.select_parts is not None else cache.parts
        missing = [name for name in wanted if name not in cache.parts]
        if missing:
            raise InputError(f"{self.root}: the sequences have no {', '.join(missing)} (they hold "
                             f"{', '.join(cache.parts)})")
        return tuple(wanted)

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        sequence: dict[str, Any] = {"parts": list(self.parts), "max_frames": self.hparams.max_frames,
                                    "typical_frames": self.typical_frames, "fps": self.fps, "source": self.source}
        processing: dict[str, dict[str, Any]] = {"sequence": sequence}
        if self.source == "video":
            processing["hands"] = self.detector_settings.to_dict()
        return processing

    def _tracker(self) -> dict:
        h = self.hparams
        return tracker_settings(h.hand_model, self.detector_settings, h.pose_model, h.face_model, h.mirrored)

    def cache_path(self, folder: Path | None = None) -> Path:
        folder = folder or self.root
        if folder == self.root and self.hparams.landmarks_file:
            return Path(self.hparams.landmarks_file)
        return default_cache_path(folder, "sequences")

    def _ensure_cache(self, folder: Path, paths: list[str], source: str) -> None:
        h = self.hparams
        tracker = self._tracker() if source == "video" else {}
        requested = list(ordered_parts(h.select_parts)) if h.select_parts is not None and source == "npy" else None
        path = self.cache_path(folder)
        problem = sequence_cache_problem(path, folder, paths, sequence_fingerprint(source, requested, tracker))
        if problem:
            log.warning("building the sequence cache %s because %s", path, problem)
            summary = extract_sequences(folder, path, requested, h.hand_model, h.pose_model, h.face_model,
                                        self.detector_settings, h.mirrored, workers=h.extraction_workers, paths=paths)
            log.warning("%s", summary.format())
            self._caches.pop(path, None)

    def prepare_data(self) -> None:
        self._ensure_cache(self.root, self._listing[1], self.source)
        if self.hparams.predict_root:
            folder = Path(self.hparams.predict_root)
            paths, source = list_sequences(folder)
            self._ensure_cache(folder, paths, source)

    def _cache(self, folder: Path) -> SequenceCache:
        path = self.cache_path(folder)
        if path not in self._caches:
            if not path.exists():
                self.prepare_data()
            self._caches[path] = SequenceCache.load(path)
        return self._caches[path]

    def _load(self, folder: Path, paths: list[str]) -> tuple[list[int], np.ndarray, SequenceCache]:
        """The indices of ``paths`` that the cache holds, their rows, and the cache; the others are reported."""
        cache = self._cache(folder)
        index = cache.index_of()
        kept = [i for i, p in enumerate(paths) if p in index]
        skipped = cache.meta.get("skipped", {})
        if paths and not kept:
            reasons = "; ".join(f"{p}: {skipped.get(p, 'not in the sequence cache')}" for p in paths[:3])
            raise InputError(f"{folder}: not one of its {len(paths)} sequences could be read ({reasons})")
        self.report_left_out(folder, {p: skipped.get(p, "not in the sequence cache") for p in paths
                                      if p not in index})
        fps = cache.fps[cache.fps > 0]
        self.fps = float(np.median(fps)) if len(fps) else None
        rows = np.array([index[paths[i]] for i in kept], dtype=int)
        self.typical_frames = int(np.median(cache.lengths()[rows])) if len(rows) else None
        return kept, rows, cache

    def signers(self, paths: list[str]) -> list[str]:
        """The signer of each sequence path (``signer_pattern``); an ``InputError`` naming a path it does not
        match."""
        pattern = re.compile(self.hparams.signer_pattern)
        found = []
        for path in paths:
            match = pattern.search(path)
            if match is None:
                raise InputError(f"{self.root / path}: signer_pattern {pattern.pattern!r} finds no signer in it")
            found.append(match.group(1))
        return found

    def split_indices(self, labels: list[int] | np.ndarray, paths: list[str] | None = None) -> dict[str, np.ndarray]:
        if self.unseen_classes:  # the seen classes split as usual; every sequence of an unseen class is tested
            labels = np.asarray(labels)
            seen = np.flatnonzero(labels < len(self.classes))
            split = self._split(labels[seen], [paths[i] for i in seen] if paths is not None else None)
            split = {name: seen[indices] for name, indices in split.items()}
            split["test"] = np.sort(np.concatenate([split["test"], np.flatnonzero(labels >= len(self.classes))]))
            return split
        return self._split(labels, paths)

    def _split(self, labels: list[int] | np.ndarray, paths: list[str] | None = None) -> dict[str, np.ndarray]:
        h = self.hparams
        if h.signer_pattern is None or paths is None:
            return super().split_indices(labels)
        groups = self.signers(paths)
        train, val, test = group_kfold_split(labels, groups, h.num_folds, h.fold, h.val_fraction, h.test_fraction,
                                             h.split_seed)
        split = {"train": train, "val": val, "test": test}
        self.check_split(split, np.asarray(labels))
        return split

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage == "predict":
            folder = Path(h.predict_root or self.root)
            paths, _ = list_sequences(folder)
            kept, rows, cache = self._load(folder, paths)
            read, skipped = set(kept), cache.meta.get("skipped", {})
            self.predict_skipped = {p: skipped.get(p, "not read") for i, p in enumerate(paths) if i not in read}
            self.datasets["predict"] = SequenceDataset(cache, rows, [-1] * len(kept), h.max_frames, self.parts)
            self._caches.clear()
            return
        if "train" in self.datasets:
            return
        _, all_paths, all_labels = self._listing
        kept, rows, cache = self._load(self.root, all_paths)
        paths = [all_paths[i] for i in kept]
        labels = [all_labels[i] for i in kept]
        for split, indices in self.split_indices(labels, paths).items():
            if not len(indices) and (split == "test" or self.test_only):
                continue
            self.datasets[split] = SequenceDataset(cache, rows[indices], [labels[i] for i in indices], h.max_frames,
                                                   self.parts)
        self._caches.clear()

    def augment_batch(self, batch: dict) -> dict:
        # augmented on the device, one vectorised pass per batch
        return self.augmenter(batch, self.parts) if self.augmenter is not None else batch
