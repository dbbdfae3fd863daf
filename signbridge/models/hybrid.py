"""The hybrid image + hand-landmark sign classifier (DESIGN.md, "Hybrid sign classifier")."""

from __future__ import annotations

from typing import Literal

import timm
import torch
from torch import nn

from ..hands.features import hand_geometry
from ..hands.layout import GEOMETRY_FEATURES, NUM_COORDS, NUM_HANDS, NUM_POINTS

Inputs = Literal["both", "image", "landmarks"]


class SpatialAttention(nn.Module):
    """Gate a feature map with a per-position weight: ``x * sigmoid(conv1x1(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


class LandmarkEncoder(nn.Module):
    """The seed's per-point MLP over the 42 points (dense 128 -> dropout 0.3 -> dense 256), one token per point.

    A learned embedding per point slot is added so that the tokens know which joint of which hand they are (the seed
    pooled them right away; attention needs the identity). Tokens of a missing hand are zero.
    """

    def __init__(self, hidden: int = 128, dim: int = 256, dropout: float = 0.3):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(NUM_COORDS, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.ReLU()
        )
        self.point_embedding = nn.Parameter(torch.zeros(NUM_HANDS * NUM_POINTS, dim))
        nn.init.trunc_normal_(self.point_embedding, std=0.02)

    def forward(self, landmarks: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, 21, 3)``, ``(B, 2)`` -> tokens ``(B, 42, dim)`` and their validity ``(B, 42)``."""
        valid = present.bool().repeat_interleave(NUM_POINTS, dim=1)
        tokens = self.mlp(landmarks.flatten(1, 2)) + self.point_embedding
        return tokens * valid.unsqueeze(-1), valid


