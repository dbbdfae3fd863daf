"""The hybrid image + hand-landmark sign classifier and its landmark-only counterpart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import timm
import torch
from torch import nn

from ..errors import InputError, check_range
from ..hands.features import hand_geometry
from ..hands.layout import GEOMETRY_FEATURES
from .landmarks import LandmarkEncoder, LandmarkEncoderKind, masked_mean

Inputs = Literal["both", "image", "landmarks"]
INPUTS = ("both", "image", "landmarks")
Fusion = Literal["cross_attention", "concat", "late"]
# the classifiers of a two-branch model that can give its prediction (see HybridSignNet.output)
OUTPUTS = ("fused", "image", "landmarks", "mean")
ParameterGroup = Literal["image", "landmarks", "fusion", "head"]
PARAMETER_GROUPS = ("image", "landmarks", "fusion", "head")
GEOMETRY_DIM = 64


class SpatialAttention(nn.Module):
    """Gate a feature map with a per-position weight: ``x * sigmoid(conv1x1(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


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


def classifier_head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout then a linear layer: the classifier of each branch."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


@dataclass(frozen=True)
class LandmarkNetConfig:
    """The architecture of a ``LandmarkNet``, the landmark-only classifier and the hybrid's landmark branch.

    In a config it is the ``net`` argument of ``LandmarkClassifier`` and ``net.landmarks`` of
    ``HybridSignClassifier``.
    """

    encoder: LandmarkEncoderKind = "mlp"
    """``mlp`` (whole-hand MLP) or ``attention`` (self-attention over the 42 points); see ``LandmarkEncoder``."""
    rotate_hands: bool = False
    """Normalise each hand's in-plane rotation."""
    use_geometry: bool = False
    """Add the 68 geometric hand features (distances, joint angles, palm normal, openness)."""
    dropout: float = 0.3
    """Dropout before the classifier."""

    def __post_init__(self):
        check_range("net dropout", self.dropout, 0, 1, high_open=True)


class LandmarkNet(nn.Module):
    """Landmark-only classifier: ``LandmarkEncoder`` (hand normalisation + encoder) -> dropout -> linear.

    It is also the hybrid's landmark branch, so a landmark-only model and the branch inside a hybrid are the same
    network.

    Args:
        num_classes: number of classes.
        config: the architecture (default: ``LandmarkNetConfig()``).
        dim: feature width.
    """

    def __init__(self, num_classes: int, config: LandmarkNetConfig | None = None, dim: int = 256):
        super().__init__()
        config = config or LandmarkNetConfig()
        self.encoder = LandmarkEncoder(config.encoder, dim, rotate=config.rotate_hands)
        self.geometry = (
            nn.Sequential(nn.LayerNorm(GEOMETRY_FEATURES), nn.Linear(GEOMETRY_FEATURES, GEOMETRY_DIM), nn.GELU())
            if config.use_geometry else None
        )
        self.num_features = dim + (GEOMETRY_DIM if config.use_geometry else 0)
        self.head = classifier_head(self.num_features, num_classes, config.dropout)

    def forward_features(self, landmarks: torch.Tensor, present: torch.Tensor,
                         aspect: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled feature ``(B, num_features)``, hand tokens ``(B, T, dim)`` and their validity ``(B, T)``."""
        feature, tokens, valid = self.encoder(landmarks, present, aspect)
        if self.geometry is not None:
            geometry = hand_geometry(landmarks, present)
            feature = torch.cat([feature, self.geometry(geometry.to(feature.dtype))], dim=1)
        return feature, tokens, valid

    def forward(self, landmarks: torch.Tensor, present: torch.Tensor,
                aspect: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.forward_features(landmarks, present, aspect)[0])


class ImageNet(nn.Module):
    """The image branch: timm backbone feature map -> spatial-attention gate -> one token per position, projected
    to ``dim`` -> mean-pooled feature -> dropout -> linear classifier.

    Args:
        num_classes: number of classes.
        backbone: timm model name.
        pretrained: load the backbone's pretrained weights (from ``weights_path`` when given, else timm's source).
        weights_path: local file of backbone weights (safetensors or a PyTorch state dict).
        spatial_attention: gate the backbone feature map.
        dim: token width.
        drop_path_rate: stochastic depth of the backbone.
        dropout: dropout before the image classifier.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "tf_efficientnetv2_s",
        pretrained: bool = False,
        weights_path: str | None = None,
        spatial_attention: bool = True,
        dim: int = 256,
        drop_path_rate: float = 0.0,
        dropout: float = 0.3,
    ):
        super().__init__()
        if not timm.is_model(backbone):
            raise InputError(f"unknown timm backbone '{backbone}' (timm.list_models() lists the names)")
        overlay = {"file": weights_path} if weights_path else None
        # Any: timm models add forward_features and num_features to nn.Module
        self.backbone: Any
        self.backbone = timm.create_model(
            backbone, pretrained=pretrained or bool(weights_path), pretrained_cfg_overlay=overlay,
            num_classes=0, global_pool="", drop_path_rate=drop_path_rate,
        )
        # the backbone's own normalisation (from its timm data config): the model takes 0..255 images, so no data
        # module has to know which backbone it feeds
        config = timm.data.resolve_data_config({}, model=self.backbone)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1) * 255, persistent=False)
        channels = int(self.backbone.num_features)
        self.attention = SpatialAttention(channels) if spatial_attention else nn.Identity()
        self.proj = nn.Linear(channels, dim)
        self.num_features = dim
        self.head = classifier_head(dim, num_classes, dropout)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` image with values 0..255 (uint8 or float) -> the backbone's normalised input."""
        return (image.float() - self.mean) / self.std

    def forward_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` image with values 0..255 (uint8 or float) -> tokens ``(B, positions, dim)``."""
        feature_map = self.attention(self.backbone.forward_features(self.normalize(image)))
        return self.proj(feature_map.flatten(2).transpose(1, 2))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.forward_tokens(image).mean(1))


@dataclass(frozen=True)
class HybridSignNetConfig:
    """The architecture of a ``HybridSignNet``: everything but its number of classes.

    In a config it is the ``net`` argument of ``HybridSignClassifier`` (``--model.init_args.net.fusion late``).
    """

    backbone: str = "tf_efficientnetv2_s"
    """timm model name of the image branch (``test_efficientnet`` is a tiny one for tests)."""
    pretrained: bool = False
    """Load the backbone's pretrained weights (downloaded by timm, or ``weights_path``)."""
    weights_path: str | None = None
    """Local file of backbone weights (nothing is downloaded)."""
    inputs: Inputs = "both"
    """``both``, or one branch alone (its own classifier is then the prediction): the ablations."""
    fusion: Fusion = "concat"
    """``concat``, ``cross_attention`` or ``late`` (no fusion head)."""
    spatial_attention: bool = True
    """Gate the backbone feature map with a per-position weight."""
    landmarks: LandmarkNetConfig = LandmarkNetConfig()
    """The landmark branch (``encoder``, ``rotate_hands``, ``use_geometry``, ``dropout``)."""
    embed_dim: int = 256
    """Token and pooled-feature width of both branches."""
    num_heads: int = 4
    """Attention heads of the cross-attention fusion (key dim = embed_dim / num_heads)."""
    drop_path_rate: float = 0.0
    """Stochastic depth of the backbone."""
    modality_dropout: float = 0.2
    """Share of training samples whose image or landmark feature (never both) the fusion head does not see."""

    def __post_init__(self):
        # from a checkpoint's hyperparameters the branch arrives as a dict
        if isinstance(self.landmarks, dict):
            object.__setattr__(self, "landmarks", LandmarkNetConfig(**self.landmarks))
        for name in ("embed_dim", "num_heads"):
            check_range(f"net {name}", getattr(self, name), 1)
        if self.embed_dim % self.num_heads:
            raise InputError(f"net embed_dim ({self.embed_dim}) must be a multiple of num_heads ({self.num_heads})")
        check_range("net drop_path_rate", self.drop_path_rate, 0, 1, high_open=True)
        check_range("net modality_dropout", self.modality_dropout, 0, 0.5)  # one of the two is always kept


