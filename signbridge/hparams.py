"""Hyperparameters saved as plain data, and the classes they name by dotted path."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Lightning's import takes seconds: import_object serves commands that never load it
    from lightning.pytorch.core.mixins import HyperparametersMixin


def save_plain_hyperparameters(module: HyperparametersMixin) -> None:
    """``module.save_hyperparameters()`` for the ``__init__`` that calls this, with dataclass arguments
    (``HybridSignNetConfig``, ``HandAugment``) saved as dicts.

    LightningCLI already saves a config's dataclasses as dicts; this does the same for a module built in Python, so
    every checkpoint loads with ``torch.load(weights_only=True)`` and every ``model.json`` is plain JSON. A module
    rebuilt from such a checkpoint is given the dict, so modules read these arguments from their hyperparameters
    (``HandAugment(**self.hparams.augment)``), which always hold the dict.
    """
    caller = inspect.currentframe()
    module.save_hyperparameters(frame=caller.f_back if caller is not None else None)
    for name, value in module.hparams.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            module.hparams[name] = dataclasses.asdict(value)


def init_arguments(hparams: Any) -> dict[str, Any]:
    """The ``__init__`` arguments among saved hyperparameters: without LightningCLI's bookkeeping entries
    (``_class_path``, ``_instantiator``)."""
    return {name: value for name, value in dict(hparams).items() if not name.startswith("_")}


def import_object(path: str, default_module: str = "signbridge") -> Any | None:
    """The object a dotted path names (a saved ``_class_path`` such as ``signbridge.tasks.HybridSignClassifier``; a
    bare name is looked up in ``default_module``), or None when there is no such module or attribute."""
    module_name, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name or default_module), name, None)
    except ImportError:
        return None
