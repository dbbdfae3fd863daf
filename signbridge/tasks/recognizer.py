"""CTC text recognition (``TextRecognizer``) and the frozen recognizer that guides restoration."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn

from ..charset import Charset
from ..errors import InputError, check_range
from ..inference import CTC_DECODING, CTC_OUTPUTS, InferenceContract, InputSpec, text_image_input
from ..losses import ctc_loss
from ..metrics import text_metrics
from ..models.crnn import CRNN
from .base import Task


def check_text_data(datamodule, charset: Charset, model: CRNN) -> None:
    """Raise a clear error when a text datamodule does not fit a recognizer (charset, channels, height, length)."""
    if datamodule is None or not hasattr(datamodule, "charset"):
        return
    unknown = "".join(c for c in datamodule.charset.chars if c not in charset.chars)
    if unknown:
        raise InputError(f"the data under {datamodule.root} has characters the recognizer does not know: {unknown!r} "
                         f"(recognizer charset {charset.chars!r})")
    h = datamodule.hparams
    in_channels, height = model.in_channels, model.height
    if datamodule.channels != in_channels or h.height != height:
        raise InputError(f"the recognizer reads {in_channels}-channel images {height} px high, the data gives "
                         f"{datamodule.channels}-channel images {h.height} px high (data.init_args.grayscale/height)")
    if datamodule.max_text_length > model.timesteps(h.width):
        raise InputError(f"the longest label has {datamodule.max_text_length} characters but images {h.width} px wide "
                         f"give only {model.timesteps(h.width)} CTC timesteps: widen data.init_args.width")


class TextRecognizer(Task):
    """A CRNN trained with CTC. Logs ``{stage}_loss``, and ``{val,test}_word_acc`` / ``_cer`` of greedy decoding.

    Args:
        charset: the characters to recognise (the datamodule's labels must use only these).
        in_channels: image channels (1 for grayscale data).
        height: image height; must equal the datamodule's.
        channels: output channels of the CRNN's four conv blocks.
        hidden_size: LSTM size per direction.
        num_layers: LSTM layers.
        dropout: CRNN dropout.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        shortcut_weight: weight of the auxiliary CTC loss of the CRNN's shortcut head (a column classifier on the
            last conv block, unused at inference); 0 builds no head. On the captchas it did not keep seeds from
            memorising their training words (``docs/text.md``); synthetic words did.
        warmup_epochs: linear learning-rate warm-up of the ``cosine`` schedule.
        lr_schedule: ``cosine`` (warm-up, then cosine decay to ``min_lr`` at ``trainer.max_epochs``, stepped per
            batch), ``plateau`` (ReduceLROnPlateau on ``val_loss``) or ``constant``. A plateau schedule can decay
            the rate before CTC leaves its blank plateau.
        lr_factor: ReduceLROnPlateau factor.
        lr_patience: ReduceLROnPlateau patience in epochs.
        min_lr: the lowest learning rate of either schedule.
        image_key: batch key of the images to read (``clean``, or ``degraded`` to train on degraded images).
        channels_last: run the convolutions in channels-last memory format (faster on GPUs).
        compile: ``torch.compile`` the CRNN.
    """

    compiled_modules = ("model", "model.forward_with_shortcut")  # the training step calls the latter

    def __init__(
        self,
        charset: str,
        in_channels: int = 1,
        height: int = 32,
        channels: Sequence[int] = (64, 128, 256, 256),
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.25,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        shortcut_weight: float = 0.0,
        warmup_epochs: float = 0.0,
        lr_schedule: Literal["cosine", "plateau", "constant"] = "cosine",
        lr_factor: float = 0.5,
        lr_patience: int = 8,
        min_lr: float = 1e-6,
        image_key: Literal["clean", "degraded"] = "clean",
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), *(
                (f"channels[{i}]", c) for i, c in enumerate(channels))):
            check_range(name, value, 1)
        check_range("dropout", dropout, 0, 1, high_open=True)
        check_range("lr", lr, 0, low_open=True)
        check_range("shortcut_weight", shortcut_weight, 0)
        check_range("warmup_epochs", warmup_epochs, 0)
        self.save_hyperparameters()
        self.charset = Charset(charset)
        self.model = self.use_channels_last(build_crnn(self.hparams))
        self.val_metrics = text_metrics("val_")
        self.test_metrics = text_metrics("test_")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_text_data(self.datamodule, self.charset, self.model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-timestep logits ``(B, T, classes)``."""
        return self.model(images)

    def input_specs(self) -> tuple[InputSpec, ...]:
        return (text_image_input(self.model.in_channels, self.model.height),)

    def class_labels(self) -> list[str]:
        return list(self.charset.chars)

    def inference_contract(self) -> InferenceContract:
        contract = super().inference_contract()
        contract.preprocessing["text_image"] = {"height": self.model.height, "channels": self.model.in_channels}
        contract.outputs, contract.decoding = dict(CTC_OUTPUTS), CTC_DECODING
        return contract

    def infer(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(inputs["text_image"]).float()
        return logits, logits.softmax(-1)

    def predict(self, batch: dict[str, torch.Tensor]) -> list[str]:
        """The text of each image of a batch (``text_image``: ``(B, C, H, W)`` in 0..1), greedy CTC decoding."""
        with torch.inference_mode():
            return self.charset.decode_greedy(self.infer({"text_image": batch["text_image"].to(self.device)})[0])

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch[self.hparams.image_key])
        return ctc_loss(logits, batch["targets"], batch["target_lengths"]), logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        size = len(batch["text"])
        if self.model.shortcut is None:
            loss, _ = self.model_step(batch)
            trained = loss
        else:
            logits, shortcut_logits = self.model.forward_with_shortcut(batch[self.hparams.image_key])
            loss = ctc_loss(logits, batch["targets"], batch["target_lengths"])
            shortcut_loss = ctc_loss(shortcut_logits, batch["targets"], batch["target_lengths"])
            self.log("train_shortcut_loss", shortcut_loss, on_step=False, on_epoch=True, batch_size=size)
            trained = loss + self.hparams.shortcut_weight * shortcut_loss
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        return trained

    def _eval_step(self, batch: dict, stage: str) -> None:
        loss, logits = self.model_step(batch)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(self.charset.decode_greedy(logits), batch["text"])
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=len(batch["text"]), sync_dist=True)
        self.log_dict(metrics, prog_bar=True, batch_size=len(batch["text"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"path": batch["path"], "text": self.charset.decode_greedy(self(batch[self.hparams.image_key]))}

    def configure_optimizers(self) -> OptimizerLRScheduler:
        h = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        if h.lr_schedule == "constant":
            return {"optimizer": optimizer}
        if h.lr_schedule == "cosine":
            return {"optimizer": optimizer,
                    "lr_scheduler": self.warmup_cosine_schedule(optimizer, h.warmup_epochs, h.min_lr)}
        return {"optimizer": optimizer,
                "lr_scheduler": self.plateau_schedule(optimizer, h.lr_factor, h.lr_patience, h.min_lr)}


def build_crnn(hparams) -> CRNN:
    """The CRNN a ``TextRecognizer`` with these hyperparameters holds (no shortcut head in checkpoints saved
    before it existed)."""
    arguments = set(inspect.signature(CRNN).parameters) - {"num_classes", "shortcut_head"}
    return CRNN(num_classes=Charset(hparams["charset"]).num_classes,
                shortcut_head=hparams.get("shortcut_weight", 0.0) > 0,
                **{k: v for k, v in dict(hparams).items() if k in arguments})


class FrozenRecognizer(nn.Module):
    """A trained recognizer that judges generated images and is never trained.

    Always in eval mode (``train()`` leaves it there, so BatchNorm uses its running statistics and dropout is off),
    parameters frozen and not handed to any optimiser, but differentiable with respect to its input: losses on its
    outputs train whatever produced the image.

    Args:
        model: the recognizer network.
        charset: its characters.
        feature_layer: the CRNN layer whose features ``forward`` returns (default: after the last conv block).
        hparams: the ``TextRecognizer`` hyperparameters the network was built from.
    """

    def __init__(self, model: CRNN, charset: Charset, feature_layer: str = "block4", hparams: dict | None = None):
        super().__init__()
        model._check_layer(feature_layer)
        self.model, self.charset, self.feature_layer = model, charset, feature_layer
        # the TextRecognizer hyperparameters that rebuild this network (saved by the tasks that hold it)
        self.hparams = {key: list(value) if isinstance(value, tuple) else value
                        for key, value in (hparams or {}).items()}
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, feature_layer: str = "block4") -> FrozenRecognizer:
        """Load a ``TextRecognizer`` checkpoint (weights and hyperparameters only: ``weights_only=True``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recognizer checkpoint not found: {path}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise InputError(f"{path}: cannot load the recognizer checkpoint ({error})") from None
        hparams, state = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
        if not isinstance(hparams, dict) or "charset" not in hparams or not isinstance(state, dict):
            raise InputError(f"{path}: not a TextRecognizer checkpoint (no charset in its hyperparameters)")
        recognizer = cls.from_hparams(hparams, feature_layer)
        recognizer.model.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        return recognizer

    @classmethod
    def from_hparams(cls, hparams: dict, feature_layer: str = "block4") -> FrozenRecognizer:
        """An untrained recognizer of a ``TextRecognizer``'s hyperparameters, whose weights are loaded afterwards
        (from a checkpoint that holds them, such as a ``RestorationGAN``'s)."""
        return cls(build_crnn(hparams), Charset(hparams["charset"]), feature_layer, hparams)

    def train(self, mode: bool = True) -> FrozenRecognizer:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, T, classes), features of feature_layer)``."""
        return self.model.forward_with_features(images, self.feature_layer)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images, self.feature_layer)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features, self.feature_layer)

    def read(self, images: torch.Tensor) -> list[str]:
        """Greedy transcriptions of ``images``."""
        return self.charset.decode_greedy(self.model(images))
