"""What every signbridge LightningModule shares: the datamodule lookup, ``torch.compile``, channels-last memory
format and the plateau schedule on the task's monitored metric."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import lightning as L
import torch
from lightning.pytorch.utilities.types import LRSchedulerConfigType
from torch import nn

from ..errors import InputError
from ..files import read_checkpoint

if TYPE_CHECKING:
    from lightning.fabric.utilities.data import AttributeDict

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class Task(L.LightningModule):
    """Base of the signbridge tasks. Subclasses save ``channels_last`` and ``compile`` among their hyperparameters
    and may set:

    - ``compiled_modules``: the attributes that ``compile: true`` compiles (default: the plain model, ``model``);
    - ``monitor`` / ``monitor_mode``: the metric that judges a run; the plateau schedule follows it, and so do
      the configs' checkpoints and early stopping.
    """

    compiled_modules: tuple[str, ...] = ("model",)
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"

    if TYPE_CHECKING:  # Lightning types hparams as a plain mapping; the saved arguments are read as attributes

        @property
        def hparams(self) -> AttributeDict: ...

    @property
    def datamodule(self) -> L.LightningDataModule | None:
        """The trainer's datamodule, or None outside a trainer or without one."""
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def use_channels_last(self, module: ModuleT) -> ModuleT:
        """``module`` in channels-last memory format when ``channels_last`` is set (faster convolutions on GPUs)."""
        return module.to(memory_format=torch.channels_last) if self.hparams.get("channels_last") else module

    def channels_last_input(self, image: torch.Tensor) -> torch.Tensor:
        """A 4-D image batch in the memory format of the model (a no-op without ``channels_last``)."""
        if self.hparams.get("channels_last") and image.dim() == 4:
            return image.contiguous(memory_format=torch.channels_last)
        return image

    def configure_model(self) -> None:
        # Lightning calls this once per process after moving the module to its device; compile only once
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            for name in self.compiled_modules:
                getattr(self, name).compile()
            self._compiled = True

    def plateau_schedule(self, optimizer: torch.optim.Optimizer, factor: float, patience: int,
                         min_lr: float) -> LRSchedulerConfigType:
        """ReduceLROnPlateau on ``monitor``, as a Lightning scheduler config."""
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=self.monitor_mode, factor=factor, patience=patience, min_lr=min_lr,
        )
        return {"scheduler": scheduler, "monitor": self.monitor}


def load_task(path: str | Path) -> Task:
    """A checkpoint of ``signbridge fit`` as its task (the class LightningCLI saved in it), in eval mode on the CPU;
    a missing, corrupt or foreign file is an ``InputError`` naming it."""
    checkpoint = read_checkpoint(path)
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if not class_path:
        raise InputError(f"{path}: the checkpoint does not name its task class (not written by signbridge fit)")
    module_name, _, class_name = class_path.rpartition(".")
    task_class = getattr(importlib.import_module(module_name or "signbridge.tasks"), class_name, None)
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise InputError(f"{path}: {class_path} is not a signbridge task")
    return task_class.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
