"""Plain nn.Modules; they know nothing of Lightning."""

from .atk import ATKCNN
from .crnn import CRNN
from .hybrid import CrossAttentionFusion, HybridSignNet, LandmarkEncoder, SpatialAttention
from .restoration import PatchDiscriminator, RestorationGenerator

__all__ = ["ATKCNN", "CRNN", "CrossAttentionFusion", "HybridSignNet", "LandmarkEncoder", "PatchDiscriminator",
           "RestorationGenerator", "SpatialAttention"]
