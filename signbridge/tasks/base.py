"""What every signbridge LightningModule shares: the datamodule lookup, ``torch.compile``, channels-last memory
format, the plateau schedule on the task's monitored metric, the inference contract saved with every checkpoint,
and loading a checkpoint back (``load_model``)."""

from __future__ import annotations

import contextvars
import ctypes
import inspect
import math
import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities.types import LRSchedulerConfigType
from torch import nn

from ..errors import InputError
from ..files import read_checkpoint
from ..hparams import import_object, init_arguments
from ..inference import InferenceContract, InputSpec

if TYPE_CHECKING:
    from lightning.fabric.utilities.data import AttributeDict

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def drop_failing_nvml_check() -> None:
    """Unset ``PYTORCH_NVML_BASED_CUDA_CHECK`` where the NVIDIA driver's NVML library cannot be loaded.

    Lightning sets it when imported, so that asking whether CUDA is available never initialises CUDA (which would
    break forked processes). Without a driver, torch falls back to CUDA's own count after every failed attempt to
    load NVML, and it asks at every optimizer step: on a CPU-only machine with a CUDA build of torch, 0.28 ms a
    step, a tenth of the landmark model's. Unset, the answer is the same (that fallback), without the attempt.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or not torch.backends.cuda.is_built():
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # what torch loads (torch.cuda._raw_device_count_nvml)
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


drop_failing_nvml_check()


class Task(L.LightningModule):
    """Base of the signbridge tasks. Subclasses save ``channels_last`` and ``compile`` among their hyperparameters
    and may set:

    - ``compiled_modules``: the attributes that ``compile: true`` compiles (default: the plain model, ``model``): a
      module (its ``forward``), or a dotted path to the method the training step calls instead of ``forward``
      (``model.forward_branches``), which compiling the module would leave eager;
    - ``monitor`` / ``monitor_mode``: the metric that judges a run; the plateau schedule follows it, and so do
      the configs' checkpoints and early stopping;
    - ``built_from_checkpoint``: False for a task that is not rebuilt from one checkpoint's hyperparameters (an
      ensemble, built from its members'), so ``predict`` does not add the active model's checkpoint to it.

    A task that can predict implements ``input_specs()`` (the tensors it reads) and may override ``infer``; the
    ``inference_contract()`` built from them and from the datamodule's ``inference_preprocessing()`` is saved in
    every checkpoint (``checkpoint["inference"]``).
    """

    compiled_modules: tuple[str, ...] = ("model",)
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    built_from_checkpoint: bool = True
    # what the training data did to the inputs (``inference_preprocessing`` of the datamodule), recorded in setup
    preprocessing: dict[str, dict[str, Any]] = {}
    # the training datamodule's saved hyperparameters, when the task was loaded from a checkpoint of a fit
    training_data: dict[str, Any] | None = None

    if TYPE_CHECKING:  # Lightning types hparams as a plain mapping; the saved arguments are read as attributes

        @property
        def hparams(self) -> AttributeDict: ...

    @property
    def datamodule(self) -> L.LightningDataModule | None:
        """The trainer's datamodule, or None outside a trainer or without one."""
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def logger_writes_this_step(self) -> bool:
        """Whether Lightning writes this training step's ``on_step`` values to the loggers (``log_every_n_steps``):
        a per-step value logged on another step is dropped, so it is logged only on these (``self.log`` costs more
        than a small model's step). Lightning's own test (counted in batches that stepped, across epochs)."""
        return self._trainer is not None and bool(self.trainer._logger_connector.should_update_logs)

    def use_channels_last(self, module: ModuleT) -> ModuleT:
        """``module`` in channels-last memory format when ``channels_last`` is set (faster convolutions on GPUs)."""
        return module.to(memory_format=torch.channels_last) if self.hparams.get("channels_last") else module

    def channels_last_input(self, image: torch.Tensor) -> torch.Tensor:
        """A 4-D image batch in the memory format of the model (a no-op without ``channels_last``)."""
        if self.hparams.get("channels_last") and image.dim() == 4:
            return image.contiguous(memory_format=torch.channels_last)
        return image

    def setup(self, stage: str) -> None:
        record = getattr(self.datamodule, "inference_preprocessing", None)
        if callable(record):
            self.preprocessing = record()
        if stage == "fit" and self.batches_per_step() > 1:
            self.check_batch_lists()
            # the task steps the optimizer once per batch of the list (optimize_batches)
            self.automatic_optimization = False

    trains_batch_lists: bool = False
    """Whether ``training_step`` takes the lists of batches of a datamodule's ``batches_per_step``
    (with ``optimize_batches``)."""

    def batches_per_step(self) -> int:
        """The training batches one Lightning step receives: the datamodule's ``batches_per_step`` (1 without)."""
        hparams = getattr(self.datamodule, "hparams", None) or {}
        return int(hparams.get("batches_per_step", 1) or 1)

    def check_batch_lists(self) -> None:
        """Refuse what several batches per step cannot do the way Lightning's own loop does it."""
        per_step, trainer = self.batches_per_step(), self.trainer
        setting = f"data.init_args.batches_per_step={per_step}"
        if not self.trains_batch_lists:
            raise InputError(f"{setting}: {type(self).__name__} trains on one batch per step; set it to 1")
        if trainer.accumulate_grad_batches != 1:
            raise InputError(f"{setting} takes one optimizer step per batch: it cannot accumulate gradients "
                             f"(trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}); set one to 1")
        if trainer.gradient_clip_val and getattr(trainer.precision_plugin, "scaler", None) is not None:
            raise InputError(f"{setting} cannot clip the gradients of a 16-bit mixed-precision run (they are still "
                             "scaled when it would); use bf16-mixed or 32-true, or batches_per_step 1")

    def optimize_batches(self, batches: list[dict], loss_of: Callable[[dict], torch.Tensor]) -> torch.Tensor | None:
        """Train on the batches of one step (``batches_per_step``) as Lightning's automatic optimization trains on
        one batch, once per batch: ``loss_of(batch)``, zero the gradients, backward, clip them (the trainer's
        ``gradient_clip_val``), step the optimizer, then the per-step schedules. Returns the last batch's loss
        (detached; None for an empty list)."""
        trainer, optimizer = self.trainer, self.optimizers()
        assert isinstance(optimizer, LightningOptimizer), "optimize_batches trains one optimizer"
        loss = None
        for batch in batches:
            if 0 <= trainer.max_steps <= trainer.global_step:  # max_steps counts optimizer steps
                break
            loss = loss_of(batch)
            optimizer.zero_grad()
            self.manual_backward(loss)
            self.configure_gradient_clipping(optimizer.optimizer, trainer.gradient_clip_val,
                                             trainer.gradient_clip_algorithm)
            optimizer.step()
            self.step_schedules("step")
        return None if loss is None else loss.detach()

    def step_schedules(self, interval: Literal["step", "epoch"]) -> None:
        """Step the learning-rate schedules of ``interval`` as Lightning's automatic optimization would (the plateau
        schedule on its monitored metric), for a task that steps its optimizer itself (``optimize_batches``)."""
        trainer = self.trainer
        count = trainer.global_step if interval == "step" else trainer.current_epoch + 1
        for config in trainer.lr_scheduler_configs:
            if config.interval != interval or count % config.frequency:
                continue
            value = None
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                # Lightning drops a manual optimization's monitor: the plateau schedule follows the task's
                value = trainer.callback_metrics.get(config.monitor or self.monitor)
                if value is None:
                    raise InputError(f"the learning-rate schedule follows {config.monitor or self.monitor}, which "
                                     f"was not logged (logged: {', '.join(trainer.callback_metrics) or 'nothing'})")
            self.lr_scheduler_step(config.scheduler, value)

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization and self.batches_per_step() > 1:
            self.step_schedules("epoch")  # after the epoch's validation, as Lightning steps them

    def estimated_optimizer_steps(self) -> int:
        """The optimizer steps of the whole fit: Lightning's ``estimated_stepping_batches``, which counts a list of
        batches (``batches_per_step``) as one step, counted in batches."""
        trainer = self.trainer
        estimate = int(trainer.estimated_stepping_batches)  # loads the training data
        per_step = self.batches_per_step()
        if per_step == 1 or trainer.max_epochs is None or trainer.max_epochs < 0:
            return estimate  # without max_epochs: max_steps, which counts optimizer steps
        loader = trainer.train_dataloader
        assert loader is not None  # loaded by estimated_stepping_batches
        per_epoch = min(loader.collate_fn.batches_in(len(loader.sampler)), trainer.num_training_batches * per_step)
        total = per_epoch * trainer.max_epochs
        return min(total, trainer.max_steps) if trainer.max_steps >= 0 else total

    def input_specs(self) -> tuple[InputSpec, ...]:
        """The tensors the task reads at inference, in the order an exported file takes them."""
        raise InputError(f"{type(self).__name__} has no inference contract: it does not predict on its own")

    def class_labels(self) -> list[str]:
        """The names of the classes the outputs score."""
        return []

    def thresholds(self) -> list[float] | None:
        """The per-class logit biases ``infer`` adds before the softmax; None: none."""
        return None

    def inference_contract(self) -> InferenceContract:
        """What the task reads and says at inference (``signbridge.inference``)."""
        klass = type(self)
        inputs = self.input_specs()
        contract = InferenceContract(f"{klass.__module__}.{klass.__qualname__}", inputs,
                                     {k: dict(v) for k, v in self.preprocessing.items()}, self.class_labels(),
                                     self.thresholds())
        side = next((spec.shape[-1] for spec in inputs if spec.name == "image"), None)
        if isinstance(side, int) and not contract.image_size:  # a model whose layers fix the image size (the CNN)
            contract = contract.with_image_size(side)
        return contract

    def infer(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, probabilities)`` of a batch of the contract's inputs (eval mode is the caller's)."""
        logits = self(inputs).float()
        return logits, logits.softmax(-1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        try:
            checkpoint["inference"] = self.inference_contract().to_dict()
        except InputError:  # a task that does not predict on its own (the restoration GAN)
            pass

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("inference")
        data = checkpoint.get("datamodule_hyper_parameters")
        self.training_data = dict(data) if data else None
        if saved:
            self.preprocessing = dict(saved.get("preprocessing") or {})
        elif data:  # a checkpoint from before contracts were saved: what its datamodule's settings imply
            self.preprocessing = legacy_preprocessing(data)

    def training_datamodule(self, **replace: Any) -> L.LightningDataModule:
        """The datamodule the task was trained on, rebuilt from the checkpoint (``replace``: settings that differ
        now, e.g. ``root`` when the data moved)."""
        class_path = (self.training_data or {}).get("_class_path")
        settings = init_arguments(self.training_data or {})
        if not class_path:
            raise InputError("the checkpoint does not record its datamodule: use a checkpoint of signbridge fit")
        settings.update({name: value for name, value in replace.items() if value is not None})
        if not Path(str(settings.get("root"))).is_dir():
            raise InputError(f"{settings.get('root')} is not there: give the training data's new folder")
        data_class = import_object(class_path)
        if data_class is None:
            raise InputError(f"the checkpoint's datamodule {class_path} does not exist in this signbridge")
        return data_class(**settings)

    def configure_model(self) -> None:
        # Lightning calls this once per process after moving the module to its device; compile only once
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            for name in self.compiled_modules:
                target = operator.attrgetter(name)(self)
                if isinstance(target, nn.Module):
                    target.compile()  # its __call__, so forward
                else:  # a method: module.compile() only compiles __call__, and this is called directly
                    owner, _, method = name.rpartition(".")
                    setattr(operator.attrgetter(owner)(self) if owner else self, method, torch.compile(target))
            self._compiled = True

    def plateau_schedule(self, optimizer: torch.optim.Optimizer, factor: float, patience: int,
                         min_lr: float) -> LRSchedulerConfigType:
        """ReduceLROnPlateau on ``monitor``, as a Lightning scheduler config."""
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=self.monitor_mode, factor=factor, patience=patience, min_lr=min_lr,
        )
        if not self.automatic_optimization:  # step_schedules steps it on the monitor (Lightning would warn)
            return {"scheduler": scheduler}
        return {"scheduler": scheduler, "monitor": self.monitor}

    def warmup_cosine_schedule(self, optimizer: torch.optim.Optimizer, warmup_epochs: float,
                               min_lr: float) -> LRSchedulerConfigType:
        """Linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr`` at the end of
        ``trainer.max_epochs``, stepped every batch (a Lightning scheduler config)."""
        total = max(2, self.estimated_optimizer_steps())
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total - 1, round(total * warmup_epochs / epochs))
        floor = min_lr / optimizer.defaults["lr"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def legacy_preprocessing(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The preprocessing a checkpoint without a saved contract implies: its datamodule's image settings."""
    loads_images = not str(data.get("_class_path", "")).endswith("LandmarkDataModule")
    if not loads_images or not data.get("image_size"):
        return {}
    interpolation = data.get("interpolation") or ("bilinear" if "ImageFolder" in str(data.get("_class_path")) else
                                                  "bicubic")
    return {"image": {"size": int(data["image_size"]), "interpolation": interpolation}}


