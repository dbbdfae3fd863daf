"""Sign images + MediaPipe hand landmarks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..hands.cache import LandmarkCache, cache_problem, default_cache_path, extract_landmarks
from ..hands.detect import DetectorSettings
from ..imageio import list_images, read_image_rgb
from .folder import ClassificationDataModule
from .transforms import HandAugment, resize_square

log = logging.getLogger(__name__)


class SignImageDataset(Dataset):
    """Images with their landmarks; yields dicts ``image, landmarks, present, aspect, label, path``.

    Images are uint8 ``(3, S, S)`` (the model normalises). Without ``image_size`` no image is decoded and the items
    have no ``image`` (landmark-only training).
    """

    def __init__(
        self,
        root: Path,
        paths: list[str],
        labels: list[int],
        landmarks: np.ndarray,
        present: np.ndarray,
        photo_size: np.ndarray,
        image_size: int | None,
        interpolation: str = "bicubic",
        augment: HandAugment | None = None,
    ):
        self.root = root
        self.paths = paths
        self.labels = labels
        self.landmarks = torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32))
        self.present = torch.from_numpy(np.ascontiguousarray(present, dtype=bool))
        # width / height of each photo: the landmarks' x and y are in units of the photo's width and height
        sizes = np.asarray(photo_size, dtype=np.float32).reshape(-1, 2)
        self.aspect = torch.from_numpy(sizes[:, 0] / np.maximum(sizes[:, 1], 1))
        self.image_size, self.interpolation = image_size, interpolation
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = None
        if self.image_size is not None:
            image = torch.from_numpy(read_image_rgb(self.root / self.paths[index])).permute(2, 0, 1)
            image = resize_square(image, self.image_size, self.interpolation)
        landmarks, present = self.landmarks[index], self.present[index]
        if self.augment is not None:
            image, landmarks, present = self.augment(image, landmarks, present)
        item = {
            "landmarks": landmarks,
            "present": present,
            "aspect": self.aspect[index],
            "label": self.labels[index],
            "path": self.paths[index],
        }
        if image is not None:
            item["image"] = image
        return item

    def __getitems__(self, indices: list[int]) -> list[dict] | dict:
        """A whole batch of landmarks by tensor indexing (``collate_batched`` passes it through); per sample where
        there are images to decode or a per-sample augmentation."""
        if self.image_size is not None or self.augment is not None:
            return [self[i] for i in indices]
        index = torch.as_tensor(indices)
        return {"landmarks": self.landmarks[index], "present": self.present[index], "aspect": self.aspect[index],
                "label": torch.as_tensor([self.labels[i] for i in indices]),
                "path": [self.paths[i] for i in indices]}


def collate_batched(items: list[dict] | dict) -> dict:
    """A batch made whole by ``SignImageDataset.__getitems__`` as it is; a list of samples collated as usual."""
    return items if isinstance(items, dict) else default_collate(items)


class SignDataModule(ClassificationDataModule):
    """Folder-per-class sign images and their hand-landmark cache, split train/val/test by class.

    ``prepare_data`` builds the landmark cache when it is missing, incomplete or stale (other model, other detector
    settings, images added or changed), saying why. Images MediaPipe could not read are reported and left out.

    Args:
        root: dataset folder, ``root/<class>/<image>``.
        landmarks_file: landmark cache; default: one per dataset in the user cache folder.
        hand_model: hand landmarker ``.task`` file (default: see ``resolve_hand_landmarker``).
        image_size: side of the square images (photos are resized, not cropped, so no finger is cut off); the
            model normalises them.
        interpolation: resize interpolation (``bicubic``, ``bilinear``, ...).
        augment: the augmentation of the training split (``HandAugment``; None: none), e.g.
            ``augment: {max_rotation_degrees: 20}`` in a config.
        predict_root: folder of images (any layout) for ``predict``.
        extraction_workers: processes for landmark extraction (default: all cores; 0 runs MediaPipe in this
            process, which is unsafe once it has trained a model: see ``HandDetector``).
        min_hand_detection_confidence: detector setting.
        min_hand_presence_confidence: detector setting.
        **kwargs: the split (``val_fraction``, ``test_fraction``, ``split_seed``, ``num_folds``, ``fold``,
            ``train_per_class``) and loader (``batch_size``, ``num_workers``, ``pin_memory``, ``persistent_workers``)
            arguments of ``ClassificationDataModule`` and ``SplitDataModule``.
    """

    def __init__(
        self,
        root: str,
        landmarks_file: str | None = None,
        hand_model: str | None = None,
        image_size: int = 224,
        interpolation: str = "bicubic",
        augment: HandAugment | None = HandAugment(),
        predict_root: str | None = None,
        extraction_workers: int | None = None,
        min_hand_detection_confidence: float = 0.5,
        min_hand_presence_confidence: float = 0.5,
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        self.detector_settings = DetectorSettings(
            min_hand_detection_confidence=min_hand_detection_confidence,
            min_hand_presence_confidence=min_hand_presence_confidence,
        )
        self.augmenter = HandAugment(**self.hparams.augment) if self.hparams.augment is not None else None

    load_images = True

    @property
    def loaded_image_size(self) -> int | None:
        """The side of the images the datasets yield; None when they yield no images."""
        return self.hparams.image_size if self.load_images else None

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        processing: dict[str, dict[str, Any]] = {"hands": self.detector_settings.to_dict()}
        if self.loaded_image_size is not None:
            processing["image"] = {"size": self.loaded_image_size, "interpolation": self.hparams.interpolation}
        return processing

    def landmark_cache_path(self, folder: Path | None = None) -> Path:
        folder = folder or self.root
        if folder == self.root and self.hparams.landmarks_file:
            return Path(self.hparams.landmarks_file)
        return default_cache_path(folder)

    def _ensure_cache(self, folder: Path, paths: list[str]) -> None:
        cache_path = self.landmark_cache_path(folder)
        problem = cache_problem(cache_path, folder, paths, self.hparams.hand_model, self.detector_settings)
        if problem:
            log.warning("building the landmark cache %s because %s", cache_path, problem)
            summary = extract_landmarks(
                folder, cache_path, self.hparams.hand_model, self.detector_settings,
                workers=self.hparams.extraction_workers, paths=paths,
            )
            log.warning("%s", summary.format())

    def prepare_data(self) -> None:
        self._ensure_cache(self.root, self._listing[1])
        if self.hparams.predict_root:
            folder = Path(self.hparams.predict_root)
            self._ensure_cache(folder, list_images(folder))

    def _load(self, folder: Path, paths: list[str]) -> tuple[list[int], np.ndarray, LandmarkCache, dict[str, str]]:
        """The indices of ``paths`` that have landmarks, their rows in the cache, the cache, and the images left out
        (the detector could not read them) with the reason; those are reported."""
        cache = LandmarkCache.load(self.landmark_cache_path(folder))
        index = cache.index_of()
        kept = [i for i, p in enumerate(paths) if p in index]
        skipped = cache.meta.get("skipped", {})
        left_out = {p: skipped.get(p, "not in the landmark cache") for p in paths if p not in index}
        self.report_left_out(folder, left_out)
        return kept, np.array([index[paths[i]] for i in kept], dtype=int), cache, left_out

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            folder = Path(self.hparams.predict_root or self.root)
            paths = list_images(folder)
            kept, rows, cache, self.predict_skipped = self._load(folder, paths)
            self.datasets["predict"] = SignImageDataset(
                folder, [paths[i] for i in kept], [-1] * len(kept), cache.landmarks[rows], cache.present[rows],
                cache.image_size[rows], self.loaded_image_size, self.hparams.interpolation,
            )
            return
        if "train" in self.datasets:
            return
        _, all_paths, all_labels = self._listing
        kept, rows, cache, _ = self._load(self.root, all_paths)
        paths = [all_paths[i] for i in kept]
        labels = [all_labels[i] for i in kept]
        for split, indices in self.split_indices(labels).items():
            if split == "test" and not len(indices):
                continue
            self.datasets[split] = SignImageDataset(
                self.root, [paths[i] for i in indices], [labels[i] for i in indices],
                cache.landmarks[rows[indices]], cache.present[rows[indices]], cache.image_size[rows[indices]],
                self.loaded_image_size, self.hparams.interpolation,
                # landmark-only batches are augmented on tensors, a batch at a time (augment_batch)
                augment=self.augmenter if split == "train" and self.load_images else None,
            )


class LandmarkDataModule(SignDataModule):
    """The hand landmarks of a folder-per-class sign dataset, without its pixels: the same cache, classes and
    splits as ``SignDataModule`` (with the same ``split_seed`` the splits are identical), but no image is decoded
    after the landmark cache exists, so an epoch takes milliseconds.

    Photos without a detected hand stay in every split (their landmarks are zeros): a landmark-only model's accuracy
    is then comparable with a hybrid's on the same test split. The arguments are ``SignDataModule``'s; those about
    pixels (``image_size``, ``interpolation``, and ``augment``'s ``zoom``, ``contrast`` and ``brightness``) have no
    effect, and ``augment``'s rotation, stretch and jitter augment the training landmarks.
    ``configs/sign_landmarks.yaml`` sets loader settings fit for tensors in memory (no worker processes).
    """

    load_images = False
    in_memory = True
    collate_fn = staticmethod(collate_batched)  # the batches are indexed whole from the tensors

    def augment_batch(self, batch: dict) -> dict:
        # one vectorised pass per training batch instead of per-sample Python (HandAugment.landmarks_batch)
        if self.augmenter is not None:
            batch = dict(batch)
            batch["landmarks"], batch["present"] = self.augmenter.landmarks_batch(batch["landmarks"], batch["present"])
        return batch
