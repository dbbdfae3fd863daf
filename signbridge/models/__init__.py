"""Plain nn.Modules; they know nothing of Lightning."""

from .atk import ATKCNN
from .crnn import CRNN
from .hybrid import (
    CrossAttentionFusion,
    HybridSignNet,
    HybridSignNetConfig,
    ImageNet,
    LandmarkNet,
    LandmarkNetConfig,
    SpatialAttention,
)
from .landmarks import HandMLP, LandmarkEncoder, PointAttention, normalize_hands
from .restoration import PatchDiscriminator, RestorationGenerator
from .sequence import (
    SequenceNet,
    SequenceNetConfig,
    TextAlignedSequenceNet,
    frame_features,
    normalize_sequence,
)
from .text import ClassNameEncoder, TextAlignedHead, TextSideConfig, WordVectors, build_text_encoder

__all__ = ["ATKCNN", "CRNN", "ClassNameEncoder", "CrossAttentionFusion", "HandMLP", "HybridSignNet",
           "HybridSignNetConfig", "ImageNet", "LandmarkEncoder", "LandmarkNet", "LandmarkNetConfig",
           "PatchDiscriminator", "PointAttention", "RestorationGenerator", "SequenceNet", "SequenceNetConfig",
           "SpatialAttention", "TextAlignedHead", "TextAlignedSequenceNet", "TextSideConfig", "WordVectors",
           "build_text_encoder", "frame_features", "normalize_hands", "normalize_sequence"]
