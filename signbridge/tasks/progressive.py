"""Progressive (staged) training of the hybrid sign classifier, with early stopping per stage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from ..errors import InputError
from ..models.hybrid import HybridSignNet, Inputs, ParameterGroup
from .hybrid import HybridSignClassifier


@dataclass
class Stage:
    """One stage of progressive training.

    Attributes:
        name: shown in logs.
        epochs: the longest the stage runs; it ends earlier when ``monitor`` stops improving.
        lr: learning rate set at the start of the stage.
        train: parameter groups that are trained; the others are frozen (and their BatchNorm/Dropout in eval mode).
        inputs: which inputs the model reads during the stage (a switched-off branch contributes zeros).
    """

    name: str
    epochs: int
    lr: float
    train: list[ParameterGroup] = field(default_factory=lambda: ["image", "landmarks", "fusion", "head"])
    inputs: Inputs = "both"


REFERENCE_STAGES = [
    Stage("visual", 20, 1e-3, ["image", "head"], "image"),
    Stage("landmark", 20, 1e-3, ["landmarks", "head"], "landmarks"),
    Stage("fusion", 30, 1e-4, ["fusion", "head"], "both"),
    Stage("end_to_end", 50, 1e-5, ["image", "landmarks", "fusion", "head"], "both"),
]


class ProgressiveTraining(Callback):
    """Train ``HybridSignClassifier`` in stages (by default the reference design's: visual, landmark, fusion + head,
    end-to-end), each with its own learning rate, trained parameter groups, inputs and early stopping.

    A stage ends after its ``epochs`` or when ``monitor`` has not improved for ``patience`` epochs of that stage,
    whichever comes first; the run ends with the last stage. At each stage start the learning rate of every parameter
    group is set and a ReduceLROnPlateau scheduler is reset. The model's active inputs are a buffer of the model, so
    every checkpoint is evaluated with the inputs of the stage it was saved in; the stage itself is saved in the
    callback's state, so a resumed run continues in the right stage.

    This callback replaces ``EarlyStopping`` (one early stopping across stages would end the run in an early stage):
    a trainer with both is refused. Under DDP use ``strategy: ddp_find_unused_parameters_true``: frozen parameters
    get no gradient.

    Args:
        stages: the stages in order; default: the reference design's four (120 epochs at most).
        monitor: the metric that ends a stage early.
        mode: ``min`` or ``max`` of ``monitor``.
        patience: epochs without improvement of ``monitor`` that end a stage; None: stages run their full length.
        min_delta: the least change that counts as an improvement.
    """

    def __init__(
        self,
        stages: list[Stage] | None = None,
        monitor: str = "val_loss",
        mode: Literal["min", "max"] = "min",
        patience: int | None = 10,
        min_delta: float = 0.0,
    ):
        self.stages = [Stage(**s) if isinstance(s, dict) else s for s in (stages or REFERENCE_STAGES)]
        if not self.stages or any(s.epochs < 1 for s in self.stages):
            raise InputError("progressive training needs at least one stage, each of at least one epoch")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.total_epochs = sum(s.epochs for s in self.stages)
        self.stage_index, self.stage_start, self.stage_ended = 0, 0, False
        self._reset_patience()
        self._started = -1  # the stage whose learning rate was set (not saved: a resumed run keeps its optimiser's)

    def _reset_patience(self) -> None:
        self.best, self.wait = (math.inf if self.mode == "min" else -math.inf), 0

    @property
    def stage(self) -> Stage:
        return self.stages[self.stage_index]

    def _stage_over(self, epochs_done: int) -> bool:
        """Whether the current stage is over after ``epochs_done`` of its epochs (its length, or early stopping)."""
        return self.stage_ended or epochs_done >= self.stage.epochs

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, HybridSignClassifier):
            raise InputError(f"ProgressiveTraining trains HybridSignClassifier; got {type(pl_module).__name__}")
        others = [c for c in getattr(trainer, "callbacks", []) if isinstance(c, EarlyStopping)]
        if others:
            raise InputError("ProgressiveTraining stops each stage early itself (its patience), and EarlyStopping "
                             "would end the whole run in an early stage: remove the EarlyStopping callback "
                             "(configs/sign_digits_progressive.yaml replaces the callback list)")
        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters", False):
            raise InputError(
                "ProgressiveTraining freezes parameters, which DDP only allows with find_unused_parameters: "
                "use --trainer.strategy ddp_find_unused_parameters_true"
            )
        if stage == "fit" and trainer.max_epochs is not None and 0 < trainer.max_epochs < self.total_epochs:
            rank_zero_warn(f"max_epochs={trainer.max_epochs} ends before the {self.total_epochs} epochs of the stages")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stage_over(trainer.current_epoch - self.stage_start):
            if self.stage_index == len(self.stages) - 1:
                trainer.should_stop = True
                return
            self.stage_index, self.stage_start, self.stage_ended = self.stage_index + 1, trainer.current_epoch, False
            self._reset_patience()
        stage = self.stage
        model: HybridSignNet = pl_module.model  # type: ignore[assignment]  # a HybridSignClassifier's (setup)
        model.set_stage(stage.train, stage.inputs)
        if self._started != self.stage_index:
            self._started = self.stage_index
            if trainer.current_epoch == self.stage_start:  # not when resuming in the middle of a stage
                self._set_learning_rate(trainer, stage.lr)
            rank_zero_info(f"progressive training: stage {self.stage_index + 1}/{len(self.stages)} '{stage.name}' "
                           f"from epoch {trainer.current_epoch}, lr {stage.lr:g}, training {', '.join(stage.train)}, "
                           f"inputs {stage.inputs}")
        pl_module.log("stage", float(self.stage_index), on_epoch=True, on_step=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.patience is None or self.monitor not in trainer.callback_metrics:
            return
        current = float(trainer.callback_metrics[self.monitor])
        improved = current < self.best - self.min_delta if self.mode == "min" else current > self.best + self.min_delta
        self.best, self.wait = (current, 0) if improved else (self.best, self.wait + 1)
        # every rank sees the same synchronised metric; agree anyway, so that no rank moves on alone
        if trainer.strategy.reduce_boolean_decision(self.wait >= self.patience, all=False):
            rank_zero_info(f"progressive training: stage '{self.stage.name}' ends after epoch {trainer.current_epoch} "
                           f"({self.monitor} has not improved for {self.wait} epochs)")
            self.stage_ended = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_stage = self.stage_index == len(self.stages) - 1
        if last_stage and self._stage_over(trainer.current_epoch + 1 - self.stage_start):
            trainer.should_stop = True

    def _set_learning_rate(self, trainer: L.Trainer, lr: float) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:  # a group's own scale (HybridSignClassifier.lr_scale) is kept
                group["lr"] = lr * group.get("lr_scale", 1.0)
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.best, scheduler.num_bad_epochs, scheduler.cooldown_counter = scheduler.mode_worse, 0, 0

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.model.requires_grad_(True)

    def state_dict(self) -> dict[str, Any]:
        return {"stage_index": self.stage_index, "stage_start": self.stage_start, "stage_ended": self.stage_ended,
                "best": self.best, "wait": self.wait, "stages": [asdict(s) for s in self.stages]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if [asdict(s) for s in self.stages] != state_dict.get("stages"):
            raise InputError("the checkpoint was trained with other progressive-training stages than these")
        self.stage_index, self.stage_start = state_dict["stage_index"], state_dict["stage_start"]
        self.stage_ended = state_dict["stage_ended"]
        self.best, self.wait = state_dict["best"], state_dict["wait"]
