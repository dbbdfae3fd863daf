"""The classification base shared by the hybrid sign classifier and the tunable CNN."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torchmetrics import CatMetric

from ..errors import InputError, check_range
from ..files import atomic_write
from ..hparams import save_plain_hyperparameters
from ..inference import Prediction
from ..losses import focal_loss
from ..metrics import (
    ClassifierTally,
    fit_logit_biases,
    format_per_class,
    macro_f1,
    mean_loss,
    per_class_scores,
    scores_from_counts,
)
from ..plots import confusion_image
from .base import Task


def check_class_count(num_classes: int | None, classes: list) -> None:
    """A one-line error when a given ``num_classes`` disagrees with the data's classes."""
    if num_classes is not None and num_classes != len(classes):
        shown = ", ".join(map(str, classes[:12])) + (", ..." if len(classes) > 12 else "")
        raise InputError(f"the model has num_classes={num_classes} but the data has {len(classes)} classes "
                         f"({shown}): leave num_classes out to take it from the data")


def check_data_settings(hparams, data_settings: dict[str, Any]) -> None:
    """A one-line error when a model setting that the data determines (other than the class count) disagrees."""
    for name, value in data_settings.items():
        if name != "num_classes" and hparams.get(name) is not None and hparams[name] != value:
            raise InputError(f"the model has {name}={hparams[name]} but the data gives {value}: leave "
                             f"model.init_args.{name} out to take it from the data")


