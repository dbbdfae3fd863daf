"""Landmark sequences from a folder-per-class dataset of sign videos or of per-frame ``.npy`` folders: the listing,
MediaPipe tracking of a video (``BodyTracker``), and the resumable, parallel, shardable extraction into one sequence
cache (``extract_sequences``, ``merge_sequence_caches``; ``signbridge sequences extract|merge``)."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import check_writable, is_signbridge_npz, sha256_of
from ..imageio import first_few, natural_key, skipped_name
from .cache import default_cache_path, failure_reason, previous_cache, stale_reason, worker_results
from .detect import DetectorSettings, HandDetection
from .model_file import resolve_hand_landmarker
from .sequence import (
    PART_SIZES,
    POSE_FROM_HOLISTIC,
    SEQUENCE_CACHE_FORMAT,
    SequenceCache,
    ordered_parts,
    part_slices,
    read_npy_sequence,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
# the hand slot of HandDetection (MediaPipe's handedness label, which assumes a mirrored image) -> the signer's hand
# in an unmirrored video: the hand MediaPipe calls "Right" is the signer's left
HAND_PART_OF_SLOT = ("left_hand", "right_hand")


def list_sequence_folder(root: str | os.PathLike) -> tuple[list[str], list[str], list[int], str]:
    """List a folder-per-class sequence dataset: ``root/<class>/<sequence>/<frame>.npy`` folders or
    ``root/<class>/<video>`` files.

    Returns:
        ``(classes, paths, labels, source)``: class names in natural order, sequence paths relative to ``root``
        (a folder or a video file; natural order), their class indices, and ``npy`` or ``video``.
    Raises:
        InputError: no class folders, a class without sequences, or a dataset that mixes both forms.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: the data root is not a folder")
    classes = sorted((d.name for d in root.iterdir() if d.is_dir() and not skipped_name(d.name)), key=natural_key)
    if not classes:
        raise InputError(f"{root}: no class folders found (expected ROOT/<class>/<sequence>/<frame>.npy or "
                         "ROOT/<class>/<video>)")
    paths, labels, sources, empty, dangling = [], [], set(), [], []
    for label, name in enumerate(classes):
        found = []
        for entry in sorted((root / name).iterdir(), key=lambda path: natural_key(path.name)):
            if skipped_name(entry.name):
                continue
            if entry.is_symlink() and not entry.exists():  # a link to nothing: said, not silently dropped
                dangling.append(entry.relative_to(root).as_posix())
                continue
            if entry.is_dir() and any(child.suffix == ".npy" for child in entry.iterdir()):
                found.append(entry.relative_to(root).as_posix())
                sources.add("npy")
            elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
                found.append(entry.relative_to(root).as_posix())
                sources.add("video")
        paths += found
        labels += [label] * len(found)
        if not found:
            empty.append(name)
    if dangling:
        log.warning("%s: skipped %d links to nothing: %s", root, len(dangling), first_few(dangling))
    if len(sources) > 1:
        raise InputError(f"{root}: the classes hold both .npy sequence folders and videos; keep one form per dataset")
    if empty:
        raise InputError(f"{root}: class folders without sequences: {', '.join(empty[:10])} (a sequence is a folder "
                         f"of .npy frames or a video: {', '.join(sorted(VIDEO_SUFFIXES))})")
    return classes, paths, labels, sources.pop()


def list_sequences(root: str | os.PathLike) -> tuple[list[str], str]:
    """Every sequence below ``root`` in any layout (folders of ``.npy`` frames and video files, at any depth),
    relative with ``/``, in natural order, and their form (``npy`` or ``video``): what ``predict`` reads."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of sequences")
    paths, sources = [], set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not skipped_name(d)]
        folder = Path(dirpath)
        if any(name.endswith(".npy") and not name.startswith(".") for name in filenames) and folder != root:
            paths.append(folder.relative_to(root).as_posix())
            sources.add("npy")
            dirnames[:] = []
            continue
        for name in filenames:
            if not skipped_name(name) and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                paths.append((folder / name).relative_to(root).as_posix())
                sources.add("video")
    if not paths:
        raise InputError(f"{root}: no sequences found (folders of .npy frames, or videos)")
    if len(sources) > 1:
        raise InputError(f"{root}: holds both .npy sequence folders and videos; keep one form per folder")
    return sorted(paths, key=natural_key), sources.pop()


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``"K/N"`` as ``(K, N)`` with ``0 <= K < N``; an ``InputError`` otherwise."""
    if shard is None:
        return None
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard {shard}: expected K/N, e.g. 0/4 (shard K of N, K from 0)") from None
    if not 0 <= index < count:
        raise InputError(f"--shard {shard}: K must be in 0..N-1 (0/{count} to {count - 1}/{count})")
    return index, count


