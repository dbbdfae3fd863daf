"""Continuous sign recognition: sentences of signs to gloss sequences with CTC, jointly with the classification of
their isolated signs (multi-task), scored by word error rate (``docs/signs_and_words.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torchmetrics.text import WordErrorRate

from ..ctc import Vocabulary, beam_search, gloss_sentence, greedy_paths
from ..errors import InputError
from ..hparams import save_plain_hyperparameters
from ..inference import CTC_OUTPUTS, InferenceContract, InputSpec
from ..losses import ctc_loss
from ..models.continuous import ContinuousSignNet
from ..models.sequence import SequenceNetConfig
from .base import Task

CONTINUOUS_NET = SequenceNetConfig(dim=96, depth=2, conv_blocks=2, kernel_size=9, dropout=0.2, head_dropout=0.2)


def read_gloss_words(path: str | Path) -> dict[str, str]:
    """A gloss-to-words file: ``GLOSS words...`` per line (a tab or spaces after the gloss); ``#`` lines are
    comments."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: gloss-to-words file not found (model.init_args.gloss_words)")
    words = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        gloss, _, text = line.strip().partition("\t") if "\t" in line else line.strip().partition(" ")
        if not text.strip():
            raise InputError(f"{path}:{number}: expected 'GLOSS words', got {line.strip()!r}")
        words[gloss.strip()] = text.strip()
    return words


