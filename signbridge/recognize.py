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
from .hands.video import VIDEO_SUFFIXES
from .inference import InferenceModule, load_predictor, read_contract


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
        if self.contract.reads_sequences:
            raise InputError(f"{path}: a sequence model reads a stream of frames: use SequenceRecognizer")
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


@dataclass
class WindowRecognition:
    """The sign of one window of a stream: ``label`` (None when no hand was found in the window), its smoothed
    probability, the top five, the window's last frame, and milliseconds per stage (``landmarks``: the mean per
    frame; ``model``; ``latency``: from the window's last frame to the decision, its landmarks included)."""

    label: str | None
    probability: float
    probabilities: np.ndarray
    top5: list[tuple[str, float]]
    last_frame: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": round(self.probability, 6), "window_end": self.last_frame,
                "top5": [[name, round(p, 4)] for name, p in self.top5],
                **{f"{stage}_ms": round(ms, 3) for stage, ms in self.timings_ms.items()}}


class SequenceRecognizer:
    """Recognise signs in a stream of frames (a video or a camera) with a sequence classifier: MediaPipe tracks the
    landmarks of every frame (``BodyTracker``), and every ``stride`` frames the last ``window`` frames are classified;
    the probabilities are averaged over the last ``smoothing`` windows.

    Args:
        model: a ``.ckpt`` of a ``SequenceClassifier``, or its ``.onnx`` / ``.pt`` export.
        hand_model: MediaPipe's ``hand_landmarker.task``.
        pose_model: MediaPipe's pose landmarker, for a model that reads the pose (without it the pose is read as
            not found, which costs such a model accuracy: a warning says so).
        face_model: MediaPipe's face landmarker, for a model that reads the face.
        window: frames per window (default: the training sequences' typical length).
        stride: frames between two windows.
        smoothing: windows averaged (1: none).
        mirrored: the stream is mirrored (a selfie camera).
        threads: CPU threads of the model.

    ``push(frame, timestamp_ms)`` takes an ``(H, W, 3)`` uint8 RGB frame and returns a ``WindowRecognition`` when a
    window is complete, else None.
    """

    def __init__(self, model: str | os.PathLike, hand_model: str | os.PathLike | None = None,
                 pose_model: str | None = None, face_model: str | None = None, window: int | None = None,
                 stride: int = 5, smoothing: int = 1, mirrored: bool = False, threads: int | None = None):
        import logging

        from .hands.sequence import PART_SIZES, part_slices
        from .hands.video import BodyTracker

        path = Path(model)
        self.model = load_predictor(path, threads)
        self.contract = self.model.contract
        self._check_model(path)
        sequence = self.contract.preprocessing.get("sequence", {})
        self.parts = tuple(sequence.get("parts") or ())
        self.window = self._default_window(sequence) if window is None else int(window)
        if self.window < 0 or (self.window == 0 and not self.whole_streams) or stride < 1:
            raise InputError(f"window and stride must be at least 1 frame, got {self.window} and {stride}")
        self.stride, self.smoothing = stride, max(1, smoothing)
        self.classes = list(self.contract.classes)
        settings = self.contract.preprocessing.get("hands")
        self._tracker_arguments = (hand_model, DetectorSettings(**settings) if settings else None,
                                   pose_model if "pose" in self.parts else None,
                                   face_model if "face" in self.parts else None, mirrored)
        self.tracker = BodyTracker(*self._tracker_arguments)
        unseen = [name for name in self.parts if name not in self.tracker.parts]
        if unseen:
            logging.getLogger(__name__).warning(
                "the model reads %s, which is not tracked without its MediaPipe model file (pose_model / face_model): "
                "read as not found", ", ".join(unseen))
        # where each of the tracker's parts goes in the model's layout
        model_slices, tracker_slices = part_slices(self.parts), part_slices(self.tracker.parts)
        self._copy = [(tracker_slices[name], model_slices[name], self.tracker.parts.index(name),
                       self.parts.index(name)) for name in self.parts if name in tracker_slices]
        self._points_per_frame = sum(PART_SIZES[name] for name in self.parts)
        self._frames: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=self.window or None)
        self._recent: deque[np.ndarray] = deque(maxlen=self.smoothing)
        self._count = 0

    whole_streams = False  # window 0 (a whole stream at once) is not a classifier's

    def _check_model(self, path: Path) -> None:
        if not self.contract.reads_sequences:
            raise InputError(f"{path}: not a sequence model (it reads {', '.join(self.contract.input_names)}): use "
                             "Recognizer")

    @staticmethod
    def _default_window(sequence: dict[str, Any]) -> int:
        return int(sequence.get("typical_frames") or sequence.get("max_frames") or 30)

    def use_classes(self, names: list[str] | None) -> None:
        """Score these class names from now on (a text-aligned checkpoint, ``TextAlignedSequenceClassifier``); None:
        the classes it was trained on."""
        task = getattr(self.model, "task", None)
        if not hasattr(task, "use_classes"):
            raise InputError("only a text-aligned checkpoint (.ckpt) scores other class names; this model scores "
                             f"{len(self.classes)} fixed classes")
        assert task is not None and isinstance(self.model, InferenceModule)
        task.use_classes(list(names) if names else list(task.training_names or self.classes))
        self.contract = self.model.contract = task.inference_contract()
        self.classes = list(self.contract.classes)
        self._recent.clear()

    def push(self, frame: np.ndarray, timestamp_ms: int) -> StreamRecognition | None:
        """Track one frame; classify the window when ``stride`` frames have come since the last one."""
        start = time.perf_counter()
        tracked, found, _ = self.tracker.track(frame, timestamp_ms)
        points = np.zeros((self._points_per_frame, 3), np.float32)
        present = np.zeros(len(self.parts), bool)
        for source, target, source_part, target_part in self._copy:
            points[target] = tracked[source]
            present[target_part] = found[source_part]
        self._frames.append((points, present, (time.perf_counter() - start) * 1e3))
        self._count += 1
        if not self.window or len(self._frames) < self.window or (self._count - self.window) % self.stride:
            return None
        return self._classify(start)

    def _classify(self, frame_start: float) -> StreamRecognition:
        points = np.stack([f[0] for f in self._frames])
        present = np.stack([f[1] for f in self._frames])
        return self._classify_arrays(points, present, float(np.mean([f[2] for f in self._frames])), frame_start,
                                     smooth=True)

    def _model_inputs(self, points: np.ndarray, present: np.ndarray) -> dict[str, Any]:
        import torch

        return {"points": torch.from_numpy(points)[None], "present": torch.from_numpy(present)[None],
                "mask": torch.ones((1, len(points)), dtype=torch.bool)}

    def _classify_arrays(self, points: np.ndarray, present: np.ndarray, landmarks_ms: float, frame_start: float,
                         smooth: bool) -> StreamRecognition:
        before = time.perf_counter()
        if not present.any():
            self._recent.clear()
            return WindowRecognition(None, 0.0, np.zeros(len(self.classes), np.float32), [], self._count - 1,
                                     {"landmarks": landmarks_ms, "model": 0.0,
                                      "latency": (before - frame_start) * 1e3})
        probabilities = self.model.probabilities(self._model_inputs(points, present))[0]
        done = time.perf_counter()
        if smooth:
            self._recent.append(probabilities)
        averaged = np.mean(self._recent, axis=0) if smooth else probabilities
        order = np.argsort(-averaged)[:5]
        top5 = [(self.classes[i], float(averaged[i])) for i in order]
        return WindowRecognition(top5[0][0], top5[0][1], averaged, top5, self._count - 1,
                                 {"landmarks": landmarks_ms, "model": (done - before) * 1e3,
                                  "latency": (done - frame_start) * 1e3})

    def classify_window(self) -> StreamRecognition | None:
        """Classify the frames the window holds now, however few (the end of a stream shorter than one window);
        None before the first frame."""
        return self._classify(time.perf_counter()) if self._frames else None

    def reset(self) -> None:
        """Forget the frames and windows and restart the tracking (a new stream: MediaPipe's VIDEO mode needs
        increasing timestamps, and a fresh tracker gives a clip the same landmarks every time)."""
        from .hands.video import BodyTracker

        self._frames.clear()
        self._recent.clear()
        self._count = 0
        self.tracker.close()
        self.tracker = BodyTracker(*self._tracker_arguments)

    def classify_video(self, path: str | os.PathLike, keep_frames: int = 4) -> VideoRecognition:
        """The sign of a whole video file (its frames sampled evenly down to the training ``max_frames``, as the
        training sequences were), the sliding windows' results, and what was tracked."""
        from .data.sequences import even_frames
        from .hands.video import video_frames

        self.reset()
        fps, total, frames = video_frames(path)
        shown = set(even_frames(total, keep_frames).tolist()) if total else set(range(keep_frames))
        windows: list[StreamRecognition] = []
        points, present, kept = [], [], {}
        for index, (timestamp, frame) in enumerate(frames):
            window = self.push(frame, timestamp)
            if window is not None:
                windows.append(window)
            points.append(self._frames[-1][0])
            present.append(self._frames[-1][1])
            if index in shown:
                kept[index] = frame
        if not points:
            raise InputError(f"{path}: no frame of the video could be decoded")
        start = time.perf_counter()
        all_points, all_present = np.stack(points), np.stack(present)
        sampled = self._clip_frames(len(all_points))
        whole = self._classify_arrays(all_points[sampled], all_present[sampled],
                                      float(np.mean([f[2] for f in self._frames])), start, smooth=False)
        return VideoRecognition(whole, windows, all_points, all_present, fps, kept)

    def _clip_frames(self, count: int) -> np.ndarray:
        """The frames of a whole clip the model reads: sampled evenly down to the training ``max_frames``."""
        from .data.sequences import even_frames

        return even_frames(count, int(self.contract.preprocessing.get("sequence", {}).get("max_frames") or count))

    def close(self) -> None:
        self.tracker.close()

    def __enter__(self) -> SequenceRecognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class SentenceRecognition:
    """The glosses of a stretch of continuous signing (a whole video, or a window of a stream), CTC-decoded
    greedily, and the ``sentence`` they make in words (the model's gloss-to-words mapping); ``label`` (the
    sentence) is None when no hand was found in it."""

    glosses: list[str]
    sentence: str
    last_frame: int
    frames: int
    hand_found: bool
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        return self.sentence if self.hand_found else None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "glosses": " ".join(self.glosses), "sentence": self.sentence,
                "frames": self.frames, "window_end": self.last_frame,
                **{f"{stage}_ms": round(ms, 3) for stage, ms in self.timings_ms.items()}}