# ---------------------------------------------------------------------------------------------------------------
# tracking a video


class BodyTracker:
    """MediaPipe landmarkers in VIDEO mode over the frames of one stream (a video file or a camera), giving each frame
    in the sequence layout (``hands.sequence``): the hands always; the pose (its 11 upper-body points) and the face
    when their ``.task`` model files are given.

    Hands go to ``left_hand``/``right_hand`` by MediaPipe's handedness label for an unmirrored video (``mirrored``:
    a selfie view); with a pose, by which of the pose's wrists is nearer, which does not depend on that label.
    """

    def __init__(self, hand_model: str | os.PathLike | None = None, settings: DetectorSettings | None = None,
                 pose_model: str | os.PathLike | None = None, face_model: str | os.PathLike | None = None,
                 mirrored: bool = False):
        from .detect import HandDetector

        self.hands = HandDetector(hand_model, settings, video=True)
        self.mirrored = mirrored
        self.pose = self.face = None
        from mediapipe.tasks.python import BaseOptions, vision

        if pose_model is not None:
            self.pose = vision.PoseLandmarker.create_from_options(vision.PoseLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(pose_model)), running_mode=vision.RunningMode.VIDEO))
        if face_model is not None:
            self.face = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(face_model)), running_mode=vision.RunningMode.VIDEO))
        self.parts = ordered_parts(["left_hand", "right_hand"] + ["pose"] * (self.pose is not None)
                                   + ["face"] * (self.face is not None))
        self.slices = part_slices(self.parts)

    def track(self, frame_rgb: np.ndarray, timestamp_ms: int) -> tuple[np.ndarray, np.ndarray, HandDetection]:
        """One ``(H, W, 3)`` uint8 RGB frame as ``points (P, 3)``, ``present (parts,)`` and the hand detection."""
        import mediapipe as mp

        points = np.zeros((sum(PART_SIZES[name] for name in self.parts), 3), np.float32)
        present = np.zeros(len(self.parts), bool)
        detection = self.hands.detect(frame_rgb, timestamp_ms)
        image = None
        if self.pose is not None or self.face is not None:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame_rgb))
        wrists = None
        if self.pose is not None:
            result = self.pose.detect_for_video(image, int(timestamp_ms))
            if result.pose_landmarks:
                every = np.array([[p.x, p.y, p.z] for p in result.pose_landmarks[0]], np.float32)
                pose = every[list(POSE_FROM_HOLISTIC)]
                points[self.slices["pose"]] = pose
                present[self.parts.index("pose")] = True
                wrists = pose[[5, 6], :2]  # the signer's left and right wrist
        if self.face is not None:
            result = self.face.detect_for_video(image, int(timestamp_ms))
            if result.face_landmarks:
                points[self.slices["face"]] = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]][:468],
                                                       np.float32)
                present[self.parts.index("face")] = True
        for slot, part in self._hand_parts(detection, wrists):
            points[self.slices[part]] = detection.landmarks[slot] + detection.wrist[slot]
            present[self.parts.index(part)] = True
        return points, present, detection

    def _hand_parts(self, detection: HandDetection, wrists: np.ndarray | None) -> list[tuple[int, str]]:
        slots = [int(slot) for slot in np.flatnonzero(detection.present)]
        if wrists is not None and slots:
            # every assignment of the found hands to the two pose wrists; the nearest in total wins
            options = [[(slot, part) for slot, part in zip(slots, order)]
                       for order in (HAND_PART_OF_SLOT, HAND_PART_OF_SLOT[::-1])]
            index = {"left_hand": 0, "right_hand": 1}
            return min(options, key=lambda pairs: sum(
                float(np.linalg.norm(detection.wrist[slot, :2] - wrists[index[part]])) for slot, part in pairs))
        names = HAND_PART_OF_SLOT[::-1] if self.mirrored else HAND_PART_OF_SLOT
        return [(slot, names[slot]) for slot in slots]

    def close(self) -> None:
        self.hands.close()
        for landmarker in (self.pose, self.face):
            if landmarker is not None:
                landmarker.close()

    def __enter__(self) -> BodyTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def video_frames(path: str | os.PathLike | int):
    """``(fps, frame count, iterator of (timestamp_ms, RGB frame))`` of a video file or, for an ``int``, a camera
    (whose frame count is 0); an ``InputError`` naming it when it cannot be opened. A file's clock is its frame
    rate, a camera's the wall clock."""
    import cv2

    camera = isinstance(path, int)
    capture = cv2.VideoCapture(path if camera else str(path))
    if not capture.isOpened():
        capture.release()
        raise InputError(f"{path}: cannot open the camera" if camera else
                         f"{path}: cannot open the video (not a video, or a codec OpenCV lacks)")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if 0 < fps < 1000 else 30.0
    count = 0 if camera else int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read():
        index, started = 0, time.monotonic()
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                timestamp = int((time.monotonic() - started) * 1000) if camera else int(index * 1000 / fps)
                yield timestamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()

    return fps, count, read()


