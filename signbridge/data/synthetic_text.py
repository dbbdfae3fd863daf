"""Synthetic word images rendered on the fly from installed fonts: pre-training data for text recognizers.

Scene-text recognizers are trained on millions of rendered words (MJSynth, SynthText) because a few thousand real
crops are too few. ``WordImageGenerator`` renders a word in a random font, size, colour and outline on a flat,
gradient or noisy background, warps it in perspective, and blurs, noises and JPEG-compresses it. The words are random
strings of the charset in the case patterns of real text (lower, UPPER, Capitalised, digits) or come from a
lexicon. Every image is a function of its seed: the same seed gives the same word and pixels on every machine with
the same fonts and Pillow.

``SyntheticWords`` is the setting (``TextImageDataModule(synthetic=...)`` mixes that many synthetic words into each
training epoch); ``SyntheticTextDataModule`` trains on synthetic words alone.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import lightning as L
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset

from ..charset import Charset
from ..errors import InputError, check_range
from ..hparams import save_plain_hyperparameters
from .base import SplitLoaders
from .text import Degradation, SyntheticWords, collate_text_batch, fit_to_height, sample_seed, to_tensor

if TYPE_CHECKING:
    from lightning.fabric.utilities.data import AttributeDict

log = logging.getLogger(__name__)

FONT_EXTENSIONS = (".ttf", ".otf")


def font_folders() -> list[Path]:
    """Where fonts are installed on Linux, macOS and Windows, and the fonts bundled with matplotlib (a signbridge
    dependency, so there is always at least the DejaVu family)."""
    home = Path.home()
    folders = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".fonts", home / ".local/share/fonts",
               Path("/Library/Fonts"), Path("/System/Library/Fonts"), home / "Library/Fonts"]
    if sys.platform == "win32":
        folders.append(Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts")
    try:
        import matplotlib

        folders.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    return folders


def find_fonts(sources: list[str] | None = None) -> list[str]:
    """The font files of ``sources`` (files or folders, searched recursively), or of ``font_folders()``. Raises
    ``InputError`` when there are none."""
    paths = [Path(s) for s in sources] if sources else font_folders()
    fonts: set[str] = set()
    for path in paths:
        if sources and not path.exists():
            raise InputError(f"{path}: font file or folder not found")
        if path.is_file():
            if path.suffix.lower() not in FONT_EXTENSIONS:
                raise InputError(f"{path}: not a font file ({', '.join(FONT_EXTENSIONS)})")
            fonts.add(str(path))
        elif path.is_dir():
            fonts.update(str(p) for p in path.rglob("*") if p.suffix.lower() in FONT_EXTENSIONS)
    if not fonts:
        where = ", ".join(str(p) for p in paths)
        raise InputError(f"no .ttf or .otf fonts in {where}; name font files or folders (synthetic.fonts)")
    return sorted(fonts)


@cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, size)
    except OSError as error:
        raise InputError(f"{path}: cannot read the font ({error})") from None


def covers(path: str, chars: str) -> bool:
    """Whether the font draws every one of ``chars`` as a glyph of its own: not blank, and not the box it draws
    for a character it lacks (symbol fonts draw letters as that box)."""
    font = _font(path, 32)
    missing = np.asarray(font.getmask("\ue000"))  # a private-use code point: no text font has it
    for char in chars:
        if char.isspace():
            continue
        mask = np.asarray(font.getmask(char))
        if not mask.any() or (mask.shape == missing.shape and np.array_equal(mask, missing)):
            return False
    return True


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


class WordImageGenerator:
    """Renders words as RGB text images of their natural size (about 32-64 px high).

    Args:
        charset: the characters words are made of.
        fonts: font files (``find_fonts``).
        min_length: shortest random string.
        max_length: longest random string or lexicon word.
        lexicon: words to render instead of random strings; characters outside ``charset`` are refused.
    """

    def __init__(self, charset: Charset, fonts: list[str], min_length: int = 1, max_length: int = 12,
                 lexicon: list[str] | None = None):
        usable = [font for font in fonts if covers(font, charset.chars)]
        if not usable:
            raise InputError(f"none of the {len(fonts)} fonts draws every character of {charset.chars!r}")
        if len(usable) < len(fonts):
            log.info("synthetic words: %d of %d fonts lack characters of the charset and are not used",
                     len(fonts) - len(usable), len(fonts))
        self.charset, self.fonts = charset, usable
        self.min_length, self.max_length = min_length, max_length
        chars = charset.chars
        groups = {"lower": [c for c in chars if c.islower()], "upper": [c for c in chars if c.isupper()],
                  "digit": [c for c in chars if c.isdigit()]}
        groups["other"] = [c for c in chars if not any(c in g for g in groups.values())]
        self.groups = {name: group for name, group in groups.items() if group}
        self.lexicon = None
        if lexicon is not None:
            for word in lexicon:
                unknown = charset.unknown(word)
                if unknown:
                    raise InputError(f"lexicon word {word!r} has characters outside the charset: {unknown!r}")
            self.lexicon = [w for w in lexicon if 0 < len(w) <= max_length]
            if not self.lexicon:
                raise InputError(f"no lexicon word has 1 to {max_length} characters")

    def word(self, rng: np.random.Generator) -> str:
        """A lexicon word, or a random string in one of the case patterns of real text."""
        if self.lexicon is not None:
            return self.lexicon[int(rng.integers(len(self.lexicon)))]
        # lengths of real words: mostly 2-8 characters
        length = int(np.clip(round(rng.gamma(3.0, 1.8)), self.min_length, self.max_length))
        pattern = str(rng.choice(["lower", "upper", "capital", "digit", "mixed"], p=[0.35, 0.3, 0.2, 0.05, 0.1]))
        if pattern == "capital" and "upper" in self.groups and "lower" in self.groups:
            return str(rng.choice(self.groups["upper"])) + "".join(rng.choice(self.groups["lower"], length - 1))
        if pattern in self.groups:
            return "".join(rng.choice(self.groups[pattern], length))
        groups = list(self.groups.values())  # mixed, or a pattern the charset has no letters for
        return "".join(str(rng.choice(groups[int(rng.integers(len(groups)))])) for _ in range(length))

    def _colours(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Background and text colours at least 0.3 apart in luminance (real text is meant to be read)."""
        while True:
            background, text = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            if rng.random() < 0.5:  # half the time near-grey, as most signs and pages are
                background, text = np.full(3, background.mean()), np.full(3, text.mean())
            if abs(_luminance(background) - _luminance(text)) >= 0.3 * 255:
                return background.astype(np.float32), text.astype(np.float32)

    def _background(self, height: int, width: int, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kind = rng.choice(["flat", "gradient", "noise"], p=[0.5, 0.3, 0.2])
        image = np.broadcast_to(colour, (height, width, 3)).copy()
        if kind == "gradient":
            ramp = np.linspace(-1, 1, width if rng.random() < 0.7 else height, dtype=np.float32)
            shade = ramp[None, :, None] if len(ramp) == width else ramp[:, None, None]
            image += shade * rng.uniform(10, 50) * rng.choice([-1, 1])
        elif kind == "noise":  # a smooth texture: upsampled noise
            small = rng.normal(0, rng.uniform(10, 30), (max(1, height // 8), max(1, width // 8), 3))
            image += cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        return image

    def render(self, text: str, rng: np.random.Generator) -> np.ndarray:
        """``text`` as a uint8 ``(H, W, 3)`` RGB image."""
        font = _font(self.fonts[int(rng.integers(len(self.fonts)))], int(rng.integers(28, 57)))
        stroke = int(rng.integers(1, 3)) if rng.random() < 0.15 else 0
        left, top, right, bottom = (int(v) for v in font.getbbox(text, stroke_width=stroke))
        pad_x, pad_y = int(rng.integers(2, 12)), int(rng.integers(2, 10))
        width, height = right - left + 2 * pad_x, bottom - top + 2 * pad_y
        background, colour = self._colours(rng)
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).text((pad_x - left, pad_y - top), text, fill=255, font=font, stroke_width=stroke)
        alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
        image = self._background(height, width, background, rng)
        if stroke:  # an outline of a third colour, under the letters' fill
            fill = Image.new("L", (width, height), 0)
            ImageDraw.Draw(fill).text((pad_x - left, pad_y - top), text, fill=255, font=font)
            inner = np.asarray(fill, dtype=np.float32)[..., None] / 255
            outline = rng.integers(0, 256, 3).astype(np.float32)
            image = image * (1 - alpha) + outline * alpha
            alpha = inner
        image = image * (1 - alpha) + colour * alpha
        image = self._warp(np.clip(image, 0, 255).astype(np.uint8), rng)
        return image

    def _warp(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random perspective (corners moved by up to a quarter of the height) and a small rotation."""
        height, width = image.shape[:2]
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        moved = corners + rng.uniform(-0.25, 0.25, (4, 2)).astype(np.float32) * height
        angle = np.deg2rad(rng.uniform(-4, 4))
        centre = corners.mean(0)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
        moved = (moved - centre) @ rotation.T + centre
        moved -= moved.min(0)
        size = np.ceil(moved.max(0)).astype(int) + 1
        matrix = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
        return cv2.warpPerspective(image, matrix, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)

    def sample(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        """A random word and its image."""
        text = self.word(rng)
        return text, self.render(text, rng)


# blur, downscaling and JPEG of a photographed word: the capture, not a restoration task's degradation
CAPTURE = Degradation(scales=(1, 1, 2), blur_sigma=(0.0, 1.2), noise_std=(0.0, 0.03), jpeg_quality=(40, 95))


class SyntheticWordDataset(Dataset):
    """``count`` rendered words as ``TextImageDataset`` items (``clean``, ``degraded`` with a degradation,
    ``text``, ``target``, ``path`` = ``synthetic/<index>``).

    Args:
        generator: renders the words.
        count: words per epoch.
        height: image height.
        width: image width (words are fitted as real images are: ``fit_to_height``).
        grayscale: one channel.
        pad_value: grey level of the padding.
        seed: with ``fixed``, item ``i`` is always the same word and image (validation); without, every access draws
            a new one from torch's generator (which Lightning seeds per worker), as a training epoch should.
        fixed: see ``seed``.
        degradation: makes the degraded copy of each image (restoration training).
    """

    def __init__(self, generator: WordImageGenerator, count: int, height: int = 32, width: int = 128,
                 grayscale: bool = True, pad_value: int = 255, seed: int = 0, fixed: bool = False,
                 degradation: Degradation | None = None):
        self.generator, self.count = generator, count
        self.height, self.width, self.grayscale, self.pad_value = height, width, grayscale, pad_value
        self.seed, self.fixed, self.degradation = seed, fixed, degradation

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        entropy = [self.seed, index] if self.fixed else [self.seed, index, int(torch.randint(2**31, ()))]
        rng = np.random.default_rng(entropy)
        text, image = self.generator.sample(rng)
        image = CAPTURE(image, rng)
        if self.grayscale:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        image = fit_to_height(image, self.height, self.width, self.pad_value)
        path = f"synthetic/{index}"
        item = {"clean": to_tensor(image), "text": text, "target": torch.tensor(self.generator.charset.encode(text)),
                "path": path}
        if self.degradation is not None:
            item["degraded"] = to_tensor(self.degradation(image, np.random.default_rng(sample_seed(path, self.seed))))
        return item


def read_lexicon(path: str) -> list[str]:
    """Words of a lexicon file: one per line, or the second column of ``path<TAB>text`` lines."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"lexicon not found: {file}")
    words = [line.split("\t")[-1].strip() for line in file.read_text(encoding="utf-8").splitlines()]
    words = [w for w in words if w and w.lower() != "text"]
    if not words:
        raise InputError(f"{file}: no words")
    return words


def word_generator(settings: SyntheticWords, charset: Charset) -> WordImageGenerator:
    """The ``WordImageGenerator`` of ``settings`` (fonts found and checked, lexicon read: once per data module)."""
    lexicon = read_lexicon(settings.lexicon) if settings.lexicon else None
    return WordImageGenerator(charset, find_fonts(settings.fonts), settings.min_length, settings.max_length, lexicon)


class SyntheticTextDataModule(SplitLoaders, L.LightningDataModule):
    """Synthetic words only: training words new every epoch, fixed validation (and test) words. For pre-training a
    ``TextRecognizer`` before fine-tuning on real images, or for trying a recipe without data.

    Args:
        charset: the characters to render (and the recognizer's).
        synthetic: what to render and how many per training epoch.
        val_count: fixed validation words (also the test words).
        height: image height.
        width: image width.
        grayscale: one channel instead of RGB.
        pad_value: grey level of the padding.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (rendering is CPU work: use several).
    """

    collate_fn = staticmethod(collate_text_batch)

    if TYPE_CHECKING:  # Lightning types hparams as a plain mapping; the saved arguments are read as attributes

        @property
        def hparams(self) -> AttributeDict: ...

    def __init__(self, charset: str, synthetic: SyntheticWords | None = None, val_count: int = 2000,
                 height: int = 32, width: int = 128, grayscale: bool = True, pad_value: int = 255,
                 batch_size: int = 64, num_workers: int = 4):
        super().__init__()
        check_range("val_count", val_count, 1)
        check_range("batch_size", batch_size, 1)
        check_range("num_workers", num_workers, 0)
        save_plain_hyperparameters(self)
        self.settings = SyntheticWords(**synthetic) if isinstance(synthetic, dict) else synthetic or SyntheticWords()
        self.root = "synthetic words"  # named in the recognizer's data checks
        self.datasets: dict[str, Dataset] = {}

    @cached_property
    def charset(self) -> Charset:
        return Charset(self.hparams.charset)

    @property
    def channels(self) -> int:
        return 1 if self.hparams.grayscale else 3

    @property
    def max_text_length(self) -> int:
        return self.settings.max_length

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        return {"text_image": {"height": self.hparams.height, "channels": self.channels}}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        h = self.hparams
        image = {"height": h.height, "width": h.width, "grayscale": h.grayscale, "pad_value": h.pad_value}
        generator, seed = word_generator(self.settings, self.charset), self.settings.seed
        self.datasets["train"] = SyntheticWordDataset(generator, self.settings.count, seed=seed, **image)
        self.datasets["val"] = SyntheticWordDataset(generator, h.val_count, seed=seed, fixed=True, **image)
        self.datasets["test"] = self.datasets["predict"] = self.datasets["val"]

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        h = self.hparams
        return DataLoader(self.datasets[split], batch_size=h.batch_size, shuffle=shuffle, drop_last=shuffle,
                          num_workers=h.num_workers, persistent_workers=h.num_workers > 0,
                          collate_fn=self.collate_fn)