class SentenceRecognizer(SequenceRecognizer):
    """Continuous signing to glosses with a ``ContinuousSignRecognizer`` trained on tracked landmarks (sentences
    stitched from isolated signs): MediaPipe tracks every frame as ``SequenceRecognizer`` does, each frame becomes
    the model's features (``hands.sequence.sentence_features``), and the CTC output is decoded greedily.

    With ``window`` 0 (the default for a video file) ``push`` never decides: ``classify_window`` decodes everything
    pushed since the last ``reset`` (the whole video); with a window (a camera) every ``stride`` frames the last
    ``window`` frames are decoded. Other arguments as ``SequenceRecognizer``'s (``smoothing`` is not used).
    """

    whole_streams = True

    def _check_model(self, path: Path) -> None:
        if not self.contract.reads_sentences:
            raise InputError(f"{path}: not a continuous sign recognizer (it reads "
                             f"{', '.join(self.contract.input_names)})")
        if not self.contract.tracks_sentences:
            source = self.contract.preprocessing.get("sentence", {}).get("source", "features signbridge cannot track")
            raise InputError(f"{path}: this model reads {source}, which MediaPipe tracking of a video does not give; "
                             "train it on sentences of tracked landmarks (SentenceDataModule on a folder of signs) "
                             "to recognise videos")
        self.words: dict[str, str] = dict(self.contract.preprocessing.get("gloss_words") or {})

    @staticmethod
    def _default_window(sequence: dict[str, Any]) -> int:
        return 0

    def _model_inputs(self, points: np.ndarray, present: np.ndarray) -> dict[str, Any]:
        import torch

        from .hands.sequence import sentence_features

        return {"features": torch.from_numpy(sentence_features(points, present))[None],
                "mask": torch.ones((1, len(points)), dtype=torch.bool)}

    def _classify_arrays(self, points: np.ndarray, present: np.ndarray, landmarks_ms: float, frame_start: float,
                         smooth: bool) -> SentenceRecognition:
        import torch

        from .ctc import gloss_sentence, greedy_paths

        before = time.perf_counter()
        glosses: list[str] = []
        hand_found = bool(present.any())
        if hand_found:
            probabilities = self.model.probabilities(self._model_inputs(points, present))
            glosses = [self.classes[i - 1] for i in greedy_paths(torch.from_numpy(probabilities))[0]]
        done = time.perf_counter()
        return SentenceRecognition(glosses, gloss_sentence(glosses, self.words), self._count - 1, len(points),
                                   hand_found,
                                   {"landmarks": landmarks_ms, "model": (done - before) * 1e3,
                                    "latency": (done - frame_start) * 1e3})

    def _clip_frames(self, count: int) -> np.ndarray:
        return np.arange(count)  # a sentence is read at the video's own frame rate, as its signs were


