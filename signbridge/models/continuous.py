"""Continuous sign recognition: a sentence's per-frame features to per-frame gloss scores (CTC), with an optional
classifier of isolated signs on the same encoder (multi-task)."""

from __future__ import annotations

import torch
from torch import nn

from .sequence import ConvTransformerEncoder, MaskedBatchNorm, RecurrentEncoder, SequenceNetConfig, masked_mean


class ContinuousSignNet(nn.Module):
    """``forward(features (B, T, F), mask (B, T))`` -> CTC logits ``(B, T, vocabulary)`` (class 0 the blank).

    The features are standardised inside (``MaskedBatchNorm``) and joined by their motion since the previous frame,
    embedded, and encoded over time by the sequence classifier's encoders (``conv_transformer``, or ``gru`` /
    ``lstm``: the recurrent CTC baseline). ``classify(features, mask)`` scores a whole (isolated) sign over
    ``num_signs`` classes from the mean of the same per-frame encoding.

    Args:
        features: values per frame.
        vocabulary: CTC classes (glosses + blank).
        num_signs: classes of the isolated-sign classifier (0: none).
        config: the encoder (``SequenceNetConfig``: encoder, dim, depth, kernel_size, ...).
    """

    def __init__(self, features: int, vocabulary: int, num_signs: int = 0,
                 config: SequenceNetConfig = SequenceNetConfig()):
        super().__init__()
        self.input_norm = MaskedBatchNorm(2 * features)
        self.embed = nn.Sequential(nn.Linear(2 * features, config.dim), nn.LayerNorm(config.dim))
        if config.encoder == "conv_transformer":
            self.encoder: ConvTransformerEncoder | RecurrentEncoder = ConvTransformerEncoder(config)
        elif config.encoder in ("gru", "lstm"):
            self.encoder = RecurrentEncoder(config)
        else:
            raise ValueError(f"continuous signing needs a per-frame encoder (conv_transformer, gru, lstm), not "
                             f"'{config.encoder}'")
        self.dropout = nn.Dropout(config.head_dropout)
        self.ctc_head = nn.Linear(self.encoder.width, vocabulary)
        self.sign_head = nn.Linear(self.encoder.width, num_signs) if num_signs else None

    def frames(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The per-frame encoding ``(B, T, width)``."""
        mask = mask.bool()
        motion = torch.cat([torch.zeros_like(features[:, :1]), features[:, 1:] - features[:, :-1]], dim=1)
        x = torch.cat([features, motion], dim=-1) * mask[..., None]
        x = self.embed(self.input_norm(x, mask)) * mask[..., None]
        return self.encoder.frames(x, mask)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.ctc_head(self.dropout(self.frames(features, mask)))

    def classify(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_signs)`` of isolated signs."""
        if self.sign_head is None:
            raise ValueError("this network has no isolated-sign classifier (num_signs 0)")
        return self.sign_head(self.dropout(masked_mean(self.frames(features, mask), mask.bool())))
