"""The landmark cache file (``docs/contracts.md``, "Landmark cache") and the resumable extraction that builds it."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..files import atomic_write, cache_dir, check_writable, is_signbridge_npz, sha256_of
from ..imageio import list_image_folder
from ..signals import die_with_parent, sigterm_as_interrupt
from .detect import DetectorSettings, HandDetection
from .layout import NUM_COORDS, NUM_HANDS, NUM_POINTS
from .model_file import resolve_hand_landmarker

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_ARRAYS = {  # key -> (dtype kind, shape after N)
    "paths": ("U", ()),
    "landmarks": ("f", (NUM_HANDS, NUM_POINTS, NUM_COORDS)),
    "present": ("b", (NUM_HANDS,)),
    "score": ("f", (NUM_HANDS,)),
    "image_size": ("i", (2,)),
    "file_size": ("i", ()),
}


@dataclass
class LandmarkCache:
    """Landmarks of a dataset, one row per image; ``paths`` are relative to the dataset root with ``/``.

    ``file_size`` is an addition to the keys of ``docs/contracts.md``: it lets a rerun notice an image replaced under
    the same name.
    """

    paths: np.ndarray
    landmarks: np.ndarray
    present: np.ndarray
    score: np.ndarray
    image_size: np.ndarray
    file_size: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def empty(cls, meta: dict | None = None) -> LandmarkCache:
        return cls._from_rows([], meta or {})

    @classmethod
    def _from_rows(cls, rows: list[tuple], meta: dict) -> LandmarkCache:
        """Rows are ``(path, HandDetection, (width, height), file_size)``."""
        return cls(
            paths=np.array([r[0] for r in rows], dtype=str),
            landmarks=np.array([r[1].landmarks for r in rows], np.float32).reshape(-1, NUM_HANDS, NUM_POINTS, 3),
            present=np.array([r[1].present for r in rows], bool).reshape(-1, NUM_HANDS),
            score=np.array([r[1].score for r in rows], np.float32).reshape(-1, NUM_HANDS),
            image_size=np.array([r[2] for r in rows], np.int64).reshape(-1, 2),
            file_size=np.array([r[3] for r in rows], np.int64),
            meta=meta,
        )

    def rows(self) -> dict[str, tuple]:
        return {
            str(p): (str(p), HandDetection(lm, pr, sc), tuple(int(v) for v in size), int(fs))
            for p, lm, pr, sc, size, fs in zip(
                self.paths, self.landmarks, self.present, self.score, self.image_size, self.file_size
            )
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> LandmarkCache:
        """Read and validate a cache file; any problem is a ``ValueError`` naming the file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            raise InputError(f"{path}: not a readable landmark cache ({type(error).__name__}: {error})") from error
        missing = sorted((set(_ARRAYS) | {"meta"}) - set(arrays))
        if missing:
            raise InputError(f"{path}: landmark cache lacks the keys {missing}")
        count = len(arrays["paths"])
        for key, (kind, shape) in _ARRAYS.items():
            array = arrays[key]
            if array.dtype.kind != kind or array.shape != (count, *shape):
                raise InputError(
                    f"{path}: landmark cache key '{key}' has shape {array.shape} {array.dtype}, expected "
                    f"({count}, {', '.join(map(str, shape))}) of kind '{kind}'"
                )
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: landmark cache meta is not JSON ({error})") from error
        return cls(**{key: arrays[key] for key in _ARRAYS}, meta=meta)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file in the same folder, flushed, then renamed over ``path``."""
        with atomic_write(path) as f:
            np.savez(f, **{key: getattr(self, key) for key in _ARRAYS}, meta=np.array(json.dumps(self.meta)))

    def index_of(self) -> dict[str, int]:
        return {str(p): i for i, p in enumerate(self.paths)}


def detector_fingerprint(model_sha256: str, settings: DetectorSettings) -> dict:
    """What makes two caches comparable: same model file and same detector settings."""
    return {"model_sha256": model_sha256, "detector": settings.to_dict()}


def stale_reason(cache: Any, fingerprint: dict, cache_format: int = CACHE_FORMAT) -> str | None:
    """Why ``cache`` (a landmark or sequence cache: its ``meta``) cannot be reused with this reader (model, settings),
    or None."""
    if cache.meta.get("format") != cache_format:
        return f"cache format {cache.meta.get('format')} is not {cache_format}"
    for key, value in fingerprint.items():
        if cache.meta.get(key) != value:
            return f"{key} differs (cache: {cache.meta.get(key)}, now: {value})"
    return None


def coverage_problem(cache: LandmarkCache, paths: list[str], file_sizes: list[int]) -> str | None:
    """Why ``cache`` does not cover this file list (known-unreadable files excepted), or None.

    Extra rows (images since removed, or a cache of a larger dataset) are harmless and not a problem.
    """
    if not cache.meta.get("complete"):
        return "the cache is incomplete (an interrupted extraction)"
    cached = dict(zip(cache.paths.tolist(), cache.file_size.tolist()))
    skipped = set(cache.meta.get("skipped", {}))
    missing = [p for p in paths if p not in cached and p not in skipped]
    changed = [p for p, s in zip(paths, file_sizes) if p in cached and cached[p] != s]
    parts = []
    if missing:
        parts.append(f"{len(missing)} images not in the cache (e.g. {missing[0]})")
    if changed:
        parts.append(f"{len(changed)} images changed size (e.g. {changed[0]})")
    return "; ".join(parts) or None


def cache_problem(
    path: str | os.PathLike, root: str | os.PathLike, paths: list[str], model_path: str | os.PathLike | None = None,
    settings: DetectorSettings | None = None,
) -> str | None:
    """Why the cache at ``path`` cannot serve the images ``paths`` under ``root`` with this landmarker model and these
    detector settings (missing, unreadable, another format/model/settings, incomplete, images added or changed), or
    None when it can be used as it is."""
    path, root = Path(path), Path(root)
    if not path.exists():
        return "it does not exist"
    try:
        cache = LandmarkCache.load(path)
    except ValueError as error:
        return str(error)
    fingerprint = detector_fingerprint(sha256_of(resolve_hand_landmarker(model_path)), settings or DetectorSettings())
    sizes = [os.stat(os.path.join(root, p)).st_size for p in paths]
    return stale_reason(cache, fingerprint) or coverage_problem(cache, paths, sizes)


# ---------------------------------------------------------------------------------------------------------------
# extraction

_worker_detector = None


def _init_worker(model_path: str, settings: dict, parent_pid: int | None = None) -> None:
    global _worker_detector
    from .detect import HandDetector

    if parent_pid is not None:  # a pool worker (each holds a landmarker of several hundred MB)
        die_with_parent(parent_pid)

    _worker_detector = HandDetector(model_path, DetectorSettings(**settings))
    # close before the worker exits, or MediaPipe's __del__ prints a TypeError at interpreter shutdown
    multiprocessing.util.Finalize(_worker_detector, _worker_detector.close, exitpriority=10)


def _detect_one(job: tuple[str, str]) -> tuple[str, HandDetection | None, tuple[int, int] | None, str | None]:
    root, relative = job
    try:
        assert _worker_detector is not None, "_init_worker runs first in every worker"
        detection, size = _worker_detector.detect_file(Path(root) / relative)
        return relative, detection, size, None
    except Exception as error:  # one bad file is reported and skipped; it must not stop the run
        return relative, None, None, failure_reason(error, Path(root) / relative)


def failure_reason(error: Exception, path: Path) -> str:
    """An error's message without the file name it starts with (the summary names the file itself)."""
    message, prefix = str(error), f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


