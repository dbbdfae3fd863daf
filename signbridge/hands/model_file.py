"""Finding the MediaPipe hand landmarker model file (``docs/contracts.md``, "Hand landmarker model").

Resolution order: explicit argument -> ``$SIGNBRIDGE_HAND_LANDMARKER`` -> user cache -> download from Google's official
URL, verified against the pinned sha256. A download that fails or does not verify leaves nothing behind.
"""

from __future__ import annotations

import functools
import os
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

from ..errors import InputError
from ..files import cache_dir, file_state, sha256_of

MODEL_URL = "https://storage.googleapis.com/mediapipe-models/hand_landmarker/hand_landmarker/float16/1/hand_landmarker.task"
MODEL_SHA256 = "fbc2a30080c3c557093b5ddfc334698132eb341044ccee322ccf8bcf3607cde1"
MODEL_SIZE = 7_819_105
ENV_VAR = "SIGNBRIDGE_HAND_LANDMARKER"
_OFFLINE_HINT = (
    f"To work offline, download {MODEL_URL} on a connected machine and either pass its path "
    f"(signbridge landmarks --model_path, SignDataModule hand_model=...), set {ENV_VAR}=/path/to/hand_landmarker.task, "
    f"or copy it to {{cache}}."
)


class HandModelUnavailable(InputError):
    """The hand landmarker model cannot be found or downloaded; the message says how to supply it."""


def resolve_hand_landmarker(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the path of a usable ``hand_landmarker.task``.

    An explicitly given path (argument or environment variable) must exist; it is not checked against the pinned
    sha256 so that researchers can use other landmarker versions (the cache records the file's hash).
    """
    for source, candidate in (("argument", path), (ENV_VAR, os.environ.get(ENV_VAR))):
        if candidate:
            candidate = Path(candidate).expanduser()
            if not candidate.is_file():
                raise FileNotFoundError(f"hand landmarker model given by {source} does not exist: {candidate}")
            return check_hand_model_file(candidate)
    cached = cache_dir() / "hand_landmarker.task"
    if cached.is_file():
        return check_hand_model_file(cached)
    if not download:
        raise HandModelUnavailable(
            f"no hand landmarker model found and downloading is disabled. {_OFFLINE_HINT.format(cache=cached)}"
        )
    return download_hand_landmarker(cached)


# the two networks a MediaPipe hand landmarker bundle (.task, a zip archive) holds
MODEL_MEMBERS = ("hand_detector.tflite", "hand_landmarks_detector.tflite")


def check_hand_model_file(path: Path) -> Path:
    """``path`` if it is a readable hand landmarker bundle; otherwise a ``HandModelUnavailable`` naming the file.

    Checked here, in the calling process, because MediaPipe aborts a detector process on a bad file instead of
    raising (a pool of workers would die with ``BrokenProcessPool``). The check reads the whole file, so its result is
    remembered while the file is unchanged.
    """
    problem = _bundle_problem(file_state(path))
    if problem:
        raise HandModelUnavailable(f"{path}: not a MediaPipe hand landmarker model: {problem}. "
                                   f"{_OFFLINE_HINT.format(cache=cache_dir() / 'hand_landmarker.task')}")
    return path


@functools.lru_cache(maxsize=16)
def _bundle_problem(state: tuple[str, int, int]) -> str | None:
    path, size, _ = state
    try:
        with zipfile.ZipFile(path) as bundle:
            missing = [name for name in MODEL_MEMBERS if name not in bundle.namelist()]
            broken = bundle.testzip()  # reads every member and checks its CRC: a truncated copy fails here
            # a TensorFlow Lite flatbuffer says so at bytes 4..8; MediaPipe aborts the process on anything else
            not_models = [name for name in MODEL_MEMBERS if name not in missing and not broken
                          and bundle.open(name).read(8)[4:8] != b"TFL3"]
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        return "it is empty" if size == 0 else f"it is not a .task archive ({error})"
    if missing:
        return f"it lacks {', '.join(missing)}"
    if broken:
        return f"{broken} in it is corrupt"
    return f"{', '.join(not_models)} in it is not a TensorFlow Lite model" if not_models else None


def download_hand_landmarker(destination: Path, url: str = MODEL_URL, sha256: str = MODEL_SHA256) -> Path:
    """Download the model to ``destination`` through a temporary file; verified before it is moved into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=".hand_landmarker.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        got = sha256_of(tmp)
        if got != sha256:
            raise ValueError(f"downloaded file has sha256 {got}, expected {sha256}")
        os.replace(tmp, destination)
    except Exception as error:  # any failure: remove the partial file, explain how to supply the model by hand
        tmp.unlink(missing_ok=True)
        raise HandModelUnavailable(
            f"could not download the hand landmarker model from {url}: {error}. "
            f"{_OFFLINE_HINT.format(cache=destination)}"
        ) from error
    return destination
