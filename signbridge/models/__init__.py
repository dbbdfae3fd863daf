"""Plain nn.Modules; they know nothing of Lightning."""

from .atk import ATKCNN
from .hybrid import CrossAttentionFusion, HybridSignNet, LandmarkEncoder, SpatialAttention

__all__ = ["ATKCNN", "CrossAttentionFusion", "HybridSignNet", "LandmarkEncoder", "SpatialAttention"]
