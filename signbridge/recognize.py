"""Recognise signs in single frames, folders, videos and camera streams (``Recognizer``, ``signbridge recognize``).

A ``Recognizer`` loads a model once (a checkpoint of ``signbridge fit``, or a file of ``signbridge export``: ONNX or
TorchScript), finds the hands with MediaPipe and returns the class of each frame. ``recognize_source`` runs it over
an image, a folder, a video file or a camera.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .hands.detect import DetectorSettings, HandDetector
from .inference import load_predictor

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


@dataclass
class Recognition:
    """One frame's result. ``label`` is None when the model reads only hand landmarks and no hand was found."""

    label: str | None
    probability: float
    probabilities: np.ndarray
    landmarks: np.ndarray
    present: np.ndarray
    wrist: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def hand_found(self) -> bool:
        return bool(self.present.any())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no landmark arrays)."""
        return {"label": self.label, "probability": round(self.probability, 6), "hands": int(self.present.sum()),
                **{f"{stage}_ms": round(ms, 3) for stage, ms in self.timings_ms.items()}}


class Recognizer:
    """Recognise the sign in video frames or photos with a trained classifier.

    The model's inference contract says what it reads and how its training data was prepared (image size and
    interpolation, the hand detector's settings); the frames are prepared the same way.

    Args:
        model: a ``.ckpt`` of ``signbridge fit`` or a ``.onnx`` / ``.pt`` of ``signbridge export``.
        hand_model: MediaPipe's ``hand_landmarker.task`` (default: as ``signbridge landmarks`` finds it).
        video: the frames are one stream (MediaPipe's VIDEO mode; ``predict`` then needs timestamps).
        smoothing: average the class probabilities over this many recent frames (1: none).
        threads: CPU threads of the model (default: all).

    ``predict(frame)`` takes an ``(H, W, 3)`` uint8 RGB frame. Without a detected hand a landmark-only model
    gives ``label=None``; a hybrid model still classifies the frame from its image.
    """

    def __init__(self, model: str | os.PathLike, hand_model: str | os.PathLike | None = None, video: bool = False,
                 smoothing: int = 1, threads: int | None = None):
        path = Path(model)
        self.model = load_predictor(path, threads)
        self.contract = self.model.contract
        if self.contract.decoding != "argmax":
            raise InputError(f"{path}: a text recognizer; recognize reads signs (for text: signbridge predict)")
        self.contract.check_ready(path)
        self.classes = list(self.contract.classes)
        settings = self.contract.preprocessing.get("hands")
        self.detector = HandDetector(hand_model, settings=DetectorSettings(**settings) if settings else None,
                                     video=video)
        self.smoothing = max(1, smoothing)
        self._recent: deque[np.ndarray] = deque(maxlen=self.smoothing)

    @property
    def reads_images(self) -> bool:
        return self.contract.reads_images

    def predict(self, frame: np.ndarray, timestamp_ms: int | None = None) -> Recognition:
        """Recognise one ``(H, W, 3)`` uint8 RGB frame."""
        start = time.perf_counter()
        detection = self.detector.detect(frame, timestamp_ms)
        detected = time.perf_counter()
        timings = {"landmarks": (detected - start) * 1e3}
        if not detection.present.any() and not self.reads_images:
            self._recent.clear()  # a gap without hands ends the run of frames being averaged
            return Recognition(None, 0.0, np.zeros(len(self.classes), np.float32), detection.landmarks,
                               detection.present, detection.wrist,
                               {**timings, "model": 0.0, "total": timings["landmarks"]})
        inputs = self.contract.frame_inputs(frame, detection)
        prepared = time.perf_counter()
        probabilities = self.model.probabilities(inputs)[0]
        done = time.perf_counter()
        self._recent.append(probabilities)
        averaged = np.mean(self._recent, axis=0)
        best = int(averaged.argmax())
        timings.update(preprocess=(prepared - detected) * 1e3, model=(done - prepared) * 1e3,
                       total=(done - start) * 1e3)
        return Recognition(self.classes[best], float(averaged[best]), averaged, detection.landmarks,
                           detection.present, detection.wrist, timings)

    def reset(self) -> None:
        """Forget the frames being averaged (a new stream)."""
        self._recent.clear()

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def source_kind(source: str) -> str:
    """``camera`` (an integer), ``video``, ``folder`` or ``image``."""
    if source.isdigit():
        return "camera"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise InputError(f"{source}: no such file or folder (recognize reads an image, a folder, a video or a camera "
                         f"index)")
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def frames(source: str, every: int = 1) -> Iterator[tuple[str, np.ndarray | None, int | None, str | None]]:
    """``(name, RGB frame or None, timestamp_ms, problem)`` of every frame of ``source``; an unreadable image gives
    ``None`` and the reason."""
    import cv2

    from .imageio import ImageReadError, list_images, read_image_rgb

    kind = source_kind(source)
    if kind in ("image", "folder"):
        names = [source] if kind == "image" else [str(Path(source) / name) for name in list_images(source)]
        for name in names:
            try:
                yield name, read_image_rgb(name), None, None
            except ImageReadError as error:
                yield name, None, None, str(error)
        return
    capture = cv2.VideoCapture(int(source) if kind == "camera" else source)
    if not capture.isOpened():
        raise InputError(f"{source}: cannot open the {'camera' if kind == 'camera' else 'video'}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    index = 0
    started = time.monotonic()
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % every == 0:
                # a file's clock is its frame rate; a camera's is the wall clock
                timestamp = int(index * 1000 / fps) if kind == "video" else int((time.monotonic() - started) * 1000)
                yield f"{source}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), timestamp, None
            index += 1
    finally:
        capture.release()


def draw(frame: np.ndarray, recognition: Recognition) -> np.ndarray:
    """The frame (BGR, for OpenCV) with the hand landmarks and the label drawn on it."""
    import cv2

    from .hands.layout import FINGER_CHAINS, PALM_POINTS

    image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    for slot in np.flatnonzero(recognition.present):
        points = ((recognition.landmarks[slot, :, :2] + recognition.wrist[slot, :2]) * [width, height]).astype(int)
        for chain in (*FINGER_CHAINS, PALM_POINTS):  # the bones of each finger, and the knuckles across the palm
            cv2.polylines(image, [points[list(chain)].reshape(-1, 1, 2)], False, (255, 255, 255), 2, cv2.LINE_AA)
        for x, y in points:
            cv2.circle(image, (int(x), int(y)), 3, (0, 255, 0), -1, cv2.LINE_AA)
    text = f"{recognition.label} {recognition.probability:.2f}" if recognition.label is not None else "no hand"
    cv2.putText(image, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
    return image


def recognize_source(recognizer: Recognizer, source: str, output=None, every: int = 1, show: bool = False,
                     max_frames: int | None = None) -> list[dict[str, Any]]:
    """Recognise every frame of ``source``; each result is a dict (``frame`` plus ``Recognition.to_dict()``,
    or ``skipped`` with the reason), written as a JSON line to ``output`` (a text stream) as it comes."""
    results = []
    for count, (name, frame, timestamp, problem) in enumerate(frames(source, every)):
        if max_frames is not None and count >= max_frames:
            break
        if frame is None:
            row: dict[str, Any] = {"frame": name, "skipped": problem}
        else:
            recognition = recognizer.predict(frame, timestamp if recognizer.detector.video else None)
            row = {"frame": name, **recognition.to_dict()}
            if show:
                import cv2

                cv2.imshow("signbridge recognize", draw(frame, recognition))
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):  # Esc or q stops
                    break
        results.append(row)
        if output is not None:
            output.write(json.dumps(row) + "\n")
            output.flush()
    return results


def recognize(source: str, model: str | None = None, models_dir: str = "runs", hand_model: str | None = None,
              output: str | None = None, smooth: int = 1, every: int = 1, max_frames: int | None = None,
              threads: int | None = None, show: bool = False) -> list[dict[str, Any]]:
    """Recognise signs with a trained model: MediaPipe hand landmarks, then the model, for every frame of an image,
    a folder of images, a video file or a camera (an index such as 0). One JSON line per frame (label,
    probability, hands found, milliseconds per stage) on stdout or in ``output``.

    Args:
        source: image file, folder, video file or camera index.
        model: a .ckpt of signbridge fit, or a .onnx/.pt of signbridge export (default: the active model of
            ``models_dir``).
        models_dir: the models folder whose active model is used without ``model``.
        hand_model: hand_landmarker.task (default: as signbridge landmarks finds it).
        output: JSON lines file (default: stdout).
        smooth: average the probabilities over N frames of a stream.
        every: recognise every Nth frame of a video.
        max_frames: stop after this many frames.
        threads: CPU threads of the model (default: all).
        show: draw the landmarks and the label in a window (needs a display; Esc or q stops).

    Returns:
        one dict per frame (``frame`` and ``Recognition.to_dict()``, or ``skipped`` with the reason).
    """
    import contextlib
    import sys

    if model is None:
        from .metadata import active_checkpoint

        model = str(active_checkpoint(models_dir, "recognize"))
    kind = source_kind(source)
    display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if show and not display:
        print("signbridge: no display: --show ignored", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(output, "w")) if output else sys.stdout
        recognizer = stack.enter_context(Recognizer(model, hand_model, video=kind in ("video", "camera"),
                                                    smoothing=smooth, threads=threads))
        return recognize_source(recognizer, source, stream, every, show and display, max_frames)
