"""MediaPipe hand landmarks: model file, detection, geometric features and the landmark cache.

``hand_geometry`` needs torch and is imported on first use, so that detector worker processes start without torch.
"""

from .cache import ExtractionSummary, LandmarkCache, extract_landmarks
from .detect import DetectorSettings, HandDetection, HandDetector
from .layout import GEOMETRY_FEATURES, NUM_HANDS, NUM_POINTS, flip_landmarks
from .model_file import resolve_hand_landmarker
from .sequence import PART_ORDER, PART_SIZES, SequenceCache, from_vectors
from .video import BodyTracker, extract_sequences, merge_sequence_caches

__all__ = [
    "BodyTracker", "DetectorSettings", "ExtractionSummary", "GEOMETRY_FEATURES", "HandDetection", "HandDetector",
    "LandmarkCache", "NUM_HANDS", "NUM_POINTS", "PART_ORDER", "PART_SIZES", "SequenceCache", "extract_landmarks",
    "extract_sequences", "flip_landmarks", "from_vectors", "hand_geometry", "merge_sequence_caches",
    "resolve_hand_landmarker",
]


def __getattr__(name: str):
    if name == "hand_geometry":
        from .features import hand_geometry

        return hand_geometry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