StreamRecognition = WindowRecognition | SentenceRecognition  # what a stream recognizer decides


@dataclass
class VideoRecognition:
    """``SequenceRecognizer.classify_video``: the sign of the whole clip, each sliding window's result, the tracked
    ``points (frames, P, 3)`` and ``present (frames, parts)`` in the model's layout, the frame rate, and a few
    frames (index -> RGB) to show."""

    clip: StreamRecognition
    windows: list[StreamRecognition]
    points: np.ndarray
    present: np.ndarray
    fps: float
    frames: dict[int, np.ndarray]


def draw_points(frame: np.ndarray, points: np.ndarray, present: np.ndarray, parts: tuple[str, ...]) -> np.ndarray:
    """A frame (RGB) with one frame's sequence landmarks drawn on it: the hands' points and bones, the pose points."""
    import cv2

    from .hands.layout import FINGER_CHAINS
    from .hands.sequence import part_slices

    image = frame.copy()
    height, width = image.shape[:2]
    colours = {"left_hand": (0, 200, 255), "right_hand": (255, 80, 0), "pose": (255, 255, 255), "face": (160, 160, 160)}
    for index, (name, where) in enumerate(part_slices(parts).items()):
        if not present[index]:
            continue
        xy = (points[where, :2] * [width, height]).astype(int)
        if name.endswith("hand"):
            for chain in FINGER_CHAINS:
                cv2.polylines(image, [xy[list(chain)].reshape(-1, 1, 2)], False, colours[name], 2, cv2.LINE_AA)
        for x, y in xy:
            cv2.circle(image, (int(x), int(y)), 2 if name == "face" else 3, colours[name], -1, cv2.LINE_AA)
    return image