class HybridSignNet(nn.Module):
    """Image + hand-landmark classifier: an ``ImageNet`` branch and a ``LandmarkNet`` branch, fused.

    Each branch keeps its own classifier, trained with its own loss (``forward_branches`` gives all logits), so
    neither branch can lean on the other and a weak branch cannot starve a strong one. The fusion head (``fused``):

    - ``concat``: the pooled branch features, concatenated, through dense 512 -> dropout 0.5 -> dense 256 ->
      dropout 0.4 -> classes.
    - ``cross_attention``: the image tokens and hand tokens first attend to each other (``CrossAttentionFusion``),
      then the same head.
    - ``late``: no fusion head.

    Which classifier gives the prediction is chosen per sample by whether MediaPipe found a hand: ``output`` for
    samples with a detected hand, ``no_hand_output`` for the others; each is ``fused``, ``image``, ``landmarks`` or
    ``mean`` (the mean of the others' log-probabilities). Both are buffers, saved in checkpoints;
    ``HybridSignClassifier`` sets each to the classifier with the lowest validation loss on its kind of sample, so
    the model is never worse on validation than its best branch, on photos with a hand and on photos without one
    (where the landmark classifier can only guess from the class prior).

    With ``modality_dropout`` p, during training each sample's image feature or landmark feature is zeroed with
    probability p each (never both) before the fusion head, so the fused classifier works from either branch alone.

    Args:
        num_classes: number of classes.
        config: the architecture (default: ``HybridSignNetConfig()``), e.g.
            ``HybridSignNet(10, HybridSignNetConfig(fusion="cross_attention"))``.
    """

    def __init__(self, num_classes: int, config: HybridSignNetConfig | None = None):
        super().__init__()
        config = config or HybridSignNetConfig()
        self.config = config
        self.inputs = inputs = config.inputs
        self.modality_dropout = config.modality_dropout
        self.output_index: torch.Tensor
        self.no_hand_output_index: torch.Tensor
        self.active_index: torch.Tensor
        default_output = torch.tensor(0 if inputs == "both" and config.fusion != "late" else 3)
        self.register_buffer("output_index", default_output)
        self.register_buffer("no_hand_output_index", default_output.clone())
        # progressive training switches a branch off for a stage (it then contributes zeros to the fusion head); a
        # buffer, so a checkpoint from that stage is evaluated with the inputs it was trained with
        self.register_buffer("active_index", torch.tensor(INPUTS.index(inputs)))
        self._sync_choices()
        self.image: ImageNet | None = None
        self.landmarks: LandmarkNet | None = None
        self.fusion: CrossAttentionFusion | None = None
        self.head: nn.Sequential | None = None
        dim = config.embed_dim
        if inputs in ("both", "image"):
            self.image = ImageNet(
                num_classes, backbone=config.backbone, pretrained=config.pretrained, weights_path=config.weights_path,
                spatial_attention=config.spatial_attention, dim=dim, drop_path_rate=config.drop_path_rate,
            )
        if inputs in ("both", "landmarks"):
            self.landmarks = LandmarkNet(num_classes, config.landmarks, dim)
        # features of each branch as the fusion head sees them (a branch switched off gives zeros of this width)
        self.image_features = dim
        self.landmark_features = self.landmarks.num_features if self.landmarks is not None else dim
        if inputs == "both" and config.fusion != "late":
            if config.fusion == "cross_attention":
                self.fusion = CrossAttentionFusion(dim, config.num_heads)
            head_in = self.image_features + self.landmark_features
            self.head = nn.Sequential(
                nn.Linear(head_in, 512), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.4),
                nn.Linear(256, num_classes),
            )

    def _sync_choices(self) -> None:
        # the buffers are the saved truth; forward reads these Python copies, so that torch.compile sees constants
        # (reading a buffer's value in forward would break its graph and stop CUDA graphs)
        both = self.inputs == "both"
        self._output: str = OUTPUTS[int(self.output_index)] if both else self.inputs
        self._no_hand_output: str = OUTPUTS[int(self.no_hand_output_index)] if both else self.inputs
        self._active: Inputs = INPUTS[int(self.active_index)]  # type: ignore[assignment]  # INPUTS lists Inputs

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before the choice per hand presence: one classifier for every sample
        if prefix + "output_index" in state_dict:
            state_dict.setdefault(prefix + "no_hand_output_index", state_dict[prefix + "output_index"].clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._sync_choices()

    @property
    def output(self) -> str:
        """The classifier that predicts samples with a detected hand (``fused``, ``image``, ``landmarks`` or
        ``mean``). Setting it sets ``no_hand_output`` too: one classifier for every sample."""
        return self._output

    @output.setter
    def output(self, name: str) -> None:
        self._check_output(name)
        self.output_index.fill_(OUTPUTS.index(name))
        self.no_hand_output_index.fill_(OUTPUTS.index(name))
        self._sync_choices()

    @property
    def no_hand_output(self) -> str:
        """The classifier that predicts samples without a detected hand."""
        return self._no_hand_output

    @no_hand_output.setter
    def no_hand_output(self, name: str) -> None:
        self._check_output(name)
        self.no_hand_output_index.fill_(OUTPUTS.index(name))
        self._sync_choices()

    def _check_output(self, name: str) -> None:
        if self.inputs != "both" or name not in self.outputs():
            raise ValueError(f"output must be one of {self.outputs()}, got '{name}'")

    @property
    def active_inputs(self) -> Inputs:
        """The inputs the model reads now: ``inputs``, or one branch of it during a progressive-training stage
        (``set_stage``)."""
        return self._active

    def set_stage(self, train: Iterable[str] = PARAMETER_GROUPS, inputs: Inputs = "both") -> None:
        """Train only the ``parameter_groups`` named in ``train`` and read only ``inputs`` (a stage of progressive
        training; a one-branch model reads its branch whatever ``inputs`` says). The other groups are frozen and in
        eval mode, so their BatchNorm statistics stay as they are."""
        unknown = set(train) - set(PARAMETER_GROUPS)
        if unknown:
            raise InputError(f"unknown parameter groups {sorted(unknown)}: choose from {PARAMETER_GROUPS}")
        if inputs not in INPUTS:
            raise InputError(f"inputs must be one of {INPUTS}, got '{inputs}'")
        for name, modules in self.parameter_groups().items():
            for module in modules:
                module.requires_grad_(name in train)
                module.train(self.training and name in train)
        self.active_index.fill_(INPUTS.index(inputs if self.inputs == "both" else self.inputs))
        self._sync_choices()

    def outputs(self) -> tuple[str, ...]:
        """The classifiers this model has."""
        if self.inputs != "both":
            return (self.inputs,)
        return OUTPUTS if self.head is not None else ("image", "landmarks", "mean")

    def parameter_groups(self) -> dict[str, list[nn.Module]]:
        """Modules by role, for progressive training: ``image``, ``landmarks``, ``fusion``, ``head``."""
        modules: tuple[nn.Module | None, ...] = (self.image, self.landmarks, self.fusion, self.head)
        return {name: [module] if module is not None else [] for name, module in zip(PARAMETER_GROUPS, modules)}

    def forward_branches(
        self,
        image: torch.Tensor | None,
        landmarks: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        aspect: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Logits ``(B, num_classes)`` of every classifier (``fused``, ``image``, ``landmarks``, ``mean``, as far as
        the model and its active inputs have them) and of the prediction (``logits``: ``output`` for the samples with
        a detected hand, ``no_hand_output`` for the others)."""
        image_branch = self.image if self.active_inputs != "landmarks" else None
        hand_branch = self.landmarks if self.active_inputs != "image" else None
        out: dict[str, torch.Tensor] = {}
        image_tokens = hand_feature = hand_tokens = hand_valid = None
        if image_branch is not None:
            if image is None:
                raise ValueError("this model reads images: pass image")
            image_tokens = image_branch.forward_tokens(image)
            out["image"] = image_branch.head(image_tokens.mean(1))
        if hand_branch is not None:
            if landmarks is None or present is None:
                raise ValueError("this model reads hand landmarks: pass landmarks and present")
            hand_feature, hand_tokens, hand_valid = hand_branch.forward_features(landmarks, present, aspect)
            out["landmarks"] = hand_branch.head(hand_feature)
        if self.inputs != "both":
            out["logits"] = out[self.inputs]
            return out
        if self.head is not None:
            out["fused"] = self._fuse(self.head, image_tokens, hand_feature, hand_tokens, hand_valid)
        members = [out[name].float().log_softmax(-1) for name in ("fused", "image", "landmarks") if name in out]
        out["mean"] = torch.stack(members).mean(0)
        out["logits"] = self.prediction(out, present.any(-1) if present is not None else None)
        return out

    def prediction(self, outputs: dict[str, torch.Tensor], has_hand: torch.Tensor | None) -> torch.Tensor:
        """The predicting logits from every classifier's (``outputs``, with ``mean``): ``output``'s for the samples
        with a detected hand (``has_hand``, ``(B,)`` bool), ``no_hand_output``'s for the others."""
        # a branch switched off (progressive training) falls back to the mean of what is there
        with_hand = outputs.get(self.output, outputs["mean"])
        if self.no_hand_output == self.output or has_hand is None:
            return with_hand
        without_hand = outputs.get(self.no_hand_output, outputs["mean"])
        dtype = torch.promote_types(with_hand.dtype, without_hand.dtype)
        return torch.where(has_hand[:, None], with_hand.to(dtype), without_hand.to(dtype))

    def _fuse(
        self,
        head: nn.Sequential,
        image_tokens: torch.Tensor | None,
        hand_feature: torch.Tensor | None,
        hand_tokens: torch.Tensor | None,
        hand_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """The fusion head's logits; a missing branch (switched off) contributes zeros."""
        present_tensor = image_tokens if image_tokens is not None else hand_feature
        if present_tensor is None:
            raise ValueError("the fusion head needs at least one branch")
        batch = present_tensor.shape[0]
        # zeros for a missing branch in the dtype and device of the branch that is there (not read from the head's
        # weights: a quantized head has none)
        zeros = present_tensor.new_zeros
        if (image_tokens is not None and hand_feature is not None and hand_tokens is not None
                and hand_valid is not None and self.fusion is not None):
            image_tokens, hand_tokens = self.fusion(image_tokens, hand_tokens, hand_valid)
            width = hand_tokens.shape[-1]
            fused_hands = masked_mean(hand_tokens, hand_valid)
            hand_feature = torch.cat([fused_hands.to(hand_feature.dtype), hand_feature[:, width:]], dim=1)
        image_feature = (image_tokens.mean(1) if image_tokens is not None
                         else zeros(batch, self.image_features))
        if hand_feature is None:
            hand_feature = zeros(batch, self.landmark_features)
        if self.training and self.modality_dropout > 0 and image_tokens is not None and hand_tokens is not None:
            draw = torch.rand(batch, device=present_tensor.device)
            keep_image = (draw >= self.modality_dropout).to(image_feature.dtype)[:, None]
            keep_hands = (draw < 1 - self.modality_dropout).to(hand_feature.dtype)[:, None]
            image_feature, hand_feature = image_feature * keep_image, hand_feature * keep_hands
        return head(torch.cat([image_feature, hand_feature.to(image_feature.dtype)], dim=1))

    def forward(self, image: torch.Tensor | None, landmarks: torch.Tensor | None = None,
                present: torch.Tensor | None = None, aspect: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of the final prediction (``forward_branches``' ``logits``)."""
        return self.forward_branches(image, landmarks, present, aspect)["logits"]
