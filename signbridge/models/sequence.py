"""Sign classifiers over landmark sequences (``docs/sequences.md``): normalisation of the raw MediaPipe points inside
the model, per-frame features, and three encoders over time behind one ``SequenceNet``:

- ``conv_transformer`` (default): 1-D depthwise-convolution blocks with efficient channel attention and transformer
  blocks, after the Kaggle "Isolated Sign Language Recognition" winners (about 1 M parameters, fast on a CPU);
- ``gru`` / ``lstm``: a two-layer bidirectional recurrent network, the baseline of the tutorials that record these
  folders;
- ``pooled``: statistics over time (mean, std, min, max) and a few resampled frames into an MLP (``hidden_layers: 0``
  is logistic regression): the time-pooled baseline.

Every encoder masks padded frames (``mask``) and parts that were not found (``present``), so padding a sequence
never changes its prediction and a missing hand gives finite outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_range
from ..hands.sequence import PART_SIZES, part_slices
from .landmarks import normalize_hands
from .text import TextAlignedHead, TextMapping

SequenceEncoderKind = Literal["conv_transformer", "gru", "lstm", "pooled"]


@dataclass(frozen=True)
class SequenceNetConfig:
    """The architecture of ``SequenceNet``.

    Attributes:
        encoder: ``conv_transformer``, ``gru``, ``lstm`` or ``pooled``.
        dim: width of the frame embedding and of the encoder.
        depth: conv_transformer: stages of ``conv_blocks`` convolution blocks and one transformer block; gru/lstm:
            layers.
        conv_blocks: conv_transformer: convolution blocks per stage.
        kernel_size: the depthwise convolutions' width in frames.
        num_heads: attention heads.
        expand: the convolution and feed-forward blocks' expansion.
        dropout: conv_transformer: the probability of skipping a block's residual branch for a whole sequence
            (stochastic depth, as the Kaggle winners' per-sample dropout) and of attention dropout; gru/lstm and
            pooled: dropout between layers.
        head_dropout: dropout of the pooled feature before the classifier (raised late in training by the task's
            ``late_dropout``).
        hidden_layers: pooled: the MLP's hidden layers of ``dim`` (0: logistic regression).
        resampled_frames: pooled: frames resampled over the sequence, besides the statistics.
    """

    encoder: SequenceEncoderKind = "conv_transformer"
    dim: int = 192
    depth: int = 2
    conv_blocks: int = 3
    kernel_size: int = 17
    num_heads: int = 4
    expand: int = 2
    dropout: float = 0.2
    head_dropout: float = 0.2
    hidden_layers: int = 2
    resampled_frames: int = 8

    def __post_init__(self):
        for name in ("dim", "depth", "conv_blocks", "kernel_size", "num_heads", "expand", "resampled_frames"):
            check_range(f"net {name}", getattr(self, name), 1)
        check_range("net hidden_layers", self.hidden_layers, 0)
        for name in ("dropout", "head_dropout"):
            check_range(f"net {name}", getattr(self, name), 0, 1, high_open=True)


def valid_points(points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor, parts: tuple[str, ...]
                 ) -> torch.Tensor:
    """``(B, T, P)``: a point counts when its frame is real (``mask``), its part was found and it is not all zeros
    (MediaPipe's "not found", and what point dropout leaves)."""
    return point_presence(present.bool(), parts) & mask.bool()[..., None] & (points != 0).any(-1)


def point_presence(present: torch.Tensor, parts: tuple[str, ...]) -> torch.Tensor:
    """``(..., K)`` presence of the parts -> ``(..., P)`` of their points. Each part's flag expanded, not gathered
    with an index made per call: copying an index to the GPU waits for the GPU's queue to drain."""
    return torch.cat([present[..., k : k + 1].expand(*present.shape[:-1], PART_SIZES[name])
                      for k, name in enumerate(parts)], dim=-1)


def normalize_sequence(points: torch.Tensor, valid: torch.Tensor, parts: tuple[str, ...], eps: float = 1e-6
                       ) -> torch.Tensor:
    """x, y of every point made independent of where the signer is in the frame and how large: minus the mean and
    divided by the spread (root mean square distance) of the sequence's reference points (the pose where the layout
    has one, else all points) over all its frames. Invalid points are zeros. ``(B, T, P, 3)`` -> ``(B, T, P, 2)``."""
    xy = points[..., :2].float()
    reference = valid.clone()
    if "pose" in parts:
        pose = part_slices(parts)["pose"]
        has_pose = valid[..., pose].flatten(1).any(1)  # per sequence: fall back to every point without a pose
        only_pose = torch.zeros_like(valid)
        only_pose[..., pose] = True
        reference = valid & (only_pose | ~has_pose[:, None, None])  # logic, not a where: ONNX has no bool Where
    weight = reference.to(xy.dtype)[..., None]
    count = weight.sum((1, 2), keepdim=True).clamp_min(1)
    center = (xy * weight).sum((1, 2), keepdim=True) / count
    spread = (((xy - center) ** 2).sum(-1, keepdim=True) * weight).sum((1, 2), keepdim=True) / count
    normalised = (xy - center) / spread.sqrt().clamp_min(eps)
    return normalised * valid.to(xy.dtype)[..., None]


def frame_features(points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor, parts: tuple[str, ...]
                   ) -> torch.Tensor:
    """Per frame: the normalised x, y of every point, each hand's own shape (``normalize_hands``: wrist-relative,
    palm-sized x, y, z), the motion of every point since the previous frame, and the parts' presence.
    ``(B, T, P, 3)``, ``(B, T, K)``, ``(B, T)`` -> ``(B, T, F)`` with ``F = feature_size(parts)``; padded frames
    are zeros."""
    valid = valid_points(points, present, mask, parts)
    position = normalize_sequence(points, valid, parts)
    moving = valid[:, 1:] & valid[:, :-1]
    motion = (position[:, 1:] - position[:, :-1]) * moving.to(position.dtype)[..., None]
    motion = torch.cat([torch.zeros_like(position[:, :1]), motion], dim=1)
    features = [position.flatten(2), motion.flatten(2)]
    hands = [name for name in ("left_hand", "right_hand") if name in parts]
    if hands:
        slices = part_slices(parts)
        hand_points = torch.stack([points[..., slices[name], :] for name in hands], dim=2)  # (B, T, H, 21, 3)
        hand_present = torch.stack([present[..., parts.index(name)] for name in hands], dim=-1) & mask[..., None]
        features.append(normalize_hands(hand_points, hand_present).flatten(2))
    features.append(present.to(position.dtype) * mask.to(position.dtype)[..., None])
    return torch.cat(features, dim=-1) * mask.to(position.dtype)[..., None]


def feature_size(parts: tuple[str, ...]) -> int:
    """The width of ``frame_features`` for these parts."""
    points = sum(PART_SIZES[name] for name in parts)
    hands = sum(name in parts for name in ("left_hand", "right_hand"))
    return 4 * points + hands * 63 + len(parts)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the time axis (1) of the real frames."""
    weight = mask.to(x.dtype)[..., None]
    return (x * weight).sum(1) / weight.sum(1).clamp_min(1)


class MaskedBatchNorm(nn.Module):
    """BatchNorm of the real frames' features only (padding does not enter the statistics), without affine
    parameters: it standardises features of very different spreads (positions, motion, presence)."""

    def __init__(self, features: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(features, affine=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            out = torch.zeros_like(x)
            out[mask] = self.norm(x[mask])
            return out
        # the running statistics are a per-feature affine map: the same for every frame, padded or not
        mean, var = self.norm.running_mean, self.norm.running_var
        assert mean is not None and var is not None  # track_running_stats is on
        return (x - mean) * torch.rsqrt(var + self.norm.eps) * mask[..., None]


class EfficientChannelAttention(nn.Module):
    """ECA: channel weights from a 1-D convolution over the time-averaged channels."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.conv(masked_mean(x, mask)[:, None, :]).sigmoid()  # (B, 1, C)
        return x * weights


class ResidualDropout(nn.Module):
    """Drop a residual branch for whole sequences (stochastic depth): one random number per sequence, not per value,
    so it regularises like the Kaggle winners' ``Dropout(noise_shape=(batch, 1, 1))`` at a fraction of the cost."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


class ConvBlock(nn.Module):
    """Expand, depthwise convolution over time, BatchNorm, ECA, project; residual. Padded frames are zeroed before
    the convolution, so they look like the zeros beyond a sequence's end."""

    def __init__(self, dim: int, kernel_size: int, expand: int, dropout: float):
        super().__init__()
        hidden = dim * expand
        self.expand = nn.Linear(dim, hidden)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)
        self.attention = EfficientChannelAttention()
        self.project = nn.Linear(hidden, dim)
        self.dropout = ResidualDropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.expand(x)) * mask[..., None]
        h = self.norm(self.depthwise(h.transpose(1, 2))).transpose(1, 2)
        h = self.attention(F.silu(h), mask)
        return x + self.dropout(self.project(h))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention over the real frames and a feed-forward layer, each residual."""

    def __init__(self, dim: int, num_heads: int, expand: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * expand), nn.GELU(), nn.Linear(dim * expand, dim))
        self.dropout = ResidualDropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, frames, 3, self.num_heads, dim // self.num_heads).unbind(2)
        attend = mask[:, None, None, :]  # (B, 1, 1, T): keys that are real frames
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attend,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self.dropout(self.proj(out.transpose(1, 2).reshape(batch, frames, dim)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class ConvTransformerEncoder(nn.Module):
    """``depth`` stages of ``conv_blocks`` ``ConvBlock`` and one ``TransformerBlock``."""

    def __init__(self, config: SequenceNetConfig):
        super().__init__()
        c = config
        blocks: list[nn.Module] = []
        for _ in range(c.depth):
            blocks += [ConvBlock(c.dim, c.kernel_size, c.expand, c.dropout) for _ in range(c.conv_blocks)]
            blocks.append(TransformerBlock(c.dim, c.num_heads, c.expand, c.dropout))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(nn.Linear(c.dim, 2 * c.dim), nn.SiLU())
        self.width = 2 * c.dim

    def frames(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame outputs ``(B, T, width)`` (continuous signing reads these)."""
        for block in self.blocks:
            x = block(x, mask)
        return self.out(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.frames(x, mask), mask)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence's real frames in reverse order, its padding left at the end (``(B, T, C)``)."""
    frames = torch.arange(x.shape[1], device=x.device)[None]
    index = torch.where(frames < lengths[:, None], lengths[:, None] - 1 - frames, frames)
    return x.gather(1, index[..., None].expand_as(x))