@dataclass
class ExtractionSummary:
    """What ``extract_landmarks`` did: images per class with one, two or no hands, reused rows, skipped files."""

    root: str
    output: str
    classes: list[str]
    images: int
    detected: int
    reused: int
    seconds: float
    skipped: dict[str, str]
    per_class: dict[str, Counter]
    stale: str | None = None

    def format(self) -> str:
        lines = [
            f"landmarks of {self.root} -> {self.output}",
            f"{self.images} images: {self.detected} detected now, {self.reused} reused from the cache, "
            f"{len(self.skipped)} skipped, in {self.seconds:.1f} s"
            + (f" ({self.detected / self.seconds:.1f} img/s)" if self.detected and self.seconds > 0 else ""),
        ]
        if self.stale:
            lines.append(f"the previous cache was not reused: {self.stale}")
        header = f"{'class':<16}{'images':>8}{'right':>8}{'left':>8}{'both':>8}{'none':>8}{'skipped':>9}"
        lines += ["", header, "-" * len(header)]
        for name in self.classes:
            c = self.per_class.get(name, Counter())
            lines.append(
                f"{name:<16}{c['images']:>8}{c['right']:>8}{c['left']:>8}{c['both']:>8}{c['none']:>8}{c['skipped']:>9}"
            )
        if self.skipped:
            lines += ["", "skipped files:"] + [f"  {path}: {why}" for path, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def previous_cache(output: Path, paths: list[str], load: Callable[[Path], Any] = LandmarkCache.load,
                   kind: str = "landmark", unit: str = "images") -> Any:
    """The cache already at ``output`` (read by ``load``), to reuse its rows; None when it is unreadable (it is then
    moved aside to ``<output>.corrupt``, not deleted). Refuses a cache of another dataset (or of another shard of
    this one), which a rebuild would overwrite."""
    try:
        previous = load(output)
    except InputError as error:
        aside = output.with_name(output.name + ".corrupt")
        os.replace(output, aside)
        log.warning("%s; moved it to %s and building a new cache", error, aside)
        return None
    cached = set(previous.paths.tolist())
    if cached and len(cached & set(paths)) < len(cached) / 2:  # a moved dataset keeps its relative paths
        shard = f", shard {previous.meta['shard']}" if previous.meta.get("shard") else ""
        raise InputError(
            f"{output} is the {kind} cache of another dataset ({previous.meta.get('dataset_root', 'unknown root')}"
            f"{shard}: {len(cached)} {unit}, fewer than half of them in this one); pass another output file or "
            "delete it")
    return previous


def default_cache_path(root: str | os.PathLike, kind: str = "landmarks") -> Path:
    """Where a dataset's cache goes when no file is named: one per dataset folder in the user cache folder, under
    ``kind`` (``landmarks``, ``sequences``); the data modules' default, so ``signbridge landmarks ROOT`` (``signbridge
    sequences extract ROOT``) builds the cache they read."""
    folder = Path(root).resolve()
    key = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    return cache_dir() / kind / f"{folder.name}-{key}.npz"


def extract_landmarks(
    root: str | os.PathLike,
    output: str | os.PathLike | None = None,
    model_path: str | os.PathLike | None = None,
    settings: DetectorSettings = DetectorSettings(),
    workers: int | None = None,
    checkpoint_every: int = 256,
    progress: bool = True,
    paths: list[str] | None = None,
) -> ExtractionSummary:
    """Detect hands in every image of a folder-per-class dataset and write the landmark cache.

    Resumable: progress is saved atomically every ``checkpoint_every`` images, and a rerun reuses every row of an
    existing cache made with the same model and settings whose file is unchanged.

    Args:
        root: dataset folder, ``ROOT/<class>/<image>``.
        output: the cache file (.npz); default: the one the sign datamodules use for ``root`` (in the user cache
            folder).
        model_path: MediaPipe's ``hand_landmarker.task`` (default: ``$SIGNBRIDGE_HAND_LANDMARKER``, the user cache
            folder, a download).
        settings: the detector's settings (confidences, the largest image side before downscaling).
        workers: detector processes (one landmarker each); ``None`` = all cores; ``0`` = in this process, which
            must not be one that has trained a Lightning model (see ``HandDetector``).
        checkpoint_every: save the progress every N images.
        progress: show a progress bar.
        paths: image paths relative to ``root``; default: the folder-per-class listing of ``root``. With a list, the
            summary groups images by their parent folder.
    """
    start = time.perf_counter()
    root = Path(root)
    output = Path(output) if output is not None else default_cache_path(root)
    check_writable(output, "landmark cache", inputs=[model_path] if model_path else [], data_roots=[root],
                   own=is_signbridge_npz)
    settings = settings or DetectorSettings()
    model_path = resolve_hand_landmarker(model_path)
    if paths is None:
        classes, paths, labels = list_image_folder(root)
    else:
        classes = sorted({str(Path(p).parent) for p in paths})
        labels = [classes.index(str(Path(p).parent)) for p in paths]
    file_sizes = {p: (root / p).stat().st_size for p in paths}
    fingerprint = detector_fingerprint(sha256_of(model_path), settings)
    done, stale = _reusable_rows(output, paths, file_sizes, fingerprint)
    reused = len(done)
    todo = [p for p in paths if p not in done]
    skipped: dict[str, str] = {}

    import mediapipe

    meta = {"format": CACHE_FORMAT, **fingerprint, "model_file": str(model_path),
            "mediapipe_version": mediapipe.__version__, "dataset_root": str(root.resolve())}

    def write(complete: bool) -> None:
        rows = [done[p] for p in paths if p in done]
        stamp = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "complete": complete}
        LandmarkCache._from_rows(rows, {**meta, **stamp, "skipped": skipped}).save(output)

    since_checkpoint = 0
    with _detections(root, todo, model_path, settings, workers, progress) as results:
        try:
            for relative, detection, size, failure in results:
                if detection is None:
                    skipped[relative] = failure or "no detection"
                else:
                    done[relative] = (relative, detection, size, file_sizes[relative])
                since_checkpoint += 1
                if since_checkpoint >= checkpoint_every:
                    write(complete=False)
                    since_checkpoint = 0
        except BaseException:
            if since_checkpoint:
                write(complete=False)  # keep what was done, e.g. on Ctrl-C or SIGTERM
            raise
    write(complete=True)
    return ExtractionSummary(
        root=str(root), output=str(output), classes=classes, images=len(paths), detected=len(todo) - len(skipped),
        reused=reused, seconds=time.perf_counter() - start, skipped=skipped,
        per_class=_hands_per_class(classes, paths, labels, done, skipped), stale=stale,
    )


