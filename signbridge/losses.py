"""Losses shared by the tasks: CTC in float32, and the adversarial losses of the restoration GAN."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AdversarialLoss = Literal["hinge", "lsgan", "bce"]


def ctc_loss(logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Mean CTC loss (per target character, as ``F.ctc_loss``) of ``(B, T, classes)`` logits; blank is class 0.

    Computed in float32 with autocast off: in half precision the log-sum-exp of long alignments underflows.
    Targets with more characters than a valid alignment allows give an infinite loss, counted as zero
    (``zero_infinity``), so one bad sample cannot poison a batch.
    """
    with torch.autocast(logits.device.type, enabled=False):
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, classes)
        input_lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, zero_infinity=True)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: AdversarialLoss) -> torch.Tensor:
    """The critic's loss: real patches towards "real", generated patches towards "fake"."""
    real, fake = real_logits.float(), fake_logits.float()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "lsgan":
        return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    raise ValueError(f"unknown adversarial loss {kind!r}")


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: AdversarialLoss) -> torch.Tensor:
    """The generator's adversarial loss: its patches judged "real"."""
    fake = fake_logits.float()
    if kind == "hinge":
        return -fake.mean()
    if kind == "lsgan":
        return 0.5 * F.mse_loss(fake, torch.ones_like(fake))
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    raise ValueError(f"unknown adversarial loss {kind!r}")