def track_video(path: str | os.PathLike, tracker_settings: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """Every frame of a video file through a fresh ``BodyTracker``: ``(points, present, fps)``; an ``InputError``
    for a video without one decodable frame."""
    fps, _, frames = video_frames(path)
    points, present = [], []
    with BodyTracker(**tracker_settings) as tracker:
        for timestamp, frame in frames:
            frame_points, frame_present, _ = tracker.track(frame, timestamp)
            points.append(frame_points)
            present.append(frame_present)
    if not points:
        raise InputError(f"{path}: no frame of the video could be decoded")
    return np.stack(points), np.stack(present), fps


# ---------------------------------------------------------------------------------------------------------------
# extraction

_worker_settings: dict = {}


def _init_sequence_worker(source: str, parts: list[str] | None, tracker: dict, parent_pid: int | None) -> None:
    from ..signals import die_with_parent

    if parent_pid is not None:
        die_with_parent(parent_pid)
    _worker_settings.update(source=source, parts=parts, tracker=tracker)


def _read_one(job: tuple[str, str]) -> tuple[str, np.ndarray | None, np.ndarray | None, float, int, str | None]:
    """``(path, points, present, fps, bytes, failure)`` of one sequence."""
    root, relative = job
    path = Path(root) / relative
    try:
        if _worker_settings["source"] == "npy":
            points, present, kept, size = read_npy_sequence(path, _worker_settings["parts"])
            if _worker_settings["parts"] is None or list(kept) != list(_worker_settings["parts"]):
                raise InputError(f"{path}: its frames hold the parts {list(kept)}, the dataset's first sequence "
                                 f"{_worker_settings['parts']}")
            return relative, points, present, 0.0, size, None
        points, present, fps = track_video(path, _worker_settings["tracker"])
        return relative, points, present, fps, path.stat().st_size, None
    except Exception as error:  # one bad sequence is reported and skipped; it must not stop the run
        return relative, None, None, 0.0, 0, failure_reason(error, path)


@dataclass
class SequenceSummary:
    """What ``extract_sequences`` did: sequences and frames per class, with how many frames had each part."""

    root: str
    output: str
    source: str
    parts: list[str]
    classes: list[str]
    sequences: int
    read: int
    reused: int
    seconds: float
    skipped: dict[str, str]
    per_class: dict[str, Counter]
    shard: str | None = None

    def format(self) -> str:
        rate = f" ({self.read / self.seconds:.1f} sequences/s)" if self.read and self.seconds > 0 else ""
        lines = [f"landmark sequences of {self.root} ({self.source}{', shard ' + self.shard if self.shard else ''}) "
                 f"-> {self.output}",
                 f"{self.sequences} sequences: {self.read} read now, {self.reused} reused from the cache, "
                 f"{len(self.skipped)} skipped, in {self.seconds:.1f} s{rate}; parts: {', '.join(self.parts)}"]
        columns = ["sequences", "frames", *[f"{part}%" for part in self.parts], "skipped"]
        header = f"{'class':<16}" + "".join(f"{name:>12}" for name in columns)
        lines += ["", header, "-" * len(header)]
        for name in self.classes:
            c = self.per_class.get(name, Counter())
            shares = [f"{100 * c[part] / c['frames']:.0f}" if c["frames"] else "-" for part in self.parts]
            lines.append(f"{name:<16}" + "".join(f"{value:>12}" for value in
                                                 [c["sequences"], c["frames"], *shares, c["skipped"]]))
        if self.skipped:
            lines += ["", "skipped sequences:"] + [f"  {path}: {why}" for path, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def sequence_fingerprint(source: str, parts: list[str] | None, tracker: dict) -> dict:
    """What makes two sequence caches of one dataset comparable: the reader (``npy``: the parts asked for; videos:
    the model files, detector settings and mirroring)."""
    if source == "npy":
        return {"source": "npy", "requested_parts": parts}
    models = {name: sha256_of(tracker[name]) if tracker.get(name) else None
              for name in ("hand_model", "pose_model", "face_model")}
    return {"source": "video", "models_sha256": models, "detector": tracker["settings"].to_dict(),
            "mirrored": tracker["mirrored"]}


def sequence_cache_problem(path: str | os.PathLike, root: str | os.PathLike, paths: list[str],
                           fingerprint: dict) -> str | None:
    """Why the sequence cache at ``path`` cannot serve the sequences ``paths`` of ``root``, or None."""
    path = Path(path)
    if not path.exists():
        return "it does not exist"
    try:
        cache = SequenceCache.load(path)
    except InputError as error:
        return str(error)
    return stale_reason(cache, fingerprint, SEQUENCE_CACHE_FORMAT) or _coverage(cache, Path(root), paths)


def _coverage(cache: SequenceCache, root: Path, paths: list[str]) -> str | None:
    if not cache.meta.get("complete"):
        return "the cache is incomplete (an interrupted extraction, or one shard: merge the shards)"
    sizes = dict(zip(cache.paths.tolist(), cache.file_size.tolist()))
    skipped = set(cache.meta.get("skipped", {}))
    missing = [p for p in paths if p not in sizes and p not in skipped]
    if missing:
        return f"{len(missing)} sequences not in the cache (e.g. {missing[0]})"
    changed = [p for p in paths if p in sizes and _size_of(root / p) != sizes[p]]
    if changed:
        return f"{len(changed)} sequences changed (e.g. {changed[0]})"
    return None


def _size_of(path: Path) -> int:
    """Bytes of a video, or of the ``.npy`` frames of a sequence folder."""
    if path.is_dir():
        return sum(child.stat().st_size for child in path.iterdir() if child.suffix == ".npy"
                   and not child.name.startswith("."))
    return path.stat().st_size


def tracker_settings(hand_model: str | os.PathLike | None = None, settings: DetectorSettings | None = None,
                     pose_model: str | None = None, face_model: str | None = None,
                     mirrored: bool = False) -> dict:
    """The ``BodyTracker`` arguments of an extraction, with the hand model file resolved."""
    for name, model in (("pose_model", pose_model), ("face_model", face_model)):
        if model is not None and not Path(model).is_file():
            raise InputError(f"{model}: the {name.replace('_', ' ')} file does not exist")
    return {"hand_model": str(resolve_hand_landmarker(hand_model)), "settings": settings or DetectorSettings(),
            "pose_model": pose_model, "face_model": face_model, "mirrored": mirrored}


def extract_sequences(
    root: str | os.PathLike,
    output: str | os.PathLike | None = None,
    parts: list[str] | None = None,
    hand_model: str | None = None,
    pose_model: str | None = None,
    face_model: str | None = None,
    settings: DetectorSettings = DetectorSettings(),
    mirrored: bool = False,
    shard: str | None = None,
    workers: int | None = None,
    checkpoint_seconds: float = 30.0,
    progress: bool = True,
    paths: list[str] | None = None,
) -> SequenceSummary:
    """Read the landmark sequences of a folder-per-class dataset into one sequence cache.

    The dataset is ``ROOT/<class>/<sequence>/<frame>.npy`` (per-frame MediaPipe vectors of a known layout, recognised
    by their length: 126, 170, 258 or Holistic's 1662) or ``ROOT/<class>/<video>`` (mp4, avi, mov, mkv, webm: the
    hands are tracked with MediaPipe in VIDEO mode, the pose and the face too when their model files are given).
    Resumable: progress is saved atomically every ``checkpoint_seconds``, and a rerun reuses every sequence
    already in the cache whose files are unchanged. A sequence that cannot be read is reported and skipped.

    Args:
        root: the dataset folder.
        output: the cache file (.npz); default: the one the sequence datamodule uses for ``root`` (with a shard:
            that name with ``.shard-K-of-N`` added).
        parts: the parts to keep (``pose``, ``left_hand``, ``right_hand``, ``face``); default: all the data has but
            the face.
        hand_model: MediaPipe's ``hand_landmarker.task`` (videos).
        pose_model: MediaPipe's ``pose_landmarker*.task``, to track the pose of videos too.
        face_model: MediaPipe's ``face_landmarker.task``, to track the face of videos too.
        settings: the hand detector's settings (videos).
        mirrored: the videos are mirrored (a selfie camera): MediaPipe's hand labels are then the signer's own.
        shard: ``K/N``: read only every N-th sequence of the sorted listing, from the K-th (0-based), so N
            processes or machines (e.g. a Slurm array, ``K=$SLURM_ARRAY_TASK_ID``) share the work; then
            ``signbridge sequences merge`` joins their files.
        workers: processes (default: one per core; 0: this process).
        checkpoint_seconds: save the progress at most this often (and when stopped).
        progress: show a progress bar.
        paths: sequence paths relative to ``root`` (any layout, e.g. a predict folder); default: the
            folder-per-class listing of ``root``. With a list, the summary groups sequences by their parent folder.
    """
    start = time.perf_counter()
    root = Path(root)
    if paths is None:
        classes, paths, labels, source = list_sequence_folder(root)
    else:
        source = "video" if paths and Path(paths[0]).suffix.lower() in VIDEO_SUFFIXES else "npy"
        classes = sorted({str(Path(p).parent) for p in paths}, key=natural_key)
        labels = [classes.index(str(Path(p).parent)) for p in paths]
    selected = parse_shard(shard)
    if selected is not None:
        kept = [i for i in range(len(paths)) if i % selected[1] == selected[0]]
        paths, labels = [paths[i] for i in kept], [labels[i] for i in kept]
    default = default_cache_path(root, "sequences")
    if selected is not None:
        default = default.with_name(f"{default.stem}.shard-{selected[0]}-of-{selected[1]}.npz")
    output = Path(output) if output is not None else default
    check_writable(output, "sequence cache", inputs=[m for m in (hand_model, pose_model, face_model) if m],
                   data_roots=[root], own=is_signbridge_npz)
    tracker = tracker_settings(hand_model, settings, pose_model, face_model, mirrored) if source == "video" else {}
    requested = list(ordered_parts(parts)) if parts is not None else None
    if source == "npy":
        # the parts are those of the first sequence's vectors; every other sequence must hold the same
        first = read_npy_sequence(root / paths[0], requested)[2] if paths else ()
        parts = list(first)
    else:
        available = ["left_hand", "right_hand"] + ["pose"] * bool(pose_model) + ["face"] * bool(face_model)
        parts = [name for name in ordered_parts(available) if requested is None or name in requested]
    fingerprint = sequence_fingerprint(source, requested, tracker)
    done, stale = _reusable(output, root, paths, fingerprint, parts)
    reused = len(done)
    todo = [p for p in paths if p not in done]
    skipped: dict[str, str] = {}
    meta = {"format": SEQUENCE_CACHE_FORMAT, **fingerprint, "dataset_root": str(root.resolve()), "shard": shard,
            "shard_paths": len(paths)}
    if source == "video":
        import mediapipe

        meta["mediapipe_version"] = mediapipe.__version__

    def write(complete: bool) -> None:
        rows = [done[p] for p in paths if p in done]
        stamp = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "complete": complete}
        SequenceCache.from_rows(rows, parts, {**meta, **stamp, "skipped": skipped}).save(output)

    since_checkpoint, saved_at = 0, time.monotonic()
    if stale:
        log.warning("not reusing %s: %s", output, stale)
    jobs = [(str(root), p) for p in todo]
    initargs = (source, parts if source == "npy" else None, tracker)
    if source == "npy" and workers is None:
        workers = 0 if len(jobs) < 2000 else None  # small files: a pool costs more than it saves
    with worker_results(_read_one, jobs, _init_sequence_worker, initargs, workers, progress,
                        "landmark sequences", "seq") as results:
        try:
            for relative, points, present, fps, size, failure in results:
                if points is None:
                    skipped[relative] = failure or "unreadable"
                else:
                    done[relative] = (relative, points, present, fps, size)
                since_checkpoint += 1
                if time.monotonic() - saved_at >= checkpoint_seconds:
                    write(complete=False)
                    since_checkpoint, saved_at = 0, time.monotonic()
        except BaseException:
            if since_checkpoint:
                write(complete=False)  # keep what was done, e.g. on Ctrl-C or SIGTERM
            raise
    write(complete=True)
    return SequenceSummary(str(root), str(output), source, list(parts), classes, len(paths), len(todo) - len(skipped),
                           reused, time.perf_counter() - start, skipped,
                           _per_class(classes, paths, labels, done, skipped, parts), shard)


def _reusable(output: Path, root: Path, paths: list[str], fingerprint: dict,
              parts: list[str]) -> tuple[dict[str, tuple], str | None]:
    """The still valid rows of an existing cache at ``output`` (same reader, same parts, unchanged files), and why
    the rest is not reused."""
    if not output.exists():
        return {}, None
    previous = previous_cache(output, paths, SequenceCache.load, "sequence", "sequences")
    if previous is None:
        return {}, "it was unreadable"
    stale = stale_reason(previous, fingerprint, SEQUENCE_CACHE_FORMAT)
    if stale is None and list(previous.parts) != list(parts):
        stale = f"its parts are {list(previous.parts)}, now {list(parts)}"
    if stale is not None:
        return {}, stale
    wanted = set(paths)
    return {p: row for p, row in previous.rows().items() if p in wanted and _size_of(root / p) == row[4]}, None


def _per_class(classes: list[str], paths: list[str], labels: list[int], done: dict[str, tuple],
               skipped: dict[str, str], parts: list[str]) -> dict[str, Counter]:
    per_class: dict[str, Counter] = {name: Counter() for name in classes}
    for path, label in zip(paths, labels):
        counter = per_class[classes[label]]
        if path in skipped:
            counter["skipped"] += 1
            continue
        present = done[path][2]
        counter["sequences"] += 1
        counter["frames"] += len(present)
        for index, part in enumerate(parts):
            counter[part] += int(present[:, index].sum())
    return per_class


def merge_sequence_caches(shards: list[str], output: str) -> str:
    """Join the sequence caches of ``signbridge sequences extract --shard K/N`` (all N shards of one dataset, each
    complete) into one cache, written atomically; returns a one-line summary.

    Args:
        shards: the shard files (any order).
        output: the merged cache (e.g. the file a config's ``landmarks_file`` names).
    """
    if not shards:
        raise InputError("sequences merge: name the shard files")
    caches = [(path, SequenceCache.load(path)) for path in shards]
    specs: list[tuple[int, int] | None] = [parse_shard(cache.meta.get("shard")) for _, cache in caches]
    first_path, first = caches[0]
    counts = {spec[1] if spec else None for spec in specs}
    if None in counts or len(counts) != 1:
        raise InputError("sequences merge: every file must be one shard of the same split (--shard K/N); shards: "
                         + ", ".join(f"{path}: {cache.meta.get('shard')}" for path, cache in caches))
    count = int(next(iter(counts)) or 0)
    found = sorted(spec[0] for spec in specs if spec)
    if found != list(range(count)):
        missing = sorted(set(range(count)) - set(found))
        repeated = sorted({k for k in found if found.count(k) > 1})
        raise InputError(f"sequences merge: {count} shards expected, got {found}"
                         + (f"; missing {', '.join(f'{k}/{count}' for k in missing)}" if missing else "")
                         + (f"; repeated {', '.join(f'{k}/{count}' for k in repeated)}" if repeated else ""))
    keys = ("format", "source", "parts", "dataset_root", "models_sha256", "detector", "mirrored", "requested_parts")
    for path, cache in caches:
        different = [key for key in keys if cache.meta.get(key) != first.meta.get(key)]
        if different:
            raise InputError(f"sequences merge: {path} differs from {first_path} in {', '.join(different)}")
        if not cache.meta.get("complete"):
            raise InputError(f"sequences merge: {path} is incomplete (its extraction was interrupted: run it again)")
    rows: dict[str, tuple] = {}
    skipped: dict[str, str] = {}
    for _, cache in caches:
        rows.update(cache.rows())
        skipped.update(cache.meta.get("skipped", {}))
    ordered = [rows[path] for path in sorted(rows, key=natural_key)]
    meta = {**first.meta, "shard": None, "complete": True, "skipped": skipped, "merged_from": len(caches),
            "shard_paths": sum(cache.meta.get("shard_paths", len(cache)) for _, cache in caches),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    check_writable(output, "sequence cache", inputs=shards, own=is_signbridge_npz)
    SequenceCache.from_rows(ordered, first.parts, meta).save(output)
    return f"merged {len(caches)} shards: {len(ordered)} sequences ({len(skipped)} skipped) -> {output}"

