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
from .sequence import SequenceNet, SequenceNetConfig, frame_features, normalize_sequence

__all__ = ["ATKCNN", "CRNN", "CrossAttentionFusion", "HandMLP", "HybridSignNet", "HybridSignNetConfig", "ImageNet",
           "LandmarkEncoder", "LandmarkNet", "LandmarkNetConfig", "PatchDiscriminator", "PointAttention",
           "RestorationGenerator", "SequenceNet", "SequenceNetConfig", "SpatialAttention", "frame_features",
           "normalize_hands", "normalize_sequence"]