def masked_mean(tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid tokens; zeros where none is valid."""
    weights = valid.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1)


class CrossAttentionFusion(nn.Module):
    """Bidirectional cross-attention: image tokens attend to hand tokens and hand tokens to image tokens.

    Each direction is multi-head attention (4 heads of 64 by default) with a residual add and LayerNorm. A sample
    without any hand keeps its image tokens unchanged (attention over no keys is undefined, so it is skipped).
    """

    def __init__(self, dim: int = 256, num_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.image_to_hands = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.hands_to_image = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.image_norm = nn.LayerNorm(dim)
        self.hands_norm = nn.LayerNorm(dim)

    def forward(
        self, image_tokens: torch.Tensor, hand_tokens: torch.Tensor, hand_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        has_hand = hand_valid.any(dim=1)
        # with every key masked softmax gives NaN: such samples attend to their (zero) tokens, then are zeroed
        key_padding_mask = ~hand_valid & has_hand.unsqueeze(1)
        attended, _ = self.image_to_hands(
            image_tokens, hand_tokens, hand_tokens, key_padding_mask=key_padding_mask, need_weights=False
        )
        attended = attended * has_hand[:, None, None].to(attended.dtype)
        looked, _ = self.hands_to_image(hand_tokens, image_tokens, image_tokens, need_weights=False)
        return self.image_norm(image_tokens + attended), self.hands_norm(hand_tokens + looked)


class HybridSignNet(nn.Module):
    """Image + hand-landmark classifier.

    Image branch: timm backbone feature map -> spatial-attention gate -> one token per position, projected to
    ``embed_dim``. Landmark branch: ``LandmarkEncoder`` tokens, pooled over present points -> dense ``embed_dim``.
    Fusion: ``cross_attention`` (``CrossAttentionFusion``, then the pooled tokens of both are concatenated) or
    ``concat`` (pooled branch outputs concatenated). Optional geometric hand features (68, computed from the landmarks
    unless given) are embedded and concatenated too. Head: dense 512 -> dropout 0.5 -> dense 256 -> dropout 0.4 ->
    classes.

    Args:
        num_classes: number of classes.
        backbone: timm model name.
        pretrained: load the backbone's pretrained weights (from ``weights_path`` when given, else timm's source).
        weights_path: local file of backbone weights (safetensors or a PyTorch state dict).
        inputs: which inputs the model uses; the unused branch is not built.
        fusion: how the two branches are combined when both are used.
        spatial_attention: gate the backbone feature map.
        use_geometry: add the geometric hand features as a third input.
        embed_dim: token and pooled-feature width.
        num_heads: attention heads (key dim = embed_dim / num_heads).
        drop_path_rate: stochastic depth of the backbone.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "tf_efficientnetv2_s",
        pretrained: bool = False,
        weights_path: str | None = None,
        inputs: Inputs = "both",
        fusion: Literal["cross_attention", "concat"] = "cross_attention",
        spatial_attention: bool = True,
        use_geometry: bool = False,
        embed_dim: int = 256,
        num_heads: int = 4,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.inputs = inputs
        self.fusion_mode = fusion
        self.use_geometry = use_geometry
        # progressive training switches a branch off for a stage; it then contributes zeros to the head
        self.active_inputs: Inputs = inputs
        self.embed_dim = embed_dim
        head_in = 0
        self.backbone = self.attention = self.image_proj = None
        if inputs in ("both", "image"):
            overlay = {"file": weights_path} if weights_path else None
            self.backbone = timm.create_model(
                backbone, pretrained=pretrained or bool(weights_path), pretrained_cfg_overlay=overlay,
                num_classes=0, global_pool="", drop_path_rate=drop_path_rate,
            )
            channels = self.backbone.num_features
            self.attention = SpatialAttention(channels) if spatial_attention else nn.Identity()
            self.image_proj = nn.Linear(channels, embed_dim)
            head_in += embed_dim
        self.landmark_encoder = self.landmark_pool = self.geometry = None
        if inputs in ("both", "landmarks"):
            self.landmark_encoder = LandmarkEncoder(dim=embed_dim)
            self.landmark_pool = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU())
            head_in += embed_dim
            if use_geometry:
                self.geometry = nn.Sequential(nn.LayerNorm(GEOMETRY_FEATURES), nn.Linear(GEOMETRY_FEATURES, 64), nn.ReLU())
                head_in += 64
        self.fusion = (
            CrossAttentionFusion(embed_dim, num_heads) if inputs == "both" and fusion == "cross_attention" else None
        )
        self.head = nn.Sequential(
            nn.Linear(head_in, 512), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.4),
            nn.Linear(256, num_classes),
        )
        self.num_features = head_in

    def parameter_groups(self) -> dict[str, list[nn.Module]]:
        """Modules by role, for progressive training: ``image``, ``landmarks``, ``fusion``, ``head``."""
        groups = {
            "image": [self.backbone, self.attention, self.image_proj],
            "landmarks": [self.landmark_encoder, self.landmark_pool, self.geometry],
            "fusion": [self.fusion],
            "head": [self.head],
        }
        return {name: [m for m in modules if m is not None] for name, modules in groups.items()}

    def forward_features(
        self,
        image: torch.Tensor | None,
        landmarks: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled, fused features ``(B, num_features)`` (the head's input)."""
        use_image = self.backbone is not None and self.active_inputs != "landmarks"
        use_hands = self.landmark_encoder is not None and self.active_inputs != "image"
        batch = (image if image is not None else landmarks).shape[0]
        if use_image:
            feature_map = self.attention(self.backbone.forward_features(image))
            image_tokens = self.image_proj(feature_map.flatten(2).transpose(1, 2))
        if use_hands:
            hand_tokens, hand_valid = self.landmark_encoder(landmarks, present)
            if use_image and self.fusion is not None:
                image_tokens, hand_tokens = self.fusion(image_tokens, hand_tokens, hand_valid)
        parts = []
        if self.backbone is not None:
            parts.append(image_tokens.mean(1) if use_image else self._zeros(batch, self.embed_dim))
        if self.landmark_encoder is not None:
            parts.append(self.landmark_pool(masked_mean(hand_tokens, hand_valid)) if use_hands
                         else self._zeros(batch, self.embed_dim))
            if self.geometry is not None:
                if use_hands:
                    geometry = hand_geometry(landmarks, present) if geometry is None else geometry
                    parts.append(self.geometry(geometry.to(parts[-1].dtype)))
                else:
                    parts.append(self._zeros(batch, 64))
        return torch.cat([p.to(parts[0].dtype) for p in parts], dim=1)

    def _zeros(self, batch: int, width: int) -> torch.Tensor:
        weight = self.head[0].weight
        return weight.new_zeros(batch, width)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(
        self,
        image: torch.Tensor | None,
        landmarks: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(image, landmarks, present, geometry))