class RecurrentEncoder(nn.Module):
    """A bidirectional GRU or LSTM, mean-pooled over the real frames. The backward direction runs over each
    sequence reversed within its own length, so padding at the end never reaches a real frame (and the network
    exports to ONNX without packed sequences)."""

    def __init__(self, config: SequenceNetConfig):
        super().__init__()
        c = config
        rnn = nn.GRU if c.encoder == "gru" else nn.LSTM
        # each layer: a network that reads forward and one that reads the sequence reversed
        self.forward_layers = nn.ModuleList([rnn(c.dim, c.dim // 2, batch_first=True) for _ in range(max(1, c.depth))])
        self.backward_layers = nn.ModuleList([rnn(c.dim, c.dim // 2, batch_first=True)
                                              for _ in range(max(1, c.depth))])
        self.dropout = nn.Dropout(c.dropout)
        self.width = c.dim

    def frames(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame outputs ``(B, T, width)`` (continuous signing reads these)."""
        lengths = mask.sum(1)
        for forward_rnn, backward_rnn in zip(self.forward_layers, self.backward_layers):
            ahead = forward_rnn(x)[0]
            behind = reverse_within(backward_rnn(reverse_within(x, lengths))[0], lengths)
            x = self.dropout(torch.cat([ahead, behind], dim=-1)) * mask[..., None]
        return x

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.frames(x, mask), mask)


def masked_statistics(x: torch.Tensor, mask: torch.Tensor, resampled: int) -> torch.Tensor:
    """Mean, std, min and max over the real frames, and ``resampled`` frames taken evenly over each sequence's own
    length: ``(B, T, F)`` -> ``(B, (4 + resampled) * F)``."""
    weight = mask.to(x.dtype)[..., None]
    mean = masked_mean(x, mask)
    std = ((((x - mean[:, None]) ** 2) * weight).sum(1) / weight.sum(1).clamp_min(1)).sqrt()
    large = torch.finfo(x.dtype).max
    low = torch.where(mask[..., None], x, large).amin(1)
    high = torch.where(mask[..., None], x, -large).amax(1)
    lengths = mask.sum(1).clamp_min(1).to(x.dtype)
    positions = (torch.arange(resampled, device=x.device, dtype=x.dtype) + 0.5) / resampled
    index = (positions[None] * lengths[:, None]).long().clamp_max(x.shape[1] - 1)  # (B, R)
    frames = x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
    return torch.cat([mean, std, low, high, frames.flatten(1)], dim=1)


class PooledEncoder(nn.Module):
    """Statistics over time (``masked_statistics``) into an MLP: the time-pooled baseline. It reads the frame
    features directly (standardised), not the frame embedding."""

    def __init__(self, features: int, config: SequenceNetConfig):
        super().__init__()
        c = config
        self.resampled = c.resampled_frames
        width = (4 + c.resampled_frames) * features
        self.norm = nn.BatchNorm1d(width, affine=False)
        layers: list[nn.Module] = []
        for _ in range(c.hidden_layers):
            layers += [nn.Linear(width, c.dim), nn.GELU(), nn.Dropout(c.dropout)]
            width = c.dim
        self.mlp = nn.Sequential(*layers)
        self.width = width

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(masked_statistics(x, mask, self.resampled)))


class SequenceNet(nn.Module):
    """Landmark sequence -> class logits.

    ``forward(points (B, T, P, 3), present (B, T, K), mask (B, T))``: raw MediaPipe points in the sequence layout of
    ``parts`` (``hands.sequence``), which parts were found per frame, and which frames are real (not padding).

    Args:
        num_classes: classes.
        parts: the layout's parts, in order (e.g. ``("pose", "left_hand", "right_hand")``).
        config: the architecture (``SequenceNetConfig``).
    """

    def __init__(self, num_classes: int, parts: tuple[str, ...] | list[str],
                 config: SequenceNetConfig = SequenceNetConfig()):
        super().__init__()
        self.parts = tuple(parts)
        self.config = config
        features = feature_size(self.parts)
        self.input_norm = MaskedBatchNorm(features)
        self.encoder: nn.Module
        if config.encoder == "pooled":
            self.embed: nn.Module | None = None
            self.encoder = PooledEncoder(features, config)
        else:
            self.embed = nn.Sequential(nn.Linear(features, config.dim), nn.LayerNorm(config.dim))
            if config.encoder == "conv_transformer":
                self.encoder = ConvTransformerEncoder(config)
            elif config.encoder in ("gru", "lstm"):
                self.encoder = RecurrentEncoder(config)
            else:
                raise ValueError(f"unknown sequence encoder '{config.encoder}' (conv_transformer, gru, lstm, pooled)")
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(self.encoder.width, num_classes)

    @property
    def width(self) -> int:
        """The size of ``features``: the pooled sign embedding the classifier reads."""
        return int(self.encoder.width)  # type: ignore[arg-type]

    def forward(self, points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_dropout(self.features(points, present, mask)))

    def features(self, points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled sign embedding ``(B, width)`` of a batch, before the classifier's dropout and layer."""
        mask = mask.bool()
        # a sequence without one real frame (an empty window) is read as one frame of nothing, never NaN
        mask = mask | (~mask.any(1, keepdim=True) & (torch.arange(mask.shape[1], device=mask.device) == 0))
        x = self.input_norm(frame_features(points, present.bool(), mask, self.parts), mask)
        if self.embed is not None:
            x = self.embed(x) * mask[..., None]
        return self.encoder(x, mask)


def landmark_descriptor(points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor,
                        parts: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Where a sign is made, how much it moves and in which direction: each landmark's mean and standard deviation
    over the frames where it was tracked, and its mean position over the second half of those frames minus the
    first half's, ``(B, 3 x points x 3)``. Text-aligned models also map names of signs they never saw onto it
    (``docs/signs_and_words.md``)."""
    valid = valid_points(points, present, mask, tuple(parts))[..., None].to(points.dtype)
    count = valid.sum(1, keepdim=True)
    mean = (points * valid).sum(1, keepdim=True) / count.clamp_min(1)
    spread = (((points - mean) ** 2 * valid).sum(1) / count[:, 0].clamp_min(1)).sqrt()
    first = valid * (valid.cumsum(1) <= count / 2).to(points.dtype)
    second = valid - first

    def mean_over(weight: torch.Tensor) -> torch.Tensor:
        return (points * weight).sum(1) / weight.sum(1).clamp_min(1)

    movement = (mean_over(second) - mean_over(first)) * (first.sum(1) > 0).to(points.dtype)
    return torch.cat([mean[:, 0].flatten(1), spread.flatten(1), movement.flatten(1)], 1)


def landmark_descriptor_size(parts: tuple[str, ...] | list[str]) -> int:
    """The width of ``landmark_descriptor`` for these parts."""
    return 3 * 3 * sum(PART_SIZES[name] for name in parts)


class TextAlignedSequenceNet(nn.Module):
    """A ``SequenceNet`` whose sign embedding is also projected into a text space (``TextAlignedHead``), so that a
    sign is scored against any class name's embedding (``docs/signs_and_words.md``).

    ``forward(points, present, mask, class_embeddings (C, D))``: logits ``(B, C)`` by similarity to the names;
    ``sign.head`` is the plain classifier over the training classes (an auxiliary loss in training).

    Args:
        num_classes: the training classes (the plain classifier's outputs).
        parts: the layout's parts, in order.
        embedding_dim: the text space's size.
        config: the sign network's architecture.
        mapping: which side is projected into the other's space (``TextAlignedHead``).
        temperature: the similarity's initial temperature.
        learn_temperature: learn the temperature.
    """

    def __init__(self, num_classes: int, parts: tuple[str, ...] | list[str], embedding_dim: int,
                 config: SequenceNetConfig = SequenceNetConfig(), mapping: TextMapping = "sign_to_text",
                 temperature: float = 0.07, learn_temperature: bool = True):
        super().__init__()
        self.sign = SequenceNet(num_classes, parts, config)
        self.align = TextAlignedHead(self.sign.width, embedding_dim, mapping, temperature, learn_temperature)

    def forward(self, points: torch.Tensor, present: torch.Tensor, mask: torch.Tensor,
                class_embeddings: torch.Tensor) -> torch.Tensor:
        return self.align(self.sign.features(points, present, mask), class_embeddings)