class ClassificationTask(Task):
    """Cross-entropy classification with the metrics of ``docs/contracts.md`` and AdamW optimisation.

    Subclasses implement ``build_model()`` (a plain nn.Module, stored as ``self.model``) and ``forward(batch)``.
    Logged per stage: ``{stage}_loss``, ``{stage}_acc``, ``{stage}_top5``, ``{stage}_f1_macro``, plus a confusion
    matrix image in TensorBoard (``{stage}_confusion_matrix``, ``plots.confusion_image``) for validation and test.
    ``test`` also logs the worst class's recall (``test_recall_min``), prints the per-class precision/recall/F1 table
    and saves it as ``test_per_class.csv``.

    Settings the data determines come from the datamodule (``data_settings``: the number of classes, and e.g. the
    image size of a model whose layer sizes depend on it): with them left out, the model is built in ``setup`` once
    the data is known, and they are saved with the hyperparameters, so a checkpoint rebuilds the same model. A value
    given that disagrees with the data is a one-line error.

    Args:
        num_classes: number of classes; default: the datamodule's. A given value must match the data.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        class_weights: ``none``, ``balanced`` (from the datamodule's training split) or one weight per class; with
            ``loss: focal`` they are its per-class alpha.
        loss: ``cross_entropy`` or ``focal`` (``losses.focal_loss``: each sample's loss scaled by
            ``(1 - p_true) ** focal_gamma``, so hard and rare samples weigh more).
        focal_gamma: the focusing exponent of the focal loss (0 is cross-entropy).
        fit_thresholds: after every validation, fit per-class logit biases (decision thresholds) that maximise the
            validation macro F1 (``metrics.fit_logit_biases``); logged as ``val_f1_macro_thresholds``. They are
            saved in the checkpoint with that epoch's weights (``logit_bias``) and in ``model.json``.
        apply_thresholds: add the fitted biases to the logits in ``test`` and ``predict`` (false: plain argmax).
        lr_schedule: ``plateau``: ReduceLROnPlateau on ``monitor`` (``val_loss``); ``cosine``: linear warm-up for
            ``warmup_epochs``, then cosine decay to ``min_lr`` at the end of ``max_epochs`` (stepped every batch).
        lr_factor: ReduceLROnPlateau factor.
        lr_patience: ReduceLROnPlateau patience in epochs.
        min_lr: the lowest learning rate of either schedule.
        warmup_epochs: linear warm-up of the cosine schedule.
        channels_last: run the model in channels-last memory format (faster convolutions on GPUs).
        compile: ``torch.compile`` the model.
        figure_every_n_epochs: draw the validation confusion matrix every N epochs and after the last one (an image
            takes milliseconds, but its PNG in the event file grows with the number of classes); the test's is always
            drawn.
        figure_interval_s: and only when this many seconds have passed since the last one was drawn (or the fit
            began), so a fit of seconds draws it once, at the end, and a long one at its epochs' pace.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        label_smoothing: float = 0.0,
        class_weights: Literal["none", "balanced"] | list[float] = "none",
        loss: Literal["cross_entropy", "focal"] = "cross_entropy",
        focal_gamma: float = 2.0,
        fit_thresholds: bool = False,
        apply_thresholds: bool = True,
        lr_schedule: Literal["plateau", "cosine"] = "plateau",
        lr_factor: float = 0.5,
        lr_patience: int = 7,
        min_lr: float = 1e-7,
        warmup_epochs: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        figure_every_n_epochs: int = 10,
        figure_interval_s: float = 60.0,
    ):
        super().__init__()
        if num_classes is not None and num_classes < 2:
            raise InputError(f"num_classes must be at least 2 (a classifier tells classes apart), got {num_classes}")
        check_range("lr", lr, 0, low_open=True)
        check_range("weight_decay", weight_decay, 0)
        check_range("label_smoothing", label_smoothing, 0, 1, high_open=True)
        check_range("focal_gamma", focal_gamma, 0)
        check_range("lr_factor", lr_factor, 0, 1, high_open=True)
        for name, value in (("lr_patience", lr_patience), ("warmup_epochs", warmup_epochs),
                            ("figure_interval_s", figure_interval_s)):
            check_range(name, value, 0)
        check_range("figure_every_n_epochs", figure_every_n_epochs, 1)
        save_plain_hyperparameters(self)
        self.class_names: list[str] | None = None
        # filled in setup(); not saved, since "balanced" weights depend on the data the task is trained on
        self.register_buffer("loss_weight", None, persistent=False)
        # per-class decision biases (zeros unless fit_thresholds); in the state dict, so checkpoints carry them
        self.logit_bias: torch.Tensor
        self.register_buffer("logit_bias", torch.zeros(num_classes or 0))
        # built at setup when a setting comes from the data; None until then
        self.model: nn.Module = None  # type: ignore[assignment]
        if all(self.hparams.get(name) is not None for name in self.data_setting_names):
            self._build()

    data_setting_names: tuple[str, ...] = ("num_classes",)

    def data_settings(self, datamodule) -> dict[str, Any]:
        """The values of ``data_setting_names`` that ``datamodule`` determines (those it cannot tell are left out)."""
        classes = getattr(datamodule, "classes", None)
        return {"num_classes": len(classes)} if classes is not None else {}

    def _build(self) -> None:
        self.model = self.use_channels_last(self.build_model())
        self.build_metrics()

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_metrics(self) -> None:
        n = self.hparams.num_classes
        # one tally per stage: the confusion matrix, the top-5 hits and the summed loss of the epoch, in one update
        # that never waits for the GPU (ClassifierTally). Accuracy, top-5 accuracy, macro F1, the mean loss and the
        # confusion figure all come from it, summed over processes, once per epoch: one self.log per epoch instead
        # of one per step (Lightning's per-call bookkeeping cost more than a landmark model's whole step)
        self.train_tally, self.val_tally, self.test_tally = ClassifierTally(n), ClassifierTally(n), ClassifierTally(n)
        if self.logit_bias.numel() != n:  # num_classes came from the data
            self.logit_bias = torch.zeros(n, device=self.logit_bias.device)
        # every validation logit and label of the epoch, gathered from all processes, to fit the thresholds on
        self.val_logits, self.val_labels = CatMetric(), CatMetric()

    def check_data(self, datamodule) -> dict[str, Any]:
        """Raise a one-line ``InputError`` when a setting given to this task disagrees with ``datamodule`` (the
        class count, then ``data_settings``); returns the settings the data determines."""
        classes = getattr(datamodule, "classes", None)
        if classes is not None:
            check_class_count(self.hparams.num_classes, classes)
            if len(classes) < 2 and not getattr(datamodule, "test_only", False):
                raise InputError(f"{getattr(datamodule, 'root', 'the data')}: {len(classes)} class folder "
                                 f"({', '.join(map(str, classes)) or 'none'}); a classifier needs at least 2")
        settings = self.data_settings(datamodule)
        check_data_settings(self.hparams, settings)
        return settings

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.datamodule
        settings = self.check_data(datamodule)
        classes = getattr(datamodule, "classes", None)
        if classes is not None:
            self.class_names = list(classes)
        if self.model is None:
            filled = {name: value for name, value in settings.items() if self.hparams.get(name) is None}
            self.hparams.update(filled)
            # the loggers record the initial hyperparameters, and Lightning refuses a datamodule hyperparameter of
            # the same name with another value (image_size None here, 24 there): they are the resolved ones now
            self._hparams_initial.update(filled)
            missing = [name for name in self.data_setting_names if self.hparams.get(name) is None]
            if missing:
                raise InputError(f"{', '.join(missing)} not set and the datamodule cannot tell: set "
                                 + ", ".join(f"--model.init_args.{name}" for name in missing))
            self._build()
        weights = self.hparams.class_weights
        if stage == "fit" and weights != "none":
            if weights == "balanced":
                if datamodule is None or not hasattr(datamodule, "class_weights"):
                    raise InputError("class_weights='balanced' needs a datamodule with a class_weights() method")
                weights = datamodule.class_weights()
            weights = torch.as_tensor(weights, dtype=torch.float32)
            if weights.shape != (self.hparams.num_classes,):
                raise InputError(f"class_weights has {weights.numel()} values, expected {self.hparams.num_classes}")
            self.loss_weight = weights.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_names"] = self.class_names
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("class_names")
        self.check_checkpoint_classes(saved)
        self.class_names = saved if saved is not None else self.class_names
        # checkpoints from before decision thresholds existed: no biases
        checkpoint["state_dict"].setdefault("logit_bias", torch.zeros(self.hparams.num_classes or 0))

    def check_checkpoint_classes(self, saved: list[str] | None) -> None:
        """Refuse to score data of other classes than the checkpoint's: its scores would be silently wrong (predict
        only needs the saved names)."""
        evaluating = self._trainer is not None and not self.trainer.predicting
        if evaluating and saved is not None and self.class_names is not None and list(saved) != self.class_names:
            raise InputError(f"{self.trainer.ckpt_path}: trained on the classes {_listed(saved)} but the data has "
                             f"{_listed(self.class_names)}: test it on data with the same class folders")

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args, **kwargs) -> None:
        # a task whose num_classes comes from the data has an empty bias until setup (e.g. the main process of
        # ddp_spawn, which receives the trained weights): it takes the saved size; a wrong class count is caught by
        # the model's own layers
        saved = state_dict.get(prefix + "logit_bias")
        if saved is not None and saved.shape != self.logit_bias.shape and self.logit_bias.numel() == 0:
            self.logit_bias = torch.zeros_like(saved, device=self.logit_bias.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss (``loss``), with the class weights and label smoothing."""
        h = self.hparams
        if h.get("loss", "cross_entropy") == "focal":
            return focal_loss(logits, labels, h.focal_gamma, self.loss_weight, h.label_smoothing)
        return F.cross_entropy(logits.float(), labels, weight=self.loss_weight, label_smoothing=h.label_smoothing)

    def decision_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits that decide the predicted class in ``test`` and ``predict``: with the fitted per-class biases
        added, unless ``apply_thresholds`` is off."""
        return logits + self.logit_bias if self.hparams.get("apply_thresholds", True) else logits

    def collect_validation(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep the epoch's validation logits for fitting the thresholds (when ``fit_thresholds``)."""
        if self.hparams.get("fit_thresholds"):
            self.val_logits.update(logits.detach().float())
            self.val_labels.update(labels)

    def threshold_logits(self, collected: torch.Tensor) -> torch.Tensor:
        """The ``(N, num_classes)`` logits the thresholds are fitted on, from what ``collect_validation`` kept."""
        return collected

    def fit_thresholds(self) -> None:
        """Fit ``logit_bias`` on this epoch's validation logits (every process gets the same gathered values)."""
        if not self.hparams.get("fit_thresholds") or not self.val_labels.update_count:
            return
        logits, labels = self.threshold_logits(self.val_logits.compute()), self.val_labels.compute()
        self.val_logits.reset()
        self.val_labels.reset()
        if self.trainer.sanity_checking:
            return
        self.logit_bias.copy_(fit_logit_biases(logits, labels.long()))
        tuned = macro_f1((logits + self.logit_bias).argmax(1), labels.long(), self.hparams.num_classes)
        self.log("val_f1_macro_thresholds", tuned)

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss and prediction logits of one batch."""
        logits = self(batch)
        return self.classification_loss(logits, batch["label"]), logits

    trains_batch_lists = True

    def training_step(self, batch: dict | list[dict], batch_idx: int) -> torch.Tensor | None:
        counted: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

        def loss_of(one: dict) -> torch.Tensor:
            loss, logits = self.model_step(one)
            counted.append((logits.detach(), one["label"], loss.detach() * len(one["label"])))
            return loss

        # a list: several batches for this step (the datamodule's batches_per_step), one optimizer step each
        loss = self.optimize_batches(batch, loss_of) if isinstance(batch, list) else loss_of(batch)
        # the epoch's training metrics count the step's batches at once: an update per batch cost a tenth of a
        # small model's step
        if counted:
            logits, labels, losses = zip(*counted)
            self.tally("train").update(torch.cat(logits), torch.cat(labels), torch.stack(losses).sum())
        if loss is not None and self.logger_writes_this_step():
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=1)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.log_train_epoch()  # now, so the epoch's validation and every callback's epoch end see them

    def log_train_epoch(self) -> None:
        """Log the epoch's mean training loss (``train_loss_epoch``) and training metrics, then reset them."""
        counts = self.epoch_counts("train")
        if counts is not None:
            self.log_epoch_scores("train", counts, loss_name="train_loss_epoch")

    def on_train_start(self) -> None:
        super().on_train_start()
        self._last_figure = time.monotonic()  # the first figure waits figure_interval_s from here

    def on_train_epoch_end(self) -> None:
        self.log_train_epoch()  # an epoch of unknown length (logged at its last batch otherwise)
        super().on_train_epoch_end()

    def _eval_step(self, batch: dict, stage: str) -> None:
        if stage == "test" and len(getattr(self.datamodule, "unseen_classes", ()) or ()):
            batch = self.named_classes_only(batch)
            if not len(batch["label"]):
                return
        logits = self(batch)
        loss = self.classification_loss(logits, batch["label"])
        if stage == "val":
            self.collect_validation(logits, batch["label"])
        else:  # test: decided with the thresholds fitted on validation
            logits = self.decision_logits(logits)
        self.tally(stage).update(logits, batch["label"], loss.detach() * len(batch["label"]))

    def tally(self, stage: str) -> ClassifierTally:
        """The stage's counts of this epoch (``train``, ``val`` or ``test``)."""
        return getattr(self, f"{stage}_tally")

    def epoch_counts(self, stage: str) -> dict[str, torch.Tensor] | None:
        """The stage's counts of the epoch, summed over processes (every rank must call it), then reset; None
        without updates."""
        tally = self.tally(stage)
        if not tally.update_count:
            return None
        counts = tally.compute()
        tally.reset()
        return counts

    def log_epoch_scores(self, stage: str, counts: dict[str, torch.Tensor], loss_name: str | None = None) -> None:
        """Log a stage's mean loss (``{stage}_loss``, or ``loss_name``), accuracy, top-5 accuracy and macro F1."""
        prog_bar = stage != "train"
        # batch_size: each value is the whole epoch's, logged once (Lightning would otherwise infer a batch size
        # by walking the current batch, a list of batches with batches_per_step)
        self.log(loss_name or f"{stage}_loss", mean_loss(counts), prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=1)
        scores = scores_from_counts(counts["confusion"], counts["top_k_correct"])
        self.log_dict({f"{stage}_{name}": value for name, value in scores.items()}, prog_bar=prog_bar,
                      on_step=False, on_epoch=True, batch_size=1)

    def named_classes_only(self, batch: dict) -> dict:
        """The samples of a zero-shot test batch whose classes this model can name (a plain classifier knows only
        the training classes: the held-out classes' samples are left out of its scores)."""
        keep = batch["label"] < int(self.hparams.num_classes)
        return {key: value[keep] if isinstance(value, torch.Tensor) else
                [item for item, kept in zip(value, keep.tolist()) if kept] if isinstance(value, list) else value
                for key, value in batch.items()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        counts = self.epoch_counts("val")
        if counts is not None:
            self.log_epoch_scores("val", counts)
        self.fit_thresholds()
        if counts is not None:
            self.log_confusion_figure("val", counts["confusion"])

    def on_test_epoch_end(self) -> None:
        counts = self.epoch_counts("test")
        if counts is None:
            return
        self.log_epoch_scores("test", counts)
        self.log_confusion_figure("test", counts["confusion"])
        self.report_per_class(counts["confusion"])

    def report_per_class(self, matrix: torch.Tensor) -> None:
        """Log the worst class's recall (``test_recall_min``); print the per-class precision/recall/F1 table and
        save it as ``test_per_class.csv`` in the run's log folder."""
        rows = per_class_scores(matrix, self.class_names)
        tested = [row["recall"] for row in rows if row["support"]]
        self.log("test_recall_min", min(tested) if tested else 0.0)
        # read by ModelMetadata, which records the test in the tested model's model.json
        self.test_report = {"per_class": rows, "confusion": matrix.cpu().tolist()}
        if self.global_rank != 0:
            return
        print(format_per_class(rows))
        path = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "test_per_class.csv"
        with atomic_write(path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"per-class scores written to {path}")

    def log_confusion_figure(self, stage: str, matrix: torch.Tensor) -> None:
        """Add the stage's confusion matrix (rows: true classes; ``plots.confusion_image``) as an image to
        TensorBoard, when this epoch draws one (``_draws_figure``)."""
        if self.trainer.sanity_checking or self.global_rank != 0 or not self._draws_figure(stage):
            return
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        names = self.class_labels()
        image = confusion_image(matrix.cpu().numpy(), names if len(names) == len(matrix) else None)
        experiment.add_image(f"{stage}_confusion_matrix", image, global_step=self.global_step, dataformats="HWC")
        self._last_figure = time.monotonic()

    def _draws_figure(self, stage: str) -> bool:
        """Whether this epoch's confusion matrix is drawn: always for a test, for validation every
        ``figure_every_n_epochs`` and at the last epoch (or when the fit is about to stop)."""
        if stage != "val":
            return True
        every = max(1, int(self.hparams.get("figure_every_n_epochs", 1) or 1))
        epoch, last = self.current_epoch + 1, self.trainer.max_epochs
        if (last is not None and epoch >= last) or self.trainer.should_stop:
            return True
        waited = time.monotonic() - getattr(self, "_last_figure", 0.0) >= self.hparams.get("figure_interval_s", 0.0)
        return epoch % every == 0 and waited

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning refuses to clip for fused optimizers because they unscale fp16 gradients themselves; without a
        # scaler the gradients are already true gradients, so clipping them here is exactly what Lightning would do
        if gradient_clip_val and not self._has_grad_scaler() and getattr(optimizer, "defaults", {}).get("fused"):
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def class_labels(self) -> list[str]:
        return [str(name) for name in self.class_names or range(int(self.hparams.num_classes or 0))]

    def thresholds(self) -> list[float] | None:
        applied = self.hparams.get("apply_thresholds", True) and bool(self.logit_bias.any())
        return [round(float(value), 6) for value in self.logit_bias] if applied else None

    def infer(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(inputs).float()
        return logits, self.decision_logits(logits).softmax(-1)

    def predict(self, batch: dict[str, torch.Tensor]) -> Prediction:
        """The class of each sample of a batch (a dict with the contract's inputs), with the decision thresholds
        applied, as ``signbridge test`` and ``predict`` decide it; runs without gradients, in the task's mode (a
        task of ``load_model`` is in eval mode)."""
        names = self.inference_contract().input_names
        missing = [name for name in names if name not in batch]
        if missing:
            raise InputError(f"the batch has no {', '.join(missing)}: {type(self).__name__} reads {', '.join(names)}")
        with torch.inference_mode():
            _, probabilities = self.infer({name: batch[name].to(self.device) for name in names})
        probability, indices = probabilities.max(dim=-1)
        labels = self.class_labels()
        return Prediction([labels[i] for i in indices.tolist()], indices, probability, probabilities)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        probability, predicted = self.infer(batch)[1].max(dim=-1)
        return {"path": batch.get("path"), "predicted": predicted, "probability": probability}

    def _has_grad_scaler(self) -> bool:
        return self._trainer is not None and getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def optimizer_parameter_groups(self) -> Any:
        """The parameters AdamW trains, or its parameter groups (dicts with their own ``lr``)."""
        return self.parameters()

    def configure_optimizers(self) -> OptimizerLRScheduler:
        # fused AdamW updates every parameter in one kernel, a large win at these step times (on a CPU too: 170 us
        # instead of 390 us a step for the landmark model); with an fp16 gradient scaler Lightning cannot clip
        # gradients of a fused optimizer, so it is fused only without one (fp32, bf16)
        optimizer = torch.optim.AdamW(
            self.optimizer_parameter_groups(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
            fused=self.device.type in ("cuda", "cpu") and not self._has_grad_scaler(),
        )
        h = self.hparams
        if h.lr_schedule == "cosine":
            return {"optimizer": optimizer,
                    "lr_scheduler": self.warmup_cosine_schedule(optimizer, h.warmup_epochs, h.min_lr)}
        return {"optimizer": optimizer,
                "lr_scheduler": self.plateau_schedule(optimizer, h.lr_factor, h.lr_patience, h.min_lr)}



def _listed(names: list[str], most: int = 12) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")
