"""Continuous signing: sentences of signs as per-frame feature sequences with their gloss sequences (the data of CTC
sign recognition, ``docs/signs_and_words.md``).

Two sources:

- ``read_boston104``: the RWTH-BOSTON-104 database's tracked hands and nose (``hands_condensed.csv``: video,
  frame, left-x, left-y, right-x, right-y, nose-x, nose-y in pixels) with each sentence's glosses and their
  segments (``train_words.csv`` / ``test_words.csv``: video, speaker, word, startframe, endframe, inclusive), split
  into training and test sentences as the database splits them;
- ``stitch_sentences``: sentences made by joining isolated sign sequences end to end (seeded), for a dataset that
  has isolated signs only (``SentenceDataModule`` on a folder of sign folders).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..ctc import Vocabulary
from ..errors import InputError
from ..hands.sequence import FRAME_FEATURES, sentence_features
from .base import SplitDataModule

BOSTON104_FRAME_COLUMNS = ("video", "frame", "left-x", "left-y", "right-x", "right-y", "nose-x", "nose-y")
BOSTON104_WORD_COLUMNS = ("video", "speaker", "word", "startframe", "endframe")


@dataclass
class Sentence:
    """One signed sentence: ``features (T, F)`` float32 per frame, its ``glosses`` in order, and where known the
    inclusive frame range of each gloss (``segments``, one per gloss)."""

    name: str
    features: np.ndarray
    glosses: list[str]
    signer: str = ""
    segments: list[tuple[int, int]] = field(default_factory=list)

    def segment(self, index: int) -> np.ndarray:
        """The frames of gloss ``index`` (an isolated sign, for classifying segments one by one)."""
        start, end = self.segments[index]
        return self.features[start:end + 1]


def _rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path}: not found (RWTH-BOSTON-104 layout: hands_condensed.csv, train_words.csv, "
                         "test_words.csv)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [name for name in columns if name not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: no column {', '.join(missing)} (expected {', '.join(columns)})")
        return list(reader)


def _number(row: dict[str, str], name: str, path: Path, line: int) -> int:
    try:
        return int(row[name])
    except (TypeError, ValueError):
        raise InputError(f"{path}, line {line}: {name} is {row[name]!r}, not a whole number") from None


def read_boston104(root: str | Path) -> tuple[list[Sentence], list[Sentence]]:
    """The training and test sentences of an RWTH-BOSTON-104 folder (see the module's docstring). Features per
    frame: the left hand, right hand and nose positions in pixels (6 values)."""
    root = Path(root)
    frames_path = root / "hands_condensed.csv"
    tracks: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for line, row in enumerate(_rows(frames_path, BOSTON104_FRAME_COLUMNS), 2):
        frame = _number(row, "frame", frames_path, line)
        tracks[row["video"]][frame] = [_number(row, name, frames_path, line) for name in BOSTON104_FRAME_COLUMNS[2:]]
    splits = []
    for name in ("train_words.csv", "test_words.csv"):
        path = root / name
        words: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
        for line, row in enumerate(_rows(path, BOSTON104_WORD_COLUMNS), 2):
            start, end = _number(row, "startframe", path, line), _number(row, "endframe", path, line)
            if end < start:
                raise InputError(f"{path}, line {line}: endframe {end} is before startframe {start}")
            words[row["video"]].append((start, end, row["word"], row["speaker"]))
        sentences = []
        for video, glosses in words.items():
            frames = tracks.get(video)
            if not frames:
                raise InputError(f"{path}: video {video} has no frames in {frames_path}")
            length = max(frames) + 1
            if len(frames) != length:
                raise InputError(f"{frames_path}: video {video} lacks frames "
                                 f"{sorted(set(range(length)) - set(frames))[:5]}")
            glosses.sort()
            if glosses[-1][1] >= length:
                raise InputError(f"{path}: video {video} has a gloss ending at frame {glosses[-1][1]}, but only "
                                 f"{length} frames")
            features = np.array([frames[i] for i in range(length)], dtype=np.float32)
            sentences.append(Sentence(video, features, [g[2] for g in glosses], glosses[0][3],
                                      [(g[0], g[1]) for g in glosses]))
        splits.append(sorted(sentences, key=lambda s: int(s.name) if s.name.isdigit() else s.name))
    return splits[0], splits[1]


def check_sign_counts(min_signs: int, max_signs: int) -> None:
    """One ``InputError`` unless a stitched sentence's sign counts satisfy 1 <= min_signs <= max_signs."""
    if not 1 <= min_signs <= max_signs:
        raise InputError(f"min_signs={min_signs} and max_signs={max_signs}: need 1 <= min_signs <= max_signs")


def stitch_sentences(sequences: Sequence[np.ndarray], labels: Sequence[int], classes: Sequence[str], count: int,
                     min_signs: int = 2, max_signs: int = 5, gap_frames: int = 0, seed: int = 0) -> list[Sentence]:
    """``count`` sentences joined from isolated sign sequences (``(T, F)`` arrays with their class ``labels``):
    each draws between ``min_signs`` and ``max_signs`` sequences with ``seed`` and puts them end to end (with
    ``gap_frames`` copies of each sign's last frame after it, a pause); the segments say where each sign is."""
    check_sign_counts(min_signs, max_signs)
    if not len(sequences) or len(sequences) != len(labels):
        raise InputError(f"{len(sequences)} sequences and {len(labels)} labels: need as many of each, at least one")
    rng = np.random.default_rng(seed)
    sentences = []
    for number in range(count):
        chosen = rng.choice(len(sequences), size=int(rng.integers(min_signs, max_signs + 1)))
        parts, segments, start = [], [], 0
        for index in chosen:
            sign = np.asarray(sequences[index], dtype=np.float32)
            pause = np.repeat(sign[-1:], gap_frames, axis=0)
            parts += [sign, pause]
            segments.append((start, start + len(sign) - 1))
            start += len(sign) + gap_frames
        sentences.append(Sentence(f"stitched{number}", np.concatenate(parts), [classes[labels[i]] for i in chosen],
                                  segments=segments))
    return sentences


def collate_sentences(items: list[dict]) -> dict:
    """Pad sentences to the longest: ``features (B, T, F)``, ``mask (B, T)``, ``targets (B, S)`` (gloss ids, 0
    pads), ``target_lengths``, ``glosses`` (lists of names), ``name``; and their segments as isolated signs:
    ``segment_features (N, L, F)``, ``segment_mask``, ``segment_label``, ``segment_sentence`` (which sentence)."""
    frames = max(len(item["features"]) for item in items)
    width = items[0]["features"].shape[1]
    features = torch.zeros(len(items), frames, width)
    mask = torch.zeros(len(items), frames, dtype=torch.bool)
    longest = max(1, max(len(item["targets"]) for item in items))
    targets = torch.zeros(len(items), longest, dtype=torch.long)
    segments = [(i, start, end, label) for i, item in enumerate(items)
                for (start, end), label in zip(item["segments"], item["segment_labels"])]
    span = max([end - start + 1 for _, start, end, _ in segments] or [1])
    segment_features = torch.zeros(len(segments), span, width)
    segment_mask = torch.zeros(len(segments), span, dtype=torch.bool)
    for i, item in enumerate(items):
        length = len(item["features"])
        features[i, :length], mask[i, :length] = torch.from_numpy(item["features"]), True
        targets[i, : len(item["targets"])] = torch.tensor(item["targets"], dtype=torch.long)
    for n, (i, start, end, _) in enumerate(segments):
        segment_features[n, : end - start + 1] = features[i, start:end + 1]
        segment_mask[n, : end - start + 1] = True
    return {"features": features, "mask": mask, "targets": targets,
            "target_lengths": torch.tensor([len(item["targets"]) for item in items]),
            "glosses": [item["glosses"] for item in items], "name": [item["name"] for item in items],
            "segment_features": segment_features, "segment_mask": segment_mask,
            "segment_label": torch.tensor([label for *_, label in segments], dtype=torch.long),
            "segment_sentence": torch.tensor([i for i, *_ in segments], dtype=torch.long)}


class SentenceDataset(Dataset):
    """Sentences with their glosses encoded by ``vocabulary`` (glosses it lacks are left out of the CTC targets
    and the segment labels, and still count in the word error rate)."""

    def __init__(self, sentences: list[Sentence], vocabulary: Vocabulary):
        self.sentences, self.vocabulary = sentences, vocabulary

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> dict:
        sentence = self.sentences[index]
        known = [g for g in sentence.glosses if g in self.vocabulary]
        segmented = [(g, s) for g, s in zip(sentence.glosses, sentence.segments) if g in self.vocabulary]
        return {"features": sentence.features, "glosses": sentence.glosses, "name": sentence.name,
                "targets": self.vocabulary.encode(known), "segments": [s for _, s in segmented],
                "segment_labels": [self.vocabulary.encode([g])[0] - 1 for g, _ in segmented]}


class SentenceDataModule(SplitDataModule):
    """Continuous signing: sentences of signs (per-frame features) with their gloss sequences, for CTC recognition
    (``ContinuousSignRecognizer``). Each gloss's segment is also an isolated sign (``segment_*`` in the batches)
    for the multi-task classifier and the segment word error rate. The vocabulary is the glosses of the training
    and validation sentences.

    ``root`` is one of:

    - an RWTH-BOSTON-104 folder (``read_boston104``; it has ``hands_condensed.csv``): its training sentences are split
      into training and validation (``val_fraction`` of the sentences, seeded), its test sentences are the test split;
    - a folder of isolated signs (one folder per class, as ``SequenceDataModule`` reads them): its sequences are split
      into training, validation and test (``val_fraction``, ``test_fraction``, stratified and seeded), and each split's
      sequences are stitched into sentences of ``min_signs`` to ``max_signs`` signs (``stitch_sentences``; ``sentences``
      training sentences, the other splits in proportion to their size), so that no sequence is in two splits. A
      frame's features are its landmarks' x, y, z and each part's presence.

    ``predict`` reads the test sentences of ``predict_root`` (default: ``root``'s).

    Args:
        root: the dataset folder.
        val_fraction: the validation share (of the training sentences, or of the isolated signs).
        test_fraction: the test share of the isolated signs (RWTH-BOSTON-104 has its own test sentences).
        sentences: training sentences stitched from isolated signs.
        min_signs: the fewest signs in a stitched sentence.
        max_signs: the most.
        gap_frames: frames of pause after each stitched sign (its last frame repeated).
        landmarks_file: the isolated signs' sequence cache (``SequenceDataModule``).
        predict_root: the folder ``predict`` reads.
        **kwargs: ``split_seed`` and the loader arguments of ``SplitDataModule``.
    """

    collate_fn = staticmethod(collate_sentences)
    in_memory = True

    def __init__(self, root: str, val_fraction: float = 0.1, test_fraction: float = 0.15, sentences: int = 1000,
                 min_signs: int = 2, max_signs: int = 5, gap_frames: int = 0, landmarks_file: str | None = None,
                 predict_root: str | None = None, batch_size: int = 16, num_workers: int = 0,
                 pin_memory: bool = False, **kwargs):
        super().__init__(root, val_fraction=val_fraction, test_fraction=test_fraction, batch_size=batch_size,
                         num_workers=num_workers, pin_memory=pin_memory, **kwargs)
        if sentences < 1:
            raise InputError(f"sentences must be at least 1, got {sentences}")
        check_sign_counts(min_signs, max_signs)  # now, not when the sentences are stitched at setup

    @staticmethod
    def is_boston104(root: Path) -> bool:
        return (root / "hands_condensed.csv").is_file()

    def _boston104_splits(self, root: Path) -> dict[str, list[Sentence]]:
        train, test = read_boston104(root)
        order = np.random.default_rng(self.hparams.split_seed).permutation(len(train))
        count = max(1, round(self.hparams.val_fraction * len(train)))
        val = set(order[:count].tolist())
        return {"train": [s for i, s in enumerate(train) if i not in val],
                "val": [s for i, s in enumerate(train) if i in val], "test": test}

    def _stitched_splits(self, root: Path) -> dict[str, list[Sentence]]:
        from .sequences import SequenceDataModule

        h = self.hparams
        signs = SequenceDataModule(str(root), landmarks_file=h.landmarks_file, augment=None,
                                   val_fraction=h.val_fraction, test_fraction=h.test_fraction,
                                   split_seed=h.split_seed, num_workers=0, pin_memory=False)
        signs.setup("fit")
        self._signs = signs  # its layout and tracker settings go into the model's contract
        train_size = len(signs.datasets["train"])
        splits: dict[str, list[Sentence]] = {}
        for offset, split in enumerate(("train", "val", "test")):
            dataset = signs.datasets.get(split)
            if dataset is None or not len(dataset):
                splits[split] = []
                continue
            items = [dataset[i] for i in range(len(dataset))]
            frames = [sentence_features(item["points"], item["present"]) for item in items]
            count = h.sentences if split == "train" else max(1, round(h.sentences * len(items) / train_size))
            splits[split] = stitch_sentences(frames, [int(item["label"]) for item in items], signs.classes, count,
                                             h.min_signs, h.max_signs, h.gap_frames, seed=h.split_seed + offset)
        return splits

    def _splits_of(self, root: Path) -> dict[str, list[Sentence]]:
        return self._boston104_splits(root) if self.is_boston104(root) else self._stitched_splits(root)

    @cached_property
    def _splits(self) -> dict[str, list[Sentence]]:
        return self._splits_of(self.root)

    @cached_property
    def vocabulary(self) -> Vocabulary:
        # the training and validation sentences' glosses (RWTH-BOSTON-104's training sentences: 112 glosses)
        return Vocabulary.from_sentences([s.glosses for s in self._splits["train"] + self._splits["val"]])

    @property
    def feature_size(self) -> int:
        return int(self._splits["train"][0].features.shape[1])

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        """Sentences stitched from tracked landmarks: the isolated signs' layout (``SequenceDataModule``) with
        ``frame_features`` (how a frame's features are made, so that ``signbridge recognize`` can track a video into
        them) and ``sentence_frames`` (the training sentences' median length); RWTH-BOSTON-104's pixel tracks: where
        they come from (no video can be read into them here)."""
        if self.is_boston104(self.root):
            return {"sentence": {"source": "rwth_boston104 hands_condensed.csv (pixel tracks of hands and nose)"}}
        self._splits  # noqa: B018  (stitching sets up the isolated signs)
        processing = {name: dict(values) for name, values in self._signs.inference_preprocessing().items()}
        lengths = [len(s.features) for s in self._splits["train"]]
        processing["sequence"].update(frame_features=FRAME_FEATURES, sentence_frames=int(np.median(lengths)))
        return processing

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            root = Path(self.hparams.predict_root) if self.hparams.predict_root else self.root
            sentences = self._splits["test"] if root == self.root else self._splits_of(root)["test"]
            self.datasets["predict"] = SentenceDataset(sentences, self.vocabulary)
            return
        if "train" in self.datasets:
            return
        for split, sentences in self._splits.items():
            if sentences:
                self.datasets[split] = SentenceDataset(sentences, self.vocabulary)
