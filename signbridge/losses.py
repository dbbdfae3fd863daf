"""Losses shared by the tasks: focal loss for imbalanced classes, CTC in float32, and the adversarial losses of the
restoration GAN."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AdversarialLoss = Literal["hinge", "lsgan", "bce"]


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class focal loss (Lin et al., 2017): each sample's cross-entropy scaled by ``(1 - p_t) ** gamma``, where
    ``p_t`` is the predicted probability of its class, so confidently right samples count less and rare, hard ones
    more. ``weight`` is the per-class alpha; the mean is weighted like ``F.cross_entropy``'s, so with ``gamma=0`` this
    is exactly ``F.cross_entropy(logits, labels, weight, label_smoothing=...)``."""
    logits = logits.float()
    per_sample = F.cross_entropy(logits, labels, weight=weight, reduction="none", label_smoothing=label_smoothing)
    if gamma:
        p_true = logits.log_softmax(dim=-1).gather(1, labels[:, None]).squeeze(1).exp()
        per_sample = (1 - p_true).clamp_min(0) ** gamma * per_sample
    total_weight = weight[labels].sum() if weight is not None else labels.new_tensor(len(labels), dtype=torch.float)
    return per_sample.sum() / total_weight


def ctc_loss(logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
             input_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CTC loss (per target token, as ``F.ctc_loss``) of ``(B, T, classes)`` logits; blank is class 0;
    ``input_lengths``: each sequence's real steps (default: all ``T``).

    Computed in float32 with autocast off: in half precision the log-sum-exp of long alignments underflows.
    Targets with more characters than a valid alignment allows give an infinite loss, counted as zero
    (``zero_infinity``), so one bad sample cannot poison a batch.
    """
    with torch.autocast(logits.device.type, enabled=False):
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, classes)
        if input_lengths is None:
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
