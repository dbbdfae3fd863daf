"""Plain nn.Modules; they know nothing of Lightning."""

from .atk import ATKCNN
from .crnn import CRNN
from .hybrid import CrossAttentionFusion, HybridSignNet, ImageNet, LandmarkNet, SpatialAttention
from .landmarks import HandMLP, LandmarkEncoder, PointAttention, normalize_hands
from .restoration import PatchDiscriminator, RestorationGenerator

__all__ = ["ATKCNN", "CRNN", "CrossAttentionFusion", "HandMLP", "HybridSignNet", "ImageNet", "LandmarkEncoder",
           "LandmarkNet", "PatchDiscriminator", "PointAttention", "RestorationGenerator", "SpatialAttention",
           "normalize_hands"]