class ContinuousSignRecognizer(Task):
    """``ContinuousSignNet`` trained with CTC over glosses (blank 0; the loss in float32), optionally with the
    cross-entropy of each gloss's segment classified as an isolated sign (``sign_weight``, multi-task).

    Logged: ``{stage}_loss``, ``{val,test}_wer`` (the sentences decoded greedily, or by prefix beam search with
    ``beam_width`` > 1) and, with a classifier (``sign_weight`` > 0), ``{val,test}_segment_wer``: each gloss's
    segment classified one by one.

    Args:
        vocabulary: the glosses (default: the datamodule's).
        features: values per frame (default: the datamodule's).
        net: the encoder (``SequenceNetConfig``; ``gru`` / ``lstm`` for the recurrent CTC baseline).
        ctc_weight: the CTC loss's weight.
        sign_weight: the isolated-sign classification loss's weight (0: CTC only, no classifier).
        label_smoothing: of the classification loss.
        lr: AdamW learning rate (linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr``).
        weight_decay: AdamW weight decay.
        warmup_epochs: the warm-up.
        min_lr: the end of the decay.
        beam_width: 1: greedy decoding; more: prefix beam search in ``test`` and ``predict``.
        gloss_words: a file of ``GLOSS words...`` lines (tab or space after the gloss): ``predict`` also writes each
            decoded sentence in words (a gloss without a line is written as it is); the mapping is saved with the
            model.
        channels_last: unused (no 2-D convolutions); kept for the shared switches.
        compile: ``torch.compile`` the network.
    """

    monitor = "val_wer"
    monitor_mode = "min"

    def __init__(self, vocabulary: list[str] | None = None, features: int | None = None,
                 net: SequenceNetConfig = CONTINUOUS_NET, ctc_weight: float = 1.0, sign_weight: float = 0.0,
                 label_smoothing: float = 0.0, lr: float = 1e-3, weight_decay: float = 0.05, warmup_epochs: int = 10,
                 min_lr: float = 1e-6, beam_width: int = 1, gloss_words: str | None = None,
                 channels_last: bool = False, compile: bool = False):
        super().__init__()
        if ctc_weight <= 0 or sign_weight < 0:
            raise InputError(f"ctc_weight={ctc_weight} must be > 0 and sign_weight={sign_weight} >= 0")
        if beam_width < 1:
            raise InputError(f"beam_width must be at least 1, got {beam_width}")
        save_plain_hyperparameters(self)
        # read now where the file is; a checkpoint carries the mapping to machines without it (on_load_checkpoint)
        self.words = read_gloss_words(gloss_words) if gloss_words and Path(gloss_words).is_file() else {}
        self.model: ContinuousSignNet = None  # type: ignore[assignment]
        self.metrics = {stage: WordErrorRate() for stage in ("val", "test")}
        self.segment_metrics = {stage: WordErrorRate() for stage in ("val", "test")}
        if vocabulary is not None and features is not None:
            self._build()

    def _build(self) -> None:
        h = self.hparams
        self.vocabulary = Vocabulary(h.vocabulary)
        self.model = ContinuousSignNet(h.features, self.vocabulary.num_classes,
                                       len(h.vocabulary) if h.sign_weight else 0, SequenceNetConfig(**h.net))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule: Any = self.datamodule
        if self.model is None:
            if datamodule is None or not hasattr(datamodule, "vocabulary"):
                raise InputError("vocabulary and features not set and there is no sentence datamodule to tell")
            filled = {"vocabulary": list(datamodule.vocabulary.tokens), "features": datamodule.feature_size}
            self.hparams.update(filled)
            self._hparams_initial.update(filled)
            self._build()
        for metrics in (self.metrics, self.segment_metrics):
            for metric in metrics.values():
                metric.to(self.device)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """CTC logits ``(B, T, glosses + 1)``."""
        return self.model(features, mask)

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hparams
        logits = self(batch["features"], batch["mask"])
        loss = h.ctc_weight * ctc_loss(logits, batch["targets"], batch["target_lengths"], batch["mask"].sum(1))
        if h.sign_weight and len(batch["segment_label"]):
            signs = self.model.classify(batch["segment_features"], batch["segment_mask"])
            loss = loss + h.sign_weight * F.cross_entropy(signs.float(), batch["segment_label"],
                                                          label_smoothing=h.label_smoothing)
        return loss, logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self.model_step(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["glosses"]))
        return loss

    def decode(self, logits: torch.Tensor, lengths: torch.Tensor, beam_width: int = 1) -> list[list[str]]:
        """The gloss sequences of a batch of CTC logits (greedy, or prefix beam search)."""
        if beam_width <= 1:
            return [self.vocabulary.decode(path) for path in greedy_paths(logits, lengths)]
        log_probs = logits.float().log_softmax(-1)
        return [self.vocabulary.decode(beam_search(row[: int(n)], beam_width)) for row, n in zip(log_probs, lengths)]

    def _eval_step(self, batch: dict, stage: str) -> None:
        loss, logits = self.model_step(batch)
        size = len(batch["glosses"])
        beam = self.hparams.beam_width if stage == "test" else 1
        decoded = self.decode(logits, batch["mask"].sum(1), beam)
        self.metrics[stage].update([" ".join(g) for g in decoded], [" ".join(g) for g in batch["glosses"]])
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        if self.model.sign_head is not None and len(batch["segment_label"]):
            predicted = self.model.classify(batch["segment_features"], batch["segment_mask"]).argmax(-1)
            # the segments of each sentence, classified one by one, against its glosses (those the vocabulary has)
            for i in range(size):
                mine = batch["segment_sentence"] == i
                said = [self.vocabulary.tokens[k] for k in predicted[mine].tolist()]
                truth = [self.vocabulary.tokens[k] for k in batch["segment_label"][mine].tolist()]
                self.segment_metrics[stage].update(" ".join(said), " ".join(truth))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        for name, metric in ((f"{stage}_wer", self.metrics[stage]), (f"{stage}_segment_wer",
                                                                      self.segment_metrics[stage])):
            if metric.update_called:
                self.log(name, metric.compute(), prog_bar=True)
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self(batch["features"], batch["mask"])
        decoded = self.decode(logits, batch["mask"].sum(1), self.hparams.beam_width)
        return {"path": batch.get("name"), "glosses": [" ".join(g) for g in decoded],
                "sentence": [self.sentence(g) for g in decoded]}

    def on_predict_start(self) -> None:
        if self.hparams.get("gloss_words") and not self.words:  # neither the file nor a saved mapping
            self.words = read_gloss_words(self.hparams.gloss_words)

    def sentence(self, glosses: list[str]) -> str:
        """Decoded glosses in words (``gloss_words``)."""
        return gloss_sentence(glosses, self.words)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["gloss_words"] = dict(self.words)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # the mapping travels with the model; a file given now wins
        self.words = {**checkpoint.get("gloss_words", {}), **self.words}

    def input_specs(self) -> tuple[InputSpec, ...]:
        return (InputSpec("features", "float32", ("batch", "frames", int(self.hparams.features or 0)),
                          "per-frame features of a signed sentence, as the training data gives them"),
                InputSpec("mask", "bool", ("batch", "frames"), "True for real frames, False for padding"))

    def class_labels(self) -> list[str]:
        return list(self.hparams.vocabulary or [])

    def inference_contract(self) -> InferenceContract:
        contract = super().inference_contract()
        contract.outputs = dict(CTC_OUTPUTS)
        contract.decoding = "greedy CTC: argmax per frame, merge repeats, drop class 0 (blank); class i is classes[i-1]"
        if self.words:
            contract.preprocessing["gloss_words"] = dict(self.words)
        return contract

    def infer(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(inputs["features"], inputs["mask"]).float()
        return logits, logits.softmax(-1)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        h = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        return {"optimizer": optimizer,
                "lr_scheduler": self.warmup_cosine_schedule(optimizer, h.warmup_epochs, h.min_lr)}