def _reusable_rows(output: Path, paths: list[str], file_sizes: dict[str, int],
                   fingerprint: dict) -> tuple[dict[str, tuple], str | None]:
    """The rows of an existing cache at ``output`` that are still valid (same detector, unchanged file), and why
    the rest of it is not (None: it is all valid, or there is none)."""
    if not output.exists():
        return {}, None
    previous = previous_cache(output, paths)
    stale = "it was unreadable" if previous is None else stale_reason(previous, fingerprint)
    if stale is not None or previous is None:
        return {}, stale
    return {p: row for p, row in previous.rows().items() if file_sizes.get(p) == row[3]}, None


DetectionResult = tuple[str, HandDetection | None, tuple[int, int] | None, str | None]


def _detections(root: Path, todo: list[str], model_path: Path, settings: DetectorSettings, workers: int | None,
                progress: bool):
    """``(path, detection or None, image size, failure)`` of every image in ``todo`` (see ``worker_results``)."""
    return worker_results(_detect_one, [(str(root), p) for p in todo], _init_worker,
                          (str(model_path), settings.to_dict()), workers, progress, "hand landmarks", "img")


@contextmanager
def worker_results(work: Callable[[Any], Any], jobs: list, initializer: Callable[..., None], initargs: tuple,
                   workers: int | None, progress: bool, desc: str, unit: str) -> Iterator[Iterator[Any]]:
    """``work(job)`` of every job, in order, from ``workers`` spawned processes (``None``: one per core; 0: this
    process), each set up by ``initializer(*initargs, parent_pid)`` (so it dies with this process), with a progress
    bar; SIGTERM stops them like Ctrl-C, and the workers stop when the block ends, however it ends."""
    from tqdm.auto import tqdm

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise InputError(f"extraction workers must be 0 (this process) or more, got {workers}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress or not jobs)
    executor = None

    def counted(results: Iterator[Any]) -> Iterator[Any]:
        for result in results:
            bar.update()
            yield result

    with sigterm_as_interrupt():  # SIGTERM (timeout, Slurm) saves progress and stops the workers like Ctrl-C
        try:
            if workers == 0:
                initializer(*initargs, None)
                yield counted(map(work, jobs))
            else:
                # spawned processes: fresh interpreters, never the caller's (see HandDetector on SIGPROF); a worker
                # that dies raises BrokenProcessPool here instead of leaving the run waiting forever
                executor = ProcessPoolExecutor(
                    min(workers, max(1, len(jobs))), mp_context=multiprocessing.get_context("spawn"),
                    initializer=initializer, initargs=(*initargs, os.getpid()),
                )
                yield counted(executor.map(work, jobs, chunksize=4 if len(jobs) > 16 * workers else 1))
        finally:
            bar.close()
            if executor is not None:
                executor.shutdown(cancel_futures=True)
            elif _worker_detector is not None:
                _worker_detector.close()


def _hands_per_class(classes: list[str], paths: list[str], labels: list[int], done: dict[str, tuple],
                     skipped: dict[str, str]) -> dict[str, Counter]:
    """Images per class, and how many had the right, the left, both or no hand, or were skipped."""
    per_class: dict[str, Counter] = {name: Counter() for name in classes}
    for p, label in zip(paths, labels):
        counter = per_class[classes[label]]
        counter["images"] += 1
        if p in skipped:
            counter["skipped"] += 1
            continue
        right, left = done[p][1].present
        counter["right"] += int(right)
        counter["left"] += int(left)
        counter["both"] += int(right and left)
        counter["none"] += int(not (right or left))
    return per_class
