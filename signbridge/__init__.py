"""signbridge: Lightning training systems for sign-language and text-image recognition.

``import signbridge as sb`` gives the public API; each name is imported when it is first used, so this top level
stays light (detector worker processes import it and start quickly)::

    model = sb.load_model("runs/sign_landmarks/version_0/checkpoints/best.ckpt")   # any signbridge checkpoint
    model.predict(batch).labels                                                    # thresholds applied
    trainer = lightning.Trainer(callbacks=sb.callbacks("val_loss"))                # model.json and last.ckpt too

The subpackages hold the rest: ``signbridge.tasks`` (LightningModules), ``signbridge.data`` (LightningDataModules),
``signbridge.models`` (plain nn.Modules), ``signbridge.hands`` (MediaPipe landmarks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    # loading and running trained models
    "load_model": "signbridge.tasks.base",
    "InferenceContract": "signbridge.inference",
    "InferenceModule": "signbridge.inference",
    "ExportedModel": "signbridge.inference",
    "Prediction": "signbridge.inference",
    "Recognizer": "signbridge.recognize",
    "SequenceRecognizer": "signbridge.recognize",
    "export_checkpoint": "signbridge.export",
    # training
    "callbacks": "signbridge.lightning_callbacks",
    "fit": "signbridge.lightning_cli",
    "main": "signbridge.cli",
    # tasks
    "Task": "signbridge.tasks.base",
    "ClassificationTask": "signbridge.tasks",
    "HybridSignClassifier": "signbridge.tasks",
    "LandmarkClassifier": "signbridge.tasks",
    "SequenceClassifier": "signbridge.tasks",
    "TextAlignedSequenceClassifier": "signbridge.tasks",
    "ContinuousSignRecognizer": "signbridge.tasks",
    "ATKClassifier": "signbridge.tasks",
    "EnsembleClassifier": "signbridge.tasks",
    "TextRecognizer": "signbridge.tasks",
    "RestorationGAN": "signbridge.tasks",
    # data modules
    "SignDataModule": "signbridge.data",
    "LandmarkDataModule": "signbridge.data",
    "SequenceDataModule": "signbridge.data",
    "SentenceDataModule": "signbridge.data",
    "ImageFolderDataModule": "signbridge.data",
    "TextImageDataModule": "signbridge.data",
    "SyntheticTextDataModule": "signbridge.data",
    # configuration
    "HybridSignNetConfig": "signbridge.models",
    "LandmarkNetConfig": "signbridge.models",
    "SequenceNetConfig": "signbridge.models",
    "TextSideConfig": "signbridge.models",
    "HandAugment": "signbridge.data.transforms",
    "SequenceAugment": "signbridge.data.transforms",
    "SyntheticWords": "signbridge.data",
    "DetectorSettings": "signbridge.hands.detect",
    # hands
    "HandDetector": "signbridge.hands.detect",
    "BodyTracker": "signbridge.hands.video",
    "extract_sequences": "signbridge.hands.video",
    "hand_geometry": "signbridge.hands",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # what a type checker and an editor see
    from .cli import main
    from .data import (
        ImageFolderDataModule,
        LandmarkDataModule,
        SentenceDataModule,
        SequenceDataModule,
        SignDataModule,
        SyntheticTextDataModule,
        SyntheticWords,
        TextImageDataModule,
    )
    from .data.transforms import HandAugment, SequenceAugment
    from .export import export_checkpoint
    from .hands import hand_geometry
    from .hands.detect import DetectorSettings, HandDetector
    from .hands.video import BodyTracker, extract_sequences
    from .inference import ExportedModel, InferenceContract, InferenceModule, Prediction
    from .lightning_callbacks import callbacks
    from .lightning_cli import fit
    from .models import HybridSignNetConfig, LandmarkNetConfig, SequenceNetConfig, TextSideConfig
    from .recognize import Recognizer, SequenceRecognizer
    from .tasks import (
        ATKClassifier,
        ClassificationTask,
        ContinuousSignRecognizer,
        EnsembleClassifier,
        HybridSignClassifier,
        LandmarkClassifier,
        RestorationGAN,
        SequenceClassifier,
        TextAlignedSequenceClassifier,
        TextRecognizer,
    )
    from .tasks.base import Task, load_model


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'signbridge' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def _destroy_process_group_at_exit() -> None:
    # A ddp_spawn worker exits with its process group still alive, and tearing gloo down during interpreter
    # shutdown sometimes aborts the worker ("terminate called without an active exception", SIGABRT) after a
    # successful run. Destroying the group while Python is still intact avoids that; a no-op everywhere else.
    import sys

    dist = sys.modules.get("torch.distributed")  # never import torch here: detector workers do not need it
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


import atexit  # noqa: E402

atexit.register(_destroy_process_group_at_exit)
