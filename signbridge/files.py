"""File helpers shared by the package: atomic writes, hashing, the user cache folder and the safe opening of a
checkpoint."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path``; on success flush it to disk and rename it over ``path``.

    Readers see the old file or the new one, never a partial one; on an exception (a full disk included) the
    temporary file is removed and ``path`` is untouched. The file gets the mode a plain ``open`` would give it
    (``0666`` less the umask), not the ``0600`` of a temporary file, so colleagues can read a shared folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        unnamed = _unnamed_os_error(error)
        if unnamed is not None:  # a full disk, say, under a writer's own error (torch.save's): name the file
            raise OSError(unnamed.errno, unnamed.strerror, str(path)) from error
        raise


def _unnamed_os_error(error: BaseException) -> OSError | None:
    """The OSError without a file name in ``error``'s chain (``error`` included), if there is one."""
    from .errors import error_chain

    return next((e for e in error_chain(error) if isinstance(e, OSError) and e.filename is None and e.strerror),
                None)


def check_writable(path: str | os.PathLike, what: str = "output", *, inputs: Sequence[str | os.PathLike] = (),
                   data_roots: Sequence[str | os.PathLike] = (), own: Callable[[Path], bool] | None = None) -> None:
    """An ``InputError`` now, before any work, when ``path`` (a file or folder to be created or replaced) cannot be
    written: a parent is a file, or the nearest existing folder is not writable; or when writing it could destroy a
    user's file: it is one of the command's ``inputs``, it lies inside a dataset folder being read (``data_roots``),
    or it exists and ``own`` does not recognise it as this kind of output (a file signbridge wrote)."""
    from .errors import InputError

    path = Path(path).absolute()
    if path.is_dir() and what != "folder":
        raise InputError(f"{path}: cannot write the {what} there: it is a folder")
    resolved = path.resolve()
    for source in inputs:
        if Path(source).resolve() == resolved:
            raise InputError(f"{path}: cannot write the {what} over the command's own input")
    for root in data_roots:
        if resolved.is_relative_to(Path(root).resolve()):
            raise InputError(f"{path}: cannot write the {what} inside the dataset being read ({root}): choose a "
                             "path outside it")
    if own is not None and path.is_file() and not own(path):
        raise InputError(f"{path}: an existing file that is not a signbridge {what}: not replaced (remove it or "
                         "choose another path)")
    folder = path if what == "folder" and path.is_dir() else path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: cannot write the {what}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write the {what}: no permission to write in {folder}")


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON with ``atomic_write``."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, default=str)


def file_state(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(real path, size, modification time)``: the key under which a result read from a file's contents can be
    remembered (with ``functools.lru_cache``) until the file changes."""
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_size, stat.st_mtime_ns


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file's contents, as hex; remembered while the file is unchanged (the 7.5 MB hand model is
    hashed once per process, not at every cache check)."""
    return _sha256_of(file_state(path))


@functools.lru_cache(maxsize=64)
def _sha256_of(state: tuple[str, int, int]) -> str:
    digest = hashlib.sha256()
    with open(state[0], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The user cache folder for signbridge (``$XDG_CACHE_HOME/signbridge`` or ``~/.cache/signbridge``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "signbridge"


def read_checkpoint(path: str | Path) -> dict:
    """Open a Lightning checkpoint safely (``weights_only``) or raise an ``InputError`` that names the file and the
    problem: missing, empty, truncated or corrupt, not a Lightning checkpoint.

    The tensors are memory-mapped, not read: this is a check before Lightning loads the file itself, so a large
    checkpoint is not read twice.
    """
    import pickle
    import zipfile

    import torch

    from .errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (--ckpt_path)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the checkpoint is empty (an interrupted save?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (EOFError, RuntimeError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise InputError(f"{path}: not a readable checkpoint, truncated or corrupt "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def is_signbridge_npz(path: Path) -> bool:
    """A landmark or sequence cache of signbridge, whole or cut short: a zip archive whose first member is its
    ``paths`` array (a truncated cache is moved aside and rebuilt; anything else is not ours to replace)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    # a zip's first local header: the signature, 26 bytes of sizes and dates, then the member's name
    return head.startswith(b"PK\x03\x04") and head[30:39] == b"paths.npy"


def is_signbridge_export(path: Path) -> bool:
    """A file of ``signbridge export`` (ONNX or TorchScript with its signbridge metadata)."""
    from .inference import read_exported_metadata

    try:
        read_exported_metadata(path)
    except Exception:  # noqa: BLE001  (anything unreadable is not ours)
        return False
    return True


def is_text_output(header: str) -> Callable[[Path], bool]:
    """A text file of ours: empty, or its first line starts with ``header`` (a CSV's first column, a JSON line's
    first key)."""

    def recognise(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                first = f.readline()
        except (OSError, UnicodeDecodeError):
            return False
        return not first.strip() or first.startswith(header)

    return recognise
