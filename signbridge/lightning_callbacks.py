"""Callbacks shared by every task: CSV prediction output, a checkpoint when a fit is stopped, and ``callbacks()``,
the set that ``signbridge fit`` runs with, for a plain ``lightning.Trainer``."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .files import check_writable

log = logging.getLogger(__name__)


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
        check_writable(path, "predictions file")
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


def callbacks(monitor: str = "val_loss", mode: str = "min") -> list[Callback]:
    """What a ``signbridge fit`` adds to a run, for a plain ``lightning.Trainer`` in research code: the best
    checkpoint by ``monitor``, ``last.ckpt`` after every epoch (resume with ``ckpt_path``), ``model.json`` beside
    them (``ModelMetadata``), and ``last.ckpt`` where a Ctrl-C or SIGTERM stopped the fit (``SaveOnInterrupt``).

    ``trainer = L.Trainer(callbacks=signbridge.callbacks("val_loss"))``: the run folder then has what the CLI's
    has, and ``signbridge models list`` and the app show the model.
    """
    from .metadata import ModelMetadata

    best = ModelCheckpoint(monitor=monitor, mode=mode, auto_insert_metric_name=False,
                           filename=f"epoch{{epoch:03d}}-{monitor}{{{monitor}:.4f}}")
    # Lightning's own save_last only rewrites last.ckpt in epochs that also save a best checkpoint
    last = ModelCheckpoint(filename="last", save_top_k=1, enable_version_counter=False)
    return [best, last, ModelMetadata(), SaveOnInterrupt()]
