"""What every signbridge datamodule shares: a root, named split datasets, a seeded split and the loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate

from ..errors import InputError, check_range
from ..hparams import save_plain_hyperparameters
from .splits import stratified_split

if TYPE_CHECKING:
    from lightning.fabric.utilities.data import AttributeDict


log = logging.getLogger(__name__)


class SplitLoaders:
    """The four loaders of a datamodule whose ``_loader(split, shuffle=...)`` builds one split's loader."""

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


class SplitDataModule(SplitLoaders, L.LightningDataModule):
    """A dataset under ``root`` split into ``train``/``val``/``test``/``predict`` datasets (``self.datasets``).

    The split and loader arguments are declared here once; subclasses take their own arguments and pass the rest on
    (``**kwargs``), fill ``self.datasets`` in ``setup``, and set ``collate_fn`` when their items need more than the
    default collation. Every argument of the subclass and of this base is saved as a hyperparameter.

    Args:
        root: dataset folder.
        val_fraction: share of each class (or of the images) for validation.
        test_fraction: share for testing (1: every sample is tested, a test-only dataset).
        split_seed: seed of the split (stable across runs and machines).
        batch_size: samples per batch (per process under DDP).
        eval_batch_size: samples per validation, test and predict batch; default: ``batch_size``. Evaluation keeps
            no activations for a backward pass, so it can take larger batches (fewer per-batch costs).
        num_workers: DataLoader worker processes.
        pin_memory: pin batches for faster host-to-GPU copies.
        persistent_workers: keep workers alive between epochs.
        batches_per_step: in-memory data only: the training batches one Lightning step receives, as a list. The
            task still takes one optimizer step per batch (the same training), and Lightning's own per-step work
            (hooks, progress, logging) is done once per list: for a model whose step takes milliseconds, that work
            cost as much as the step. As Keras's ``steps_per_execution``; the README ("Several batches per
            step") says what counts differently.
    """

    collate_fn: Callable[[list], dict] | None = None
    in_memory = False
    """The datasets are tensors in memory (landmarks, sequences): loaded in this process whatever ``num_workers``
    says, since worker processes would only add their start-up (re-spawned every epoch) to milliseconds of work."""

    if TYPE_CHECKING:  # Lightning types hparams as a plain mapping; the saved arguments are read as attributes

        @property
        def hparams(self) -> AttributeDict: ...

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        batches_per_step: int = 1,
        eval_batch_size: int | None = None,
    ):
        super().__init__()
        check_range("batch_size", batch_size, 1)
        if eval_batch_size is not None:
            check_range("eval_batch_size", eval_batch_size, 1)
        check_range("batches_per_step", batches_per_step, 1)
        if batches_per_step > 1 and not self.in_memory:
            raise InputError(f"batches_per_step={batches_per_step}: {type(self).__name__} reads files for its "
                             "batches; several batches per step are for data held in memory (set 1)")
        check_range("num_workers", num_workers, 0)
        check_range("val_fraction", val_fraction, 0, 1, high_open=True)
        check_range("test_fraction", test_fraction, 0, 1)
        if test_fraction < 1 and val_fraction + test_fraction >= 1:
            raise InputError(f"val_fraction + test_fraction must leave samples to train on, got {val_fraction} + "
                             f"{test_fraction}")
        # collects the arguments of every __init__ on the way here, the subclass's included
        save_plain_hyperparameters(self)
        self.root = Path(root)
        if not self.root.is_dir():  # before the trainer starts, not after minutes of set-up
            raise InputError(f"{root}: the data root is not a folder (data.init_args.root)")
        self.datasets: dict[str, Any] = {}  # map-style datasets with __len__ (torch's Dataset type has none)

    def inference_preprocessing(self) -> dict[str, dict[str, Any]]:
        """What this datamodule does to the inputs that a model must see the same way at inference (image size and
        interpolation, detector settings, ...); the tasks save it in their inference contract."""
        return {}

    def split_indices(self, labels: list[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Sample indices of the train/val/test splits (stratified by ``labels``, from ``split_seed``)."""
        h = self.hparams
        # test_fraction 1: a test-only dataset (e.g. signs a text-aligned model never saw)
        fractions = (0, 0, 1) if self.test_only else (1 - h.val_fraction - h.test_fraction, h.val_fraction,
                                                      h.test_fraction)
        return dict(zip(("train", "val", "test"), stratified_split(labels, fractions, h.split_seed)))

    @property
    def test_only(self) -> bool:
        """``test_fraction: 1``: every sample is tested (nothing to train on)."""
        return self.hparams.test_fraction >= 1 and not self.hparams.get("num_folds")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """A dict batch's tensors moved to ``device``, its lists of names and paths left as they are: Lightning's
        default walks every element of every list, which for a batch of paths cost more than a landmark model's
        training step."""
        if isinstance(batch, list) and batch and all(isinstance(item, dict) for item in batch):  # batches_per_step
            return [self.transfer_batch_to_device(item, device, dataloader_idx) for item in batch]
        if not isinstance(batch, dict):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        blocking = device.type in ("cpu", "mps")  # as Lightning's move_data_to_device
        moved: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                moved[key] = value.to(device, non_blocking=not blocking)
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                moved[key] = value
            else:
                moved[key] = super().transfer_batch_to_device(value, device, dataloader_idx)
        return moved

    def augment_batch(self, batch: dict) -> dict:
        """A training batch augmented on its device (after the transfer); the data's own augmentation, if any."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return batch
        if isinstance(batch, list):  # several batches for one step (batches_per_step)
            return [self.augment_batch(item) for item in batch]
        return self.augment_batch(batch)

    def _loader(self, split: str, shuffle: bool = False, sampler: Sampler | None = None) -> DataLoader:
        """The loader of one split; a training loader (``shuffle``) drops its last incomplete batch, and draws with
        ``sampler`` when one is given. With ``batches_per_step`` a training loader yields lists of that many
        batches (the last list of an epoch may hold fewer)."""
        h = self.hparams
        if split not in self.datasets:
            raise InputError(f"{self.root}: there is no {split} split (test_fraction={h.test_fraction}); set "
                             f"data.init_args.test_fraction{' or num_folds' if 'num_folds' in h else ''}")
        workers = 0 if self.in_memory else h.num_workers
        if self.in_memory and h.num_workers and not getattr(self, "_said_in_memory", False):
            log.info("%s: the data are tensors in memory, loaded without worker processes (num_workers=%d unused)",
                     type(self).__name__, h.num_workers)
            self._said_in_memory = True
        drop_last = shuffle and len(self.datasets[split]) > h.batch_size
        per_step = h.get("batches_per_step", 1) if shuffle else 1
        # a list of batches is drawn as one batch of that many samples, then cut (BatchList), so an epoch sees the
        # same samples in the same batches as with one batch per step
        collate: Callable | None = (BatchList(h.batch_size, drop_last, self.collate_fn) if per_step > 1 else
                                    self.collate_fn)
        size = h.batch_size * per_step if shuffle else h.get("eval_batch_size") or h.batch_size
        return DataLoader(
            self.datasets[split], batch_size=size, shuffle=shuffle and sampler is None,
            sampler=sampler, num_workers=workers,
            pin_memory=h.pin_memory, persistent_workers=h.persistent_workers and workers > 0,
            collate_fn=collate, drop_last=drop_last and per_step == 1,
        )


class BatchList:
    """The collation of ``batches_per_step``: the samples of several batches, drawn as one, cut into batches of
    ``batch_size`` (the last one dropped when incomplete and ``drop_last``), each collated by ``collate_fn``."""

    def __init__(self, batch_size: int, drop_last: bool, collate_fn: Callable[[Any], dict] | None):
        self.batch_size, self.drop_last = batch_size, drop_last
        self.collate_fn: Callable[[Any], dict] = collate_fn or default_collate

    def __call__(self, items: list | dict) -> list[dict]:
        size = self.batch_size
        if isinstance(items, dict):  # drawn whole by the dataset's __getitems__: cut the collated batch
            batch = self.collate_fn(items)
            count = len(batch["label"])
            batches = [{key: value[first:first + size] for key, value in batch.items()}
                       for first in range(0, count, size)]
        else:
            count = len(items)
            batches = [self.collate_fn(items[first:first + size]) for first in range(0, count, size)]
        if self.drop_last and count % size:
            batches.pop()
        return batches

    def batches_in(self, samples: int) -> int:
        """The batches an epoch of ``samples`` is cut into."""
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

