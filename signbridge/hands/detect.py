"""MediaPipe Tasks HandLandmarker wrapped to produce the landmark layout of ``docs/contracts.md``."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from ..errors import check_range
from ..imageio import read_image_rgb
from .layout import NUM_COORDS, NUM_HANDS, NUM_POINTS, SLOT_LABELS
from .model_file import resolve_hand_landmarker


@dataclass(frozen=True)
class DetectorSettings:
    """Detector settings; they are recorded in the landmark cache, and a cache made with others is stale."""

    num_hands: int = 2
    min_hand_detection_confidence: float = 0.5
    min_hand_presence_confidence: float = 0.5
    # larger images are downscaled first (normalised coordinates do not change; the palm detector runs at 192 px)
    max_image_side: int = 1280

    def __post_init__(self):
        check_range("num_hands", self.num_hands, 1, 2)
        for name in ("min_hand_detection_confidence", "min_hand_presence_confidence"):
            check_range(name, getattr(self, name), 0, 1)
        check_range("max_image_side", self.max_image_side, 192)  # MediaPipe's palm detector reads 192 px

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HandDetection:
    """One image's hands: ``landmarks (2, 21, 3)`` float32, ``present (2,)`` bool, ``score (2,)`` float32,
    ``wrist (2, 3)`` float32 (not kept in the landmark cache)."""

    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((NUM_HANDS, NUM_POINTS, NUM_COORDS), np.float32))
    present: np.ndarray = field(default_factory=lambda: np.zeros(NUM_HANDS, bool))
    score: np.ndarray = field(default_factory=lambda: np.zeros(NUM_HANDS, np.float32))
    # where each wrist is in the image (normalised x, y, z), for drawing; the landmarks are relative to it
    wrist: np.ndarray = field(default_factory=lambda: np.zeros((NUM_HANDS, NUM_COORDS), np.float32))


class HandDetector:
    """A MediaPipe HandLandmarker. Build it once per process and close it (use ``with``).

    ``video=True`` uses MediaPipe's VIDEO running mode for the frames of one stream (a video file or a camera): it
    tracks the hands from frame to frame instead of searching every frame from scratch, and ``detect`` then needs
    each frame's timestamp (increasing).

    Known hazard (mediapipe 1.2.2 with Lightning 2.6.6 and torch 2.15, Linux): building a HandLandmarker in a
    process that has already run ``Trainer.fit`` kills that process with SIGPROF ("Profiling timer expired"); the
    cause lies below Python and was not found. ``extract_landmarks`` therefore detects in spawned worker
    processes unless ``workers=0`` is asked for; build detectors before training, or in another process.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, settings: DetectorSettings | None = None,
                 video: bool = False):
        # imported here so that reading a landmark cache does not need mediapipe; quiet its C++ INFO/WARNING logs
        os.environ.setdefault("GLOG_minloglevel", "2")
        from mediapipe.tasks.python import BaseOptions, vision

        self.settings = settings or DetectorSettings()
        self.video = video
        self.model_path = resolve_hand_landmarker(model_path)
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_hands=self.settings.num_hands,
            min_hand_detection_confidence=self.settings.min_hand_detection_confidence,
            min_hand_presence_confidence=self.settings.min_hand_presence_confidence,
        )
        self._landmarker = vision.HandLandmarker.create_from_options(options)

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int | None = None) -> HandDetection:
        """Detect hands in an ``(H, W, 3)`` uint8 RGB image (a video frame with its ``timestamp_ms``)."""
        import mediapipe as mp

        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
        height, width = image_rgb.shape[:2]
        scale = self.settings.max_image_side / max(height, width)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        if self.video:
            if timestamp_ms is None:
                raise ValueError("a detector in video mode needs each frame's timestamp_ms")
            return _to_slots(self._landmarker.detect_for_video(frame, int(timestamp_ms)))
        return _to_slots(self._landmarker.detect(frame))

    def detect_file(self, path: str | os.PathLike) -> tuple[HandDetection, tuple[int, int]]:
        """Detect hands in an image file; returns the detection and the image's ``(width, height)``."""
        image = read_image_rgb(path)
        return self.detect(image), (image.shape[1], image.shape[0])

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> HandDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _to_slots(result) -> HandDetection:
    """Place MediaPipe's hands in their slots by handedness label, most confident first.

    MediaPipe occasionally gives two hands the same label; the less confident one then takes the free slot, so that
    no detected hand is dropped.
    """
    detection = HandDetection()
    hands = []
    for handedness, points in zip(result.handedness, result.hand_landmarks):
        category = handedness[0]
        xyz = np.array([[p.x, p.y, p.z] for p in points], dtype=np.float32)
        hands.append((category.score, SLOT_LABELS.index(category.category_name), xyz))
    for score, slot, xyz in sorted(hands, key=lambda hand: -hand[0]):
        if detection.present[slot]:
            free = np.flatnonzero(~detection.present)
            if free.size == 0:
                continue
            slot = int(free[0])
        detection.landmarks[slot] = xyz - xyz[0]  # relative to the wrist (landmark 0)
        detection.present[slot] = True
        detection.score[slot] = score
        detection.wrist[slot] = xyz[0]
    return detection