def recognize_stream(recognizer: SequenceRecognizer, source: str, output=None, max_frames: int | None = None
                     ) -> list[dict[str, Any]]:
    """Classify the sliding windows of a video file or camera; one dict per window (``frame`` of its last frame and
    ``WindowRecognition.to_dict()``), written as a JSON line to ``output`` as it comes. A video shorter than the
    window is classified once, whole."""
    kind = source_kind(source)
    if kind not in ("video", "camera"):
        raise InputError(f"{source}: a sequence model reads a video or a camera, not "
                         f"{'an image' if kind == 'image' else 'a folder'}")
    results: list[dict[str, Any]] = []

    def emit(frame_name: str, recognition: StreamRecognition | None) -> None:
        if recognition is not None:
            results.append({"frame": frame_name, **recognition.to_dict()})
            if output is not None:
                output.write(json.dumps(results[-1]) + "\n")
                output.flush()

    name = source
    for count, (name, frame, timestamp, _) in enumerate(frames(source)):
        if max_frames is not None and count >= max_frames:
            break
        if frame is not None:  # frames of a video or camera are never None
            emit(name, recognizer.push(frame, int(timestamp or 0)))
    if not results:  # shorter than one window: the clip is the window
        emit(name, recognizer.classify_window())
    return results


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
    from .hands.video import video_frames
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
    _, _, stream = video_frames(int(source) if kind == "camera" else source)
    for index, (timestamp, frame) in enumerate(stream):
        if index % every == 0:
            yield f"{source}#{index}", frame, timestamp, None


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
              threads: int | None = None, show: bool = False, window: int | None = None, stride: int = 5,
              pose_model: str | None = None, face_model: str | None = None,
              mirrored: bool = False) -> list[dict[str, Any]]:
    """Recognise signs with a trained model: MediaPipe hand landmarks, then the model, for every frame of an image,
    a folder of images, a video file or a camera (an index such as 0). One JSON line per frame (label,
    probability, hands found, milliseconds per stage) on stdout or in ``output``; a sequence model gives one per
    sliding window, a continuous (sentence) model the glosses and sentence of a whole video (or of each window of
    a camera).

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
        window: a sequence model: frames per sliding window (default: the training sequences' typical length); a
            continuous (sentence) model: 0 decodes a whole video at once (the default for a video file; a camera's
            default is the training sentences' median length).
        stride: a sequence model: frames between two windows.
        pose_model: a sequence model that reads the pose: MediaPipe's pose landmarker ``.task``.
        face_model: a sequence model that reads the face: MediaPipe's face landmarker ``.task``.
        mirrored: a sequence model: the stream is mirrored (a selfie camera).

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
    if output:
        from .files import check_writable, is_text_output

        check_writable(output, "recognitions file", inputs=[model, *([source] if kind != "camera" else [])],
                       data_roots=[source] if kind == "folder" else [], own=is_text_output('{"frame"'))
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(output, "w")) if output else sys.stdout
        contract = read_contract(model)
        if contract.reads_sentences:  # continuous signing: a video decoded whole, a camera in windows
            if window is None and kind == "camera":
                window = int(contract.preprocessing.get("sequence", {}).get("sentence_frames") or 90)
            sentences = stack.enter_context(SentenceRecognizer(model, hand_model, pose_model, face_model, window,
                                                               stride, 1, mirrored, threads))
            return recognize_stream(sentences, source, stream, max_frames)
        if contract.reads_sequences:
            sequence = stack.enter_context(SequenceRecognizer(model, hand_model, pose_model, face_model, window,
                                                              stride, smooth, mirrored, threads))
            return recognize_stream(sequence, source, stream, max_frames)
        recognizer = stack.enter_context(Recognizer(model, hand_model, video=kind in ("video", "camera"),
                                                    smoothing=smooth, threads=threads))
        return recognize_source(recognizer, source, stream, every, show and display, max_frames)
