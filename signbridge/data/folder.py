"""Folder-per-class image classification data."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from ..errors import InputError
from ..imageio import find_unreadable, list_image_folder, list_images, read_image_rgb
from .base import SplitDataModule
from .splits import balanced_class_weights, kfold_split, limit_per_class, oversample
from .transforms import resize_square

log = logging.getLogger(__name__)


class ClassificationDataModule(SplitDataModule):
    """What the folder-per-class datamodules share: the listing, the stratified (or k-fold) split and class weights.

    Subclasses follow ``SplitDataModule``; every dataset they make has a ``labels`` list.

    Args:
        root: dataset folder, ``root/<class>/<image>``.
        num_folds: with a value, the test split is fold ``fold`` of a stratified k-fold split (``test_fraction`` is
            then unused) and validation is ``val_fraction`` of the rest.
        fold: which fold is the test split (0-based).
        train_per_class: keep at most this many training images per class, or a list with one limit per class
            (to simulate a smaller or long-tailed dataset; validation and test are unchanged).
        sampling: how training batches are drawn. ``shuffle``: each image once per epoch. ``balanced``: a
            class-balanced sampler (each class equally likely; ``len(train)`` draws per epoch, with replacement; under
            DDP each process takes its own share of one draw). ``oversample``: before training, the images of every
            class with fewer than ``oversample_to`` are repeated until it has that many (each copy is augmented
            differently), then shuffled.
        oversample_to: images per class after oversampling; default: the largest class's count.
        **kwargs: the split and loader arguments of ``SplitDataModule``.
    """

    def __init__(
        self,
        root: str,
        num_folds: int | None = None,
        fold: int = 0,
        train_per_class: int | list[int] | None = None,
        sampling: Literal["shuffle", "balanced", "oversample"] = "shuffle",
        oversample_to: int | None = None,
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        self.predict_skipped: dict[str, str] = {}  # images of the predict folder left out, and why

    def split_indices(self, labels: list[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The stratified split, or with ``num_folds`` fold ``fold`` of a stratified k-fold split (validation is
        ``val_fraction`` of the rest); with ``train_per_class`` the training split keeps at most that many samples
        of each class (validation and test are unchanged)."""
        h = self.hparams
        if h.num_folds:
            parts = kfold_split(labels, h.num_folds, h.fold, h.val_fraction, h.split_seed)
        else:
            parts = list(super().split_indices(labels).values())
        if h.train_per_class:
            if not isinstance(h.train_per_class, int) and len(h.train_per_class) != len(self.classes):
                raise InputError(f"train_per_class has {len(h.train_per_class)} limits but the data has "
                                 f"{len(self.classes)} classes")
            parts[0] = limit_per_class(parts[0], labels, h.train_per_class, h.split_seed)
        if h.sampling == "oversample":
            counts = np.bincount(np.asarray(labels)[parts[0]])
            parts[0] = oversample(parts[0], labels, h.oversample_to or int(counts.max()), h.split_seed)
        split = dict(zip(("train", "val", "test"), parts))
        self.check_split(split, np.asarray(labels))
        return split

    sample_noun = "images"  # what a sample is called in messages

    def check_split(self, split: dict[str, np.ndarray], labels: np.ndarray) -> None:
        """Refuse a split without training or validation samples (early stopping and checkpoints watch a validation
        metric, so training would fail after its first epoch); warn about classes missing from a split."""
        h = self.hparams
        counts = np.bincount(labels, minlength=len(self.classes))
        few = ", ".join(f"{name} ({count})" for name, count in zip(self.classes, counts) if count < 3)
        for name in ("train", "val"):
            if not len(split[name]) and not self.test_only:
                raise InputError(
                    f"{self.root}: the {name} split is empty (val_fraction={h.val_fraction}, "
                    f"test_fraction={h.test_fraction}); a class needs at least 3 {self.sample_noun} for train, val and "
                    f"test, 2 without a test split. Classes with fewer: {few or 'none'}")
        for name, indices in split.items():
            if self.test_only and name != "test":
                continue
            missing = sorted(set(range(len(self.classes))) - set(labels[indices].tolist()))
            if len(indices) and missing:
                log.warning("the %s split of %s has no %s of %d classes (%s): their %s scores are not measured",
                            name, self.root, self.sample_noun, len(missing),
                            ", ".join(self.classes[i] for i in missing[:10]), name)

    @cached_property
    def _listing(self) -> tuple[list[str], list[str], list[int]]:
        # listed on first use, not in __init__: building the datamodule does no file I/O
        return list_image_folder(self.root)

    @property
    def classes(self) -> list[str]:
        return self._listing[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @staticmethod
    def report_left_out(folder: Path, reasons: dict[str, str]) -> None:
        """Log the images left out of ``folder`` and why (the first five of them)."""
        if reasons:
            listed = "; ".join(f"{p}: {why}" for p, why in list(reasons.items())[:5])
            log.warning("leaving out %d unreadable images of %s (%s%s)", len(reasons), folder, listed,
                        ", ..." if len(reasons) > 5 else "")

    def split_sizes(self) -> dict[str, int]:
        return {name: len(dataset) for name, dataset in self.datasets.items()}

    def train_dataloader(self) -> DataLoader:
        if self.hparams.sampling != "balanced":
            return super().train_dataloader()
        labels = self.datasets["train"].labels
        weights = balanced_class_weights(labels, self.num_classes)[np.asarray(labels)]
        # one seeded draw, the same in every process: Lightning's DistributedSamplerWrapper gives each its share
        generator = torch.Generator().manual_seed(self.hparams.split_seed)
        sampler = WeightedRandomSampler(weights.tolist(), len(labels), generator=generator)
        return self._loader("train", shuffle=True, sampler=sampler)

    def class_weights(self) -> torch.Tensor:
        """Balanced class weights from the training split."""
        self.setup("fit")
        return torch.from_numpy(balanced_class_weights(self.datasets["train"].labels, self.num_classes))


class ImageFolderDataset(Dataset):
    """Images as uint8 ``(3, S, S)`` tensors (models rescale; uint8 batches are a quarter of the bytes to move)."""

    def __init__(self, root: Path, paths: list[str], labels: list[int], image_size: int, flip: bool = False,
                 interpolation: str = "bilinear"):
        self.root, self.paths, self.labels, self.image_size, self.flip = root, paths, labels, image_size, flip
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(read_image_rgb(self.root / self.paths[index])).permute(2, 0, 1)
        image = resize_square(image, self.image_size, self.interpolation)
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"image": image, "label": self.labels[index], "path": self.paths[index]}


