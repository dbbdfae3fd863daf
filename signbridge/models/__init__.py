"""Plain nn.Modules; they know nothing of Lightning."""

from .hybrid import CrossAttentionFusion, HybridSignNet, LandmarkEncoder, SpatialAttention

__all__ = ["CrossAttentionFusion", "HybridSignNet", "LandmarkEncoder", "SpatialAttention"]
