"""What every signbridge LightningModule shares: the datamodule lookup, ``torch.compile``, channels-last memory
format and the plateau schedule on the task's monitored metric."""

from __future__ import annotations

import importlib
import inspect
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
    if not checkpoint.get("hyper_parameters", {}).get("_class_path"):
        raise InputError(f"{path}: the checkpoint does not name its task class (not written by signbridge fit)")
    task_class = task_class_of(path, checkpoint)
    return task_class.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()


def task_class_of(path: str | Path, checkpoint: dict) -> type[Task]:
    """The task class a checkpoint names (``_class_path``), checked: a signbridge task that takes every saved
    hyperparameter. Otherwise an ``InputError`` naming the file, e.g. for a checkpoint of an older signbridge."""
    hparams = checkpoint.get("hyper_parameters", {})
    module_name, _, class_name = str(hparams.get("_class_path")).rpartition(".")
    task_class = getattr(importlib.import_module(module_name or "signbridge.tasks"), class_name, None)
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise InputError(f"{path}: {hparams.get('_class_path')} is not a signbridge task")
    unknown = unknown_hyperparameters(task_class, hparams)
    if unknown:
        raise InputError(f"{path}: {class_name} takes no argument {', '.join(unknown)}: the checkpoint was written by "
                         "another version of signbridge (the hybrid's and the landmark model's architecture became "
                         "one net argument)")
    return task_class


def unknown_hyperparameters(task_class: type, hparams: dict) -> list[str]:
    """Saved hyperparameters that ``task_class(**hparams)`` would refuse: names that neither its ``__init__`` nor the
    bases' it passes ``**kwargs`` on to take. (Lightning drops such names itself for a class without ``**kwargs``.)"""
    inits = [vars(klass)["__init__"] for klass in task_class.__mro__ if "__init__" in vars(klass)]
    names: set[str] = {"_class_path", "_instantiator"}
    for number, init in enumerate(inits):
        parameters = inspect.signature(init).parameters.values()
        passes_on = any(p.kind is p.VAR_KEYWORD for p in parameters)
        if number == 0 and not passes_on:
            return []
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not passes_on:
            break
    return sorted(set(hparams) - names)
