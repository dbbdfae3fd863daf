"""Callbacks: progressive (staged) training and CSV prediction output."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.strategies import DDPStrategy

log = logging.getLogger(__name__)

Group = Literal["image", "landmarks", "fusion", "head"]


@dataclass
class Stage:
    """One stage of progressive training.

    Attributes:
        name: shown in logs.
        epochs: length of the stage.
        lr: learning rate set at the start of the stage.
        train: parameter groups that are trained; the others are frozen (and their BatchNorm/Dropout in eval mode).
        inputs: which inputs feed the head during the stage (a switched-off branch contributes zeros).
    """

    name: str
    epochs: int
    lr: float
    train: list[Group] = field(default_factory=lambda: ["image", "landmarks", "fusion", "head"])
    inputs: Literal["both", "image", "landmarks"] = "both"


SEED_STAGES = [
    Stage("visual", 20, 1e-3, ["image", "head"], "image"),
    Stage("landmark", 20, 1e-3, ["landmarks", "head"], "landmarks"),
    Stage("fusion", 30, 1e-4, ["fusion", "head"], "both"),
    Stage("end_to_end", 50, 1e-5, ["image", "landmarks", "fusion", "head"], "both"),
]


class ProgressiveTraining(Callback):
    """Train the hybrid model in stages (the reference design's: visual, landmark, fusion + head, end-to-end).

    At each stage start the learning rate of every parameter group is set and a ReduceLROnPlateau scheduler is reset;
    inside a stage the scheduler works as usual. The stage follows ``current_epoch``, so a resumed run continues in
    the right stage with the optimiser's saved learning rate. The model must have ``parameter_groups()`` and
    ``active_inputs`` (``HybridSignNet`` does). Under DDP use ``strategy: ddp_find_unused_parameters_true``: frozen
    parameters get no gradient.

    Args:
        stages: the stages in order; default: the reference design's four (120 epochs).
    """

    def __init__(self, stages: list[Stage] | None = None):
        self.stages = [Stage(**s) if isinstance(s, dict) else s for s in (stages or SEED_STAGES)]
        if not self.stages or any(s.epochs < 1 for s in self.stages):
            raise ValueError("progressive training needs at least one stage, each of at least one epoch")
        self.starts = [sum(s.epochs for s in self.stages[:i]) for i in range(len(self.stages))]
        self.total_epochs = sum(s.epochs for s in self.stages)

    def stage_at(self, epoch: int) -> tuple[int, Stage]:
        index = max(i for i, start in enumerate(self.starts) if epoch >= start)
        return index, self.stages[index]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        model = getattr(pl_module, "model", None)
        if not hasattr(model, "parameter_groups"):
            raise TypeError(f"ProgressiveTraining needs a model with parameter_groups(); got {type(model).__name__}")
        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters", False):
            raise ValueError(
                "ProgressiveTraining freezes parameters, which DDP only allows with find_unused_parameters: "
                "use --trainer.strategy ddp_find_unused_parameters_true"
            )
        if stage == "fit" and trainer.max_epochs is not None and 0 < trainer.max_epochs < self.total_epochs:
            log.warning("max_epochs=%d ends before the %d epochs of the stages", trainer.max_epochs, self.total_epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        index, stage = self.stage_at(trainer.current_epoch)
        model = pl_module.model
        for name, modules in model.parameter_groups().items():
            trained = name in stage.train
            for module in modules:
                module.requires_grad_(trained)
                module.train(trained)  # frozen BatchNorm keeps its statistics, like Keras' trainable=False
        model.active_inputs = stage.inputs if model.inputs == "both" else model.inputs
        if trainer.current_epoch == self.starts[index]:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = stage.lr
            for config in trainer.lr_scheduler_configs:
                scheduler = config.scheduler
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.best, scheduler.num_bad_epochs, scheduler.cooldown_counter = scheduler.mode_worse, 0, 0
            log.info("progressive training: stage %d/%d '%s' from epoch %d, lr %g, training %s, inputs %s",
                     index + 1, len(self.stages), stage.name, trainer.current_epoch, stage.lr, stage.train,
                     stage.inputs)
        pl_module.log("stage", float(index), on_epoch=True, on_step=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        model.active_inputs = model.inputs
        model.requires_grad_(True)

    def state_dict(self) -> dict:
        return {"stages": [vars(s) for s in self.stages]}


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
        path = Path(self.output) if self.output else Path(trainer.log_dir or trainer.default_root_dir) / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self._path, self._header_written = path, False

    @staticmethod
    def _rows(prediction: dict, class_names: list[str] | None) -> tuple[list[str], list[list]]:
        if "predicted" in prediction:  # a classifier
            rows = [[path, class_names[p] if class_names else p, f"{probability:.6f}"] for path, p, probability in zip(
                prediction["path"], prediction["predicted"].tolist(), prediction["probability"].tolist())]
            return ["path", "predicted_class", "probability"], rows
        columns = list(prediction)
        values = [v.tolist() if hasattr(v, "tolist") else list(v) for v in prediction.values()]
        return columns, [list(row) for row in zip(*values)]

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        header, rows = self._rows(prediction, getattr(pl_module, "class_names", None))
        with open(self._path, "a", newline="") as f:
            writer = csv.writer(f)
            if not self._header_written:
                writer.writerow(header)
                self._header_written = True
            writer.writerows(rows)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"predictions written to {self._path}")