def load_model(path: str | Path) -> Task:
    """Any signbridge checkpoint as its task (the class saved in it, with its saved hyperparameters, weights, classes,
    thresholds and inference contract), in eval mode on the CPU. The file is read once, with ``weights_only``; a
    missing, corrupt or foreign file is an ``InputError`` naming it.

    ``task.predict(batch)`` then gives labels and probabilities; ``task.inference_contract()`` says what it reads.
    """
    checkpoint = read_checkpoint(path)
    task_class = task_class_of(path, checkpoint)
    arguments = init_arguments(checkpoint["hyper_parameters"])
    parameters = inspect.signature(task_class).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):  # as Lightning does: a removed argument is dropped
        arguments = {k: v for k, v in arguments.items() if k in {p.name for p in parameters}}
    # a context of its own: LightningCLI passes a class's arguments to save_hyperparameters through a context
    # variable, which this task's own save_hyperparameters would read too when it is built inside a CLI run
    task = contextvars.Context().run(task_class, **arguments)
    task.on_load_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval()


def task_class_of(path: str | Path, checkpoint: dict) -> type[Task]:
    """The task class a checkpoint names (``_class_path``), checked: a signbridge task that takes every saved
    hyperparameter. Otherwise an ``InputError`` naming the file, e.g. for a checkpoint of an older signbridge."""
    hparams = checkpoint.get("hyper_parameters", {})
    # LightningCLI saves the class; a task trained by a plain Trainer names it in its inference contract
    class_path = hparams.get("_class_path") or (checkpoint.get("inference") or {}).get("task")
    if not class_path:
        raise InputError(f"{path}: the checkpoint does not name its task class (not written by signbridge)")
    class_name = str(class_path).rsplit(".", 1)[-1]
    task_class = import_object(class_path, "signbridge.tasks")
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise InputError(f"{path}: {class_path} is not a signbridge task")
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