class ImageFolderDataModule(ClassificationDataModule):
    """A folder-per-class image dataset, split train/val (and optionally test) by class.

    Unreadable images are found in ``setup`` (a cheap reduced decode), reported with the reason and left out.

    Args:
        root: dataset folder, ``root/<class>/<image>``.
        image_size: images are resized to ``image_size x image_size``.
        interpolation: resize interpolation (``bilinear``, ``bicubic``, ``nearest``, ...).
        horizontal_flip: random horizontal flips of training images.
        predict_root: folder of images (any layout) for ``predict``.
        batch_size: samples per batch (the reference project's 15).
        test_fraction: share of each class for testing (the reference project had no test split: 0).
        **kwargs: the split and loader arguments of ``ClassificationDataModule`` and ``SplitDataModule``.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 300,
        interpolation: str = "bilinear",
        horizontal_flip: bool = False,
        predict_root: str | None = None,
        batch_size: int = 15,
        test_fraction: float = 0.0,
        **kwargs,
    ):
        super().__init__(root, batch_size=batch_size, test_fraction=test_fraction, **kwargs)

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        return {"image": {"size": self.hparams.image_size, "interpolation": self.hparams.interpolation}}

    def _readable(self, root: Path, paths: list[str]) -> list[int]:
        bad = find_unreadable(root, paths)
        self.report_left_out(root, bad)
        return [i for i, p in enumerate(paths) if p not in bad]

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage == "predict":
            folder = Path(h.predict_root or self.root)
            paths = list_images(folder)
            self.predict_skipped = find_unreadable(folder, paths)
            self.report_left_out(folder, self.predict_skipped)
            kept = [p for p in paths if p not in self.predict_skipped]
            self.datasets["predict"] = ImageFolderDataset(folder, kept, [-1] * len(kept), h.image_size,
                                                          interpolation=h.interpolation)
            return
        if "train" in self.datasets:
            return
        _, all_paths, all_labels = self._listing
        readable = self._readable(self.root, all_paths)
        paths = [all_paths[i] for i in readable]
        labels = np.array([all_labels[i] for i in readable])
        for split, indices in self.split_indices(labels).items():
            if split == "test" and not len(indices):  # no test split (test_fraction 0, no folds)
                continue
            self.datasets[split] = ImageFolderDataset(
                self.root, [paths[i] for i in indices], labels[indices].tolist(), h.image_size,
                flip=h.horizontal_flip and split == "train", interpolation=h.interpolation,
            )
