"""MediaPipe hand landmarks: model file, detection, geometric features and the landmark cache.

``hand_geometry`` needs torch and is imported on first use, so that detector worker processes start without torch.
"""

from .cache import ExtractionSummary, LandmarkCache, extract_landmarks
from .detect import DetectorSettings, HandDetection, HandDetector
from .layout import GEOMETRY_FEATURES, NUM_HANDS, NUM_POINTS, flip_landmarks
from .model_file import resolve_hand_landmarker

__all__ = [
    "DetectorSettings", "ExtractionSummary", "GEOMETRY_FEATURES", "HandDetection", "HandDetector", "LandmarkCache",
    "NUM_HANDS", "NUM_POINTS", "extract_landmarks", "flip_landmarks", "hand_geometry", "resolve_hand_landmarker",
]


def __getattr__(name: str):
    if name == "hand_geometry":
        from .features import hand_geometry

        return hand_geometry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
