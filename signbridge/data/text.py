"""Text-line images (captchas, word crops) with their transcriptions, and the degradations a restorer learns to undo."""

from __future__ import annotations

import csv
import io
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from ..charset import Charset
from ..errors import InputError, check_range
from ..imageio import IMAGE_EXTENSIONS, ImageReadError, list_images, read_image_rgb
from .base import SplitDataModule

log = logging.getLogger(__name__)


def read_labels(root: Path, labels_file: str | None) -> list[tuple[str, str]]:
    """``(path relative to root, text)`` pairs: from a TSV file (``path<TAB>text`` per line, optional header
    ``path<TAB>text``), or else every image under ``root`` labelled by its file stem."""
    if labels_file is None:
        return [(p, Path(p).stem) for p in list_images(root)]
    tsv = Path(labels_file) if Path(labels_file).is_absolute() else root / labels_file
    if not tsv.is_file():
        raise FileNotFoundError(f"labels file not found: {tsv}")
    raw = tsv.read_bytes()
    try:
        content = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is dropped
    except UnicodeDecodeError as error:
        # guessing another encoding could silently change the labels the recognizer learns
        line = raw[: error.start].count(b"\n") + 1
        raise InputError(f"{tsv}:{line}: not UTF-8 (byte 0x{raw[error.start]:02x}); save the file as UTF-8, "
                         f"e.g. iconv -f latin1 -t utf-8") from None
    pairs = []
    rows = csv.reader(io.StringIO(content, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    for line_number, row in enumerate(rows, start=1):
        if not row or (line_number == 1 and [c.strip().lower() for c in row] == ["path", "text"]):
            continue
        if len(row) != 2 or not row[0]:
            raise InputError(f"{tsv}:{line_number}: expected 'path<TAB>text', got {row!r}")
        if Path(row[0]).suffix.lower() not in IMAGE_EXTENSIONS:
            raise InputError(f"{tsv}:{line_number}: {row[0]!r} is not an image file name")
        pairs.append((row[0], row[1]))
    if not pairs:
        raise InputError(f"{tsv}: no labelled images")
    return pairs


def fit_to_height(image: np.ndarray, height: int, width: int, pad_value: int = 255) -> np.ndarray:
    """Resize ``image`` to ``height`` keeping its aspect ratio, then pad on the right (or shrink) to ``width``."""
    h, w = image.shape[:2]
    new_width = min(width, max(1, round(w * height / h)))
    resized = cv2.resize(image, (new_width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_CUBIC)
    if new_width == width:
        return resized
    padding = [(0, 0), (0, width - new_width)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(resized, padding, constant_values=pad_value)


@dataclass(frozen=True)
class Degradation:
    """How a clean text image is degraded: blur, downscale, noise, JPEG, then back to full size unless kept small.

    Each range ``(low, high)`` is sampled uniformly per sample; ``scales`` are picked from uniformly.
    """

    scales: tuple[int, ...] = (2, 4)
    keep_low_res: bool = False
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    noise_std: tuple[float, float] = (0.0, 0.04)
    jpeg_quality: tuple[int, int] = (30, 80)

    def __post_init__(self):
        if not self.scales or any(s < 1 for s in self.scales):
            raise InputError(f"scales must be positive integers, got {self.scales}")
        if self.keep_low_res and len(set(self.scales)) != 1:
            raise InputError(f"keep_low_res needs one scale (batches must have one size), got {self.scales}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade a uint8 ``(H, W)`` or ``(H, W, 3)`` image."""
        height, width = image.shape[:2]
        out = image
        sigma = rng.uniform(*self.blur_sigma)
        if sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        scale = int(rng.choice(self.scales))
        if scale > 1:
            out = cv2.resize(out, (width // scale, height // scale), interpolation=cv2.INTER_AREA)
        std = rng.uniform(*self.noise_std)
        if std > 0:
            noisy = out.astype(np.float32) + rng.normal(0.0, 255.0 * std, out.shape).astype(np.float32)
            out = np.clip(noisy, 0, 255).astype(np.uint8)
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        if quality < 100:
            ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)  # type: ignore[assignment]  # our own JPEG
        if scale > 1 and not self.keep_low_res:
            out = cv2.resize(out, (width, height), interpolation=cv2.INTER_CUBIC)
        return out


@dataclass(frozen=True)
class SyntheticWords:
    """Synthetic word images (``synthetic_text``): how many, and from what. A setting of ``TextImageDataModule`` and
    ``SyntheticTextDataModule``; in YAML ``synthetic: {count: 20000}``."""

    count: int = 20000
    """Words rendered per training epoch (new words every epoch; validation words are fixed)."""
    fonts: list[str] | None = None
    """Font files or folders; default: the installed fonts and matplotlib's (``find_fonts``)."""
    lexicon: str | None = None
    """A text file of words (one per line, or the text column of a ``path<TAB>text`` file); default: random strings
    of the charset."""
    min_length: int = 1
    """Shortest random string."""
    max_length: int = 12
    """Longest random string (lexicon words longer than the model reads are skipped)."""
    seed: int = 0
    """Seed of the fixed validation words (training words follow the run's seed)."""

    def __post_init__(self):
        check_range("synthetic.count", self.count, 0)
        check_range("synthetic.min_length", self.min_length, 1)
        check_range("synthetic.max_length", self.max_length, self.min_length)


def random_affine(image: np.ndarray, rng: np.random.Generator, pad_value: int = 255) -> np.ndarray:
    """A small random shift, scale and rotation (text stays inside the image): recognizer training augmentation."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-3, 3), rng.uniform(0.9, 1.05))
    matrix[:, 2] += (rng.uniform(-0.04, 0.04) * width, rng.uniform(-0.06, 0.06) * height)
    border = (pad_value,) * (1 if image.ndim == 2 else image.shape[2])
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def sample_seed(path: str, seed: int) -> list[int]:
    """The degradation seed of one sample: its path and the dataset seed (stable across runs, splits and workers)."""
    return [seed, zlib.crc32(path.encode())]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W)`` or ``(H, W, C)`` to float ``(C, H, W)`` in [0, 1]."""
    tensor = torch.from_numpy(image).float().div_(255)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


class TextImageDataset(Dataset):
    """Preloaded text images; an item is ``{"clean", "degraded" (if a degradation is given), "text", "target",
    "path"}``. The degradation of a sample depends only on its path and ``seed``.

    Args:
        images: uint8 images already fitted to the model's size.
        texts: their transcriptions.
        paths: their paths (relative to the dataset root).
        charset: encodes the texts to CTC targets.
        degradation: makes the degraded input; ``None`` for recognizer training.
        seed: degradation seed.
        augment: a random affine per access (``random_affine``), before the degradation; then a sample differs
            from epoch to epoch.
        pad_value: grey level of the area the augmentation uncovers.
    """

    def __init__(self, images: list[np.ndarray], texts: list[str], paths: list[str], charset: Charset,
                 degradation: Degradation | None = None, seed: int = 0, augment: bool = False, pad_value: int = 255):
        self.images, self.texts, self.paths = images, texts, paths
        self.targets = [torch.tensor(charset.encode(t), dtype=torch.long) for t in texts]
        self.degradation, self.seed, self.augment, self.pad_value = degradation, seed, augment, pad_value

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        if self.augment:
            # seeded from torch, which Lightning seeds per worker and epoch: reproducible runs, new draws each epoch
            image = random_affine(image, np.random.default_rng(int(torch.randint(2**31, ()))), self.pad_value)
        item = {"clean": to_tensor(image), "text": self.texts[index], "target": self.targets[index],
                "path": self.paths[index]}
        if self.degradation is not None:
            rng = np.random.default_rng(sample_seed(self.paths[index], self.seed))
            item["degraded"] = to_tensor(self.degradation(image, rng))
        return item


T = TypeVar("T")


def _pair(values: Sequence[T]) -> tuple[T, T]:
    first, second = values
    return first, second


def collate_text_batch(items: list[dict]) -> dict:
    """Stack images; CTC targets are concatenated with their lengths (``targets``, ``target_lengths``)."""
    batch: dict[str, Any] = {key: torch.stack([item[key] for item in items]) for key in ("clean", "degraded")
                             if key in items[0]}
    batch["text"] = [item["text"] for item in items]
    batch["path"] = [item["path"] for item in items]
    batch["targets"] = torch.cat([item["target"] for item in items])
    batch["target_lengths"] = torch.tensor([len(item["target"]) for item in items], dtype=torch.long)
    return batch


class TextImageDataModule(SplitDataModule):
    """Text-line images labelled by file stem (``ROOT/<text>.png``, as the captcha set) or by a TSV file.

    Images are read once in ``setup`` and kept in memory at the model's size (a text-line dataset is small at
    32 px high: 1000 captchas take 4 MB). An unreadable image, an empty label or a character outside ``charset``
    stops setup with the file named. Splits are random from ``split_seed`` (90/10 by default); ``test`` is the
    validation split when ``test_fraction`` is 0, and ``predict`` reads the test split.

    Args:
        root: dataset folder.
        labels_file: TSV of ``path<TAB>text`` (relative to ``root`` or absolute); default: label = file stem.
        test_labels_file: a TSV of the dataset's own test images (IIIT5K's ``test.tsv``): the test split, with
            ``labels_file`` split into training and validation only (``test_fraction`` must then be 0).
        charset: the characters the model knows; default: every character in the labels of both files (sorted).
            Give it explicitly to train and test on different data with one model.
        skip_unknown: skip the images whose labels have characters outside ``charset`` (a warning counts them)
            instead of stopping: the protocol of scene-text benchmarks, read in a fixed alphanumeric set.
        height: images are resized to this height keeping their aspect ratio...
        width: ...then padded on the right (or shrunk) to this width.
        grayscale: one channel instead of RGB.
        pad_value: grey level of the padding (255: white).
        degrade: give each sample a degraded copy (restoration); off for recognizer training.
        scales: downscale factors, one picked per sample.
        keep_low_res: keep the degraded image at ``1/scale`` size (super-resolution) instead of scaling it back.
        blur_sigma: Gaussian blur sigma range (pixels of the full-size image).
        noise_std: Gaussian noise standard deviation range (fraction of full range).
        jpeg_quality: JPEG quality range.
        degradation_seed: seed of the per-sample degradations.
        augment: small random shifts, scales and rotations of training images (new each epoch). For recognizer
            training; with ``degrade`` the pairs then differ between epochs.
        synthetic: add this many rendered words (``SyntheticWords``, new every epoch) to each training epoch;
            validation and test stay real.
        test_fraction: share for testing; 0 tests on the validation split.
        **kwargs: the split and loader arguments of ``SplitDataModule``.
    """

    collate_fn = staticmethod(collate_text_batch)

    def __init__(
        self,
        root: str,
        labels_file: str | None = None,
        test_labels_file: str | None = None,
        charset: str | None = None,
        skip_unknown: bool = False,
        height: int = 32,
        width: int = 128,
        grayscale: bool = True,
        pad_value: int = 255,
        degrade: bool = False,
        scales: tuple[int, ...] = (2, 4),
        keep_low_res: bool = False,
        blur_sigma: tuple[float, float] = (0.0, 1.0),
        noise_std: tuple[float, float] = (0.0, 0.04),
        jpeg_quality: tuple[int, int] = (30, 80),
        degradation_seed: int = 0,
        augment: bool = False,
        synthetic: SyntheticWords | None = None,
        test_fraction: float = 0.0,
        **kwargs,
    ):
        super().__init__(root, test_fraction=test_fraction, **kwargs)
        # a dict when rebuilt from a checkpoint's hyperparameters
        self.synthetic = SyntheticWords(**synthetic) if isinstance(synthetic, dict) else synthetic
        if test_labels_file and test_fraction:
            raise InputError(f"test_labels_file names the test images: test_fraction must be 0, got {test_fraction}")
        # jsonargparse gives the pairs as tuples already; tuple() also takes lists from Python callers
        self.degradation = Degradation(
            tuple(scales), keep_low_res, _pair(blur_sigma), _pair(noise_std), _pair(jpeg_quality)
        ) if degrade else None

    def _read_pairs(self, labels_file: str | None) -> list[tuple[str, str]]:
        pairs = read_labels(self.root, labels_file)
        for path, text in pairs:
            if not text:
                raise InputError(f"{self.root / path}: empty label")
        if self.hparams.get("skip_unknown") and self.hparams.charset is not None:
            charset = Charset(self.hparams.charset)
            known = [(path, text) for path, text in pairs if not charset.unknown(text)]
            if len(known) < len(pairs):
                log.warning("%s: %d of %d labels have characters outside the character set and are skipped",
                            labels_file or self.root, len(pairs) - len(known), len(pairs))
            if not known:
                raise InputError(f"{labels_file or self.root}: no label uses only the characters "
                                 f"{self.hparams.charset!r}")
            pairs = known
        return pairs

    @cached_property
    def _labels(self) -> list[tuple[str, str]]:
        # read on first use, not in __init__: building the datamodule does no file I/O
        return self._read_pairs(self.hparams.labels_file)

    @cached_property
    def _test_labels(self) -> list[tuple[str, str]]:
        """The pairs of ``test_labels_file`` (none without it)."""
        test_file = self.hparams.get("test_labels_file")
        return self._read_pairs(test_file) if test_file else []

    @cached_property
    def charset(self) -> Charset:
        if self.hparams.charset is None:
            return Charset.from_texts([text for _, text in self._labels + self._test_labels])
        charset = Charset(self.hparams.charset)
        for path, text in self._labels + self._test_labels:
            unknown = charset.unknown(text)
            if unknown:
                raise InputError(f"{self.root / path}: label {text!r} has characters outside the character set "
                                 f"{charset.chars!r}: {unknown!r}")
        return charset

    @property
    def channels(self) -> int:
        return 1 if self.hparams.grayscale else 3

    @property
    def max_text_length(self) -> int:
        longest = max(len(text) for _, text in self._labels + self._test_labels)
        return max(longest, self.synthetic.max_length) if self.synthetic and self.synthetic.count else longest

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        return {"text_image": {"height": self.hparams.height, "channels": self.channels}}

    def _load(self, path: str) -> np.ndarray:
        h = self.hparams
        file = self.root / path
        if not file.is_file():
            raise FileNotFoundError(f"{file}: listed in a labels file ({h.labels_file}, {h.get('test_labels_file')}) "
                                    "but not found")
        rgb = read_image_rgb(file)
        image = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if h.grayscale else rgb
        return fit_to_height(image, h.height, h.width, h.pad_value)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        h = self.hparams
        charset = self.charset
        pairs, test_pairs = self._labels, self._test_labels
        try:
            images = [self._load(path) for path, _ in pairs]
            test_images = [self._load(path) for path, _ in test_pairs]
        except ImageReadError as error:
            # a text dataset is a list of labelled files: a file that cannot be read is an error, not a skip
            raise InputError(f"{error} (fix or remove it from its labels file)") from None
        splits = {name: ([images[i] for i in indices], [pairs[i] for i in indices])
                  for name, indices in self.split_indices([0] * len(pairs)).items()}  # one "class": a seeded split
        if test_pairs:
            splits["test"] = (test_images, test_pairs)
        for name, (split_images, split_pairs) in splits.items():
            if name == "test" and not split_pairs:
                continue
            self.datasets[name] = TextImageDataset(
                split_images, [text for _, text in split_pairs], [path for path, _ in split_pairs],
                charset, self.degradation, h.degradation_seed, augment=h.augment and name == "train",
                pad_value=h.pad_value,
            )
        if self.synthetic and self.synthetic.count:
            from .synthetic_text import SyntheticWordDataset, word_generator  # they import this module

            words = SyntheticWordDataset(word_generator(self.synthetic, charset), self.synthetic.count,
                                         h.height, h.width, h.grayscale, h.pad_value, seed=self.synthetic.seed,
                                         degradation=self.degradation)
            self.datasets["train"] = ConcatDataset([self.datasets["train"], words])
        if "test" not in self.datasets:
            self.datasets["test"] = self.datasets["val"]
        self.datasets["predict"] = self.datasets["test"]
        log.info("text images in %s: %s, charset %r", self.root,
                 ", ".join(f"{k} {len(v)}" for k, v in self.datasets.items() if k != "predict"), charset.chars)
