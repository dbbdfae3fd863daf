"""Callbacks shared by every task: CSV prediction output, ``last.ckpt`` at an interval (``LastCheckpoint``) and when a
fit is stopped, the best checkpoints written at an interval (``BufferedCheckpoint``), ``model.json`` beside the
checkpoints (``ModelMetadata``), and ``callbacks()``, the set that ``signbridge fit`` runs with, for a plain
``lightning.Trainer``."""

from __future__ import annotations

import csv
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning_utilities.core.apply_func import apply_to_collection

from .errors import InputError
from .files import atomic_write, check_writable, is_text_output, write_json_atomic
from .metadata import FORMAT, METADATA_FILE, _checkpoint_facts, _scalars, library_versions, read_metadata

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, written atomically (``files.atomic_write``): a full disk or a kill while a
    checkpoint is written leaves the previous file (or none), never half a checkpoint under its real name, which a
    resumed run would then fail to load. Remote paths (``s3://...``) are written as Lightning writes them."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path) as f:
            torch.save(checkpoint, f)


def interval_passed(trainer: L.Trainer, since: float | None, min_interval_s: float) -> bool:
    """Whether ``min_interval_s`` seconds have passed since ``since`` (a ``time.monotonic()``; None: nothing saved
    yet, 0 s: always). Rank 0's clock decides: a save waits for every process, so they must all make it or all skip
    it (diverging clocks would hang the fit)."""
    if not min_interval_s or since is None:
        return True
    return bool(trainer.strategy.broadcast(time.monotonic() - since >= min_interval_s))


def _check_interval(owner: str, min_interval_s: float) -> None:
    if min_interval_s < 0:
        raise InputError(f"{owner}: min_interval_s must be >= 0, got {min_interval_s}")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, the checkpoint a fit continues from (``fit --ckpt_path .../last.ckpt``): saved at the end of
    an epoch once ``min_interval_s`` seconds have passed since its previous save (0: after every epoch), and at the
    end of the fit. A fit stopped by Ctrl-C or SIGTERM saves one where it stopped (``SaveOnInterrupt``); after
    ``kill -9`` it continues from at most ``min_interval_s`` plus an epoch earlier.

    A checkpoint of the landmark classifier took 5 ms to save, while its epochs on the digits took 60-110 ms: a save
    after every such epoch spends 5-8 % of the fit on buying back a tenth of a second of a killed one.
    """

    def __init__(self, min_interval_s: float = 0.0, dirpath: str | None = None) -> None:
        super().__init__(dirpath=dirpath, filename="last", save_top_k=1, enable_version_counter=False)
        _check_interval("LastCheckpoint", min_interval_s)
        self.min_interval_s = min_interval_s
        self._saved_at: float | None = None

    def _should_skip_saving_checkpoint(self, trainer: L.Trainer) -> bool:
        return (not interval_passed(trainer, self._saved_at, self.min_interval_s)
                or super()._should_skip_saving_checkpoint(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._saved_at = time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._saved_at = None  # the fit's final state, however recent the previous save
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


class BufferedCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the ``save_top_k`` best by ``monitor``; every argument is its), with its
    files written at most every ``min_interval_s`` seconds. A checkpoint made in between is kept in memory (a CPU
    copy of its tensors) and written at the first epoch end once the interval has passed, whenever another
    checkpoint of the fit is saved (so a ``last.ckpt`` never names a best file that is not on disk), at the end of
    the fit and when it stops on an exception (Ctrl-C and SIGTERM included). A file it replaces is deleted only once
    its successor is written: after ``kill -9`` the folder holds the best of at most ``min_interval_s`` plus an
    epoch earlier. 0 (the default) writes each at once, exactly as ``ModelCheckpoint``.

    The landmark classifier on the digits found a better epoch in about half of its 50 ms epochs; writing each
    (3-4 ms, with the removal of the previous one) cost about a tenth of its fit on a laptop's CPU.
    """

    def __init__(self, min_interval_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_interval("BufferedCheckpoint", min_interval_s)
        if min_interval_s and self.save_last:
            raise InputError("BufferedCheckpoint: save_last with min_interval_s is not supported; add a "
                             "LastCheckpoint for last.ckpt")
        self.min_interval_s = min_interval_s
        self._pending: dict[str, dict[str, Any]] = {}  # file -> its checkpoint, not yet written
        self._superseded: list[str] = []  # written files to delete once their successors are written
        self._written_at: float | None = None
        self._dumping = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.min_interval_s and not isinstance(trainer.strategy, SingleDeviceStrategy | DDPStrategy):
            # a sharded strategy (FSDP, DeepSpeed) gathers and writes its checkpoints collectively, as it saves them
            log.warning("BufferedCheckpoint: %s checkpoints are written at once (min_interval_s applies to one "
                        "device and DDP)", type(trainer.strategy).__name__)
            self.min_interval_s = 0.0

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if not self.min_interval_s:
            return super()._save_checkpoint(trainer, filepath)
        self._dumping = True  # this dump's on_save_checkpoint must not write what is pending
        try:
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)
        finally:
            self._dumping = False
        # a copy: the tensors of the state dicts are the live ones, which the next steps change
        self._pending[filepath] = apply_to_collection(checkpoint, torch.Tensor,
                                                      lambda t: t.detach().to("cpu", copy=True))
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if self._written_at is None:  # the first one at once: a fit has a best file from its first epoch on
            self.write_pending(trainer)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self._pending.pop(filepath, None) is not None:
            return  # never written
        if self.min_interval_s:
            self._superseded.append(filepath)  # deleted once what replaces it is on disk
        else:
            super()._remove_checkpoint(trainer, filepath)

    def write_pending(self, trainer: L.Trainer) -> None:
        """Write the checkpoints kept in memory, then delete the files they replace (on every process together)."""
        if not self._pending and not self._superseded:
            return
        for filepath, checkpoint in self._pending.items():
            trainer.strategy.save_checkpoint(checkpoint, filepath)  # rank 0 writes
        trainer.strategy.barrier("BufferedCheckpoint.write_pending")
        for filepath in self._superseded:
            if filepath not in self._pending:
                super()._remove_checkpoint(trainer, filepath)
        written = bool(self._pending)
        self._pending, self._superseded = {}, []
        self._written_at = time.monotonic()
        if written and trainer.is_global_zero:
            for logger in trainer.loggers:  # as ModelCheckpoint tells them, now that the files exist
                logger.after_save_checkpoint(proxy(self))

    def _write_when_due(self, trainer: L.Trainer) -> None:
        if (self._pending or self._superseded) and interval_passed(trainer, self._written_at, self.min_interval_s):
            self.write_pending(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._write_when_due(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._write_when_due(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if not self._dumping:  # another checkpoint (last.ckpt) records this one's files: they must exist
            self.write_pending(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.write_pending(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        try:
            self.write_pending(trainer)
        except Exception as error:  # a full disk, say: the fit's own exception is the one to see
            log.warning("could not write the best checkpoint kept in memory (%s: %s)", type(error).__name__, error)


class SaveOnInterrupt(Callback):
    """When a fit is stopped by Ctrl-C or SIGTERM (``timeout``, Slurm, ``kill``), save ``last.ckpt`` in the run's
    checkpoint folder, so ``fit --ckpt_path .../last.ckpt`` continues from where it stopped instead of from the
    last epoch's end. (Lightning itself stops a SIGTERM-ed fit at the next batch, so the state saved is whole.)
    ``kill -9`` cannot be handled: resuming then loses at most the epoch in progress, from the ``last.ckpt`` that
    a ``ModelCheckpoint`` with ``filename: last`` (every config has one) writes after each epoch.
    """

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        checkpoint = trainer.checkpoint_callback
        if (not isinstance(exception, KeyboardInterrupt | SIGTERMException) or trainer.state.fn != "fit"
                or trainer.sanity_checking or trainer.global_step == 0
                or not isinstance(checkpoint, ModelCheckpoint) or checkpoint.dirpath is None):
            return
        path = Path(checkpoint.dirpath) / "last.ckpt"
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            log.warning("stopped at epoch %d, step %d: saved %s; continue with --ckpt_path %s",
                        trainer.current_epoch, trainer.global_step, path, path)


class PredictionWriter(BasePredictionWriter):
    """Write ``predict`` results as CSV, one row per image.

    Classifiers give (path, predicted class, probability); other tasks return a dict of per-image lists (e.g. the
    recognizer's ``path, text``), whose keys become the columns.

    Args:
        output: CSV file; default ``predictions.csv`` in the trainer's log folder. Under several processes each rank
            writes its own file (``.rank{N}`` before the suffix).
    """

    def __init__(self, output: str | None = None):
        super().__init__(write_interval="batch")
        self.output = output
        self._path: Path | None = None
        self._header_written = False

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        default = Path(trainer.log_dir or trainer.default_root_dir) / "predictions.csv"
        path = Path(self.output) if self.output else default
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        data = getattr(trainer, "datamodule", None)
        settings = getattr(data, "hparams", None) or {}
        roots = [r for r in (getattr(data, "root", None), settings.get("predict_root")) if r]  # never inside the data
        check_writable(path, "predictions file", data_roots=roots, own=is_text_output("path"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self._path, self._header_written = path, False

    @staticmethod
    def _rows(prediction: dict, class_names: list[str] | None) -> tuple[list[str], list[list]]:
        if "predicted" in prediction:  # a classifier
            rows = [[path, class_names[p] if class_names else p, f"{probability:.6f}"] for path, p, probability in zip(
                prediction["path"], prediction["predicted"].tolist(), prediction["probability"].tolist())]
            return ["path", "predicted_class", "probability", "skipped"], [row + [""] for row in rows]
        columns = list(prediction)
        values = [v.tolist() if hasattr(v, "tolist") else list(v) for v in prediction.values()]
        return columns, [list(row) for row in zip(*values)]

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        header, rows = self._rows(prediction, getattr(pl_module, "class_names", None))
        self._append(header, rows)

    def _append(self, header: list[str], rows: list[list]) -> None:
        with open(self._path, "a", newline="") as f:  # type: ignore[arg-type]  # set in on_predict_start
            writer = csv.writer(f)
            if not self._header_written:
                writer.writerow(header)
                self._header_written = True
            writer.writerows(rows)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the images the datamodule could not read get a row too, with the reason, so no input goes missing
        skipped = getattr(getattr(trainer, "datamodule", None), "predict_skipped", {})
        if skipped and trainer.is_global_zero and hasattr(pl_module, "class_names"):
            self._append(["path", "predicted_class", "probability", "skipped"],
                         [[path, "", "", why] for path, why in sorted(skipped.items())])
        if trainer.is_global_zero:
            print(f"predictions written to {self._path}" + (f" ({len(skipped)} unreadable images listed as skipped)"
                                                             if skipped else ""))


class ModelMetadata(Callback):
    """Write ``model.json`` beside the checkpoints when a fit finishes.

    It holds: classes, the best checkpoint and its monitored value, final metrics, hyperparameters, per-epoch
    history, data root and split sizes, library versions and the date. The history is kept in the callback's state,
    so a resumed run keeps the epochs before the interruption.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.extra: dict[str, Any] = {}

    def _record(self, trainer: L.Trainer, validation_only: bool) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {key: value for key, value in _scalars(trainer.callback_metrics).items()
                   if key.startswith("val_") or not validation_only}
        if not metrics:
            return
        row = next((row for row in self.history if row["epoch"] == trainer.current_epoch), None)
        if row is None:
            row = {"epoch": trainer.current_epoch}
            self.history.append(row)
        row.update(metrics)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before the epoch's checkpoints are saved (Lightning runs checkpoint callbacks last), so a run resumed from
        # one has this epoch's validation values; the train values of an epoch exist only at its end
        self._record(trainer, validation_only=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, validation_only=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        checkpoint = trainer.checkpoint_callback
        if not trainer.is_global_zero or not isinstance(checkpoint, ModelCheckpoint) or not checkpoint.best_model_path:
            return
        best = Path(checkpoint.best_model_path)
        datamodule = getattr(trainer, "datamodule", None)
        score = checkpoint.best_model_score
        data: dict[str, Any] = {}
        if datamodule is not None:
            data["class"] = type(datamodule).__module__ + "." + type(datamodule).__name__
            data.update(root=str(getattr(datamodule, "root", "")), hyperparameters=dict(datamodule.hparams))
            if hasattr(datamodule, "split_sizes"):
                data["split_sizes"] = datamodule.split_sizes()
        config = Path(log_dir or "") / "config.yaml"
        thresholds, inference = _checkpoint_facts(best, getattr(pl_module, "class_names", None))
        metadata = {
            "format": FORMAT,
            "checkpoint": best.name,
            "task": type(pl_module).__module__ + "." + type(pl_module).__name__,
            "classes": getattr(pl_module, "class_names", None),
            "monitor": checkpoint.monitor,
            "mode": checkpoint.mode,
            "best": {checkpoint.monitor: float(score) if score is not None else None,
                     "epoch": self._epoch_with(checkpoint.monitor, score)},
            "final": _scalars(trainer.callback_metrics),
            "epochs": trainer.current_epoch,
            "hyperparameters": dict(pl_module.hparams),
            "data": data,
            "history": self.history,
            "thresholds": thresholds,
            "inference": inference,
            "versions": library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": os.path.relpath(config, best.parent) if config.exists() else None,
            **self.extra,
        }
        write_json_atomic(best.parent / METADATA_FILE, metadata)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``test --ckpt_path`` of a saved model: its scores, per-class table and confusion matrix go into the
        ``model.json`` beside the checkpoint (``test``), so the models folder shows how each model tested."""
        if not trainer.is_global_zero or not trainer.ckpt_path:
            return
        checkpoint = Path(trainer.ckpt_path)
        metadata_path = checkpoint.parent / METADATA_FILE
        if not metadata_path.is_file():
            return
        try:
            metadata = read_metadata(metadata_path)
        except InputError:
            return  # an unreadable model.json is reported by 'models list'; a test must not fail on it
        datamodule = getattr(trainer, "datamodule", None)
        metadata["test"] = {
            "checkpoint": checkpoint.name,
            "metrics": {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test_")},
            "data_root": str(getattr(datamodule, "root", "")) if datamodule is not None else None,
            **(getattr(pl_module, "test_report", None) or {}),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(metadata_path, metadata)

    def _epoch_with(self, monitor: str | None, score: torch.Tensor | float | None) -> int | None:
        """The first epoch of the history that reached the best checkpoint's score (the one ModelCheckpoint kept)."""
        if monitor is None or score is None:
            return None
        return next((int(row["epoch"]) for row in self.history if row.get(monitor) == float(score)), None)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))


def callbacks(monitor: str = "val_loss", mode: str = "min") -> list[Callback]:
    """What a ``signbridge fit`` adds to a run, for a plain ``lightning.Trainer`` in research code: the best
    checkpoint by ``monitor``, ``last.ckpt`` after every epoch (``LastCheckpoint``; resume with ``ckpt_path``),
    ``model.json`` beside them (``ModelMetadata``), and ``last.ckpt`` where a Ctrl-C or SIGTERM stopped the fit
    (``SaveOnInterrupt``).

    ``trainer = L.Trainer(callbacks=signbridge.callbacks("val_loss"))``: the run folder then has what the CLI's
    has, and ``signbridge models list`` and the app show the model.
    """
    best = ModelCheckpoint(monitor=monitor, mode=mode, auto_insert_metric_name=False,
                           filename=f"epoch{{epoch:03d}}-{monitor}{{{monitor}:.4f}}")
    # Lightning's own save_last only rewrites last.ckpt in epochs that also save a best checkpoint
    return [best, LastCheckpoint(), ModelMetadata(), SaveOnInterrupt()]
