"""Reading images and listing folder-per-class datasets (numpy + OpenCV only, so detector workers start fast)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class ImageReadError(InputError):
    """An image file that cannot be decoded; the message names the file and the problem."""


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to a contiguous ``(H, W, 3)`` uint8 RGB array.

    Grayscale, palette, RGBA and 16-bit images are converted; EXIF orientation is applied by OpenCV.
    Raises:
        ImageReadError: the file is empty, unreadable or not a decodable image.
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)  # fromfile + imdecode also works for non-ASCII paths
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read file ({error.strerror or error})") from error
    if raw.size == 0:
        raise ImageReadError(f"{path}: empty file")
    image = decode_image_rgb(raw)
    if image is None:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return image


def decode_image_rgb(data: bytes | np.ndarray) -> np.ndarray | None:
    """Encoded image bytes (a file's contents, an upload) as a contiguous ``(H, W, 3)`` uint8 RGB array, with the
    conversions of ``read_image_rgb``; None when they are not a decodable image."""
    raw = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    image = _decode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if image is None or image.size == 0:
        return None
    return np.ascontiguousarray(image[:, :, ::-1])


# folders that archivers and operating systems leave beside the data; never a class
JUNK_FOLDERS = frozenset({"__MACOSX", "__pycache__", "$RECYCLE.BIN", "System Volume Information"})


def natural_key(name: str) -> list:
    """Sort key that orders numbers by value: ``2`` before ``10`` (plain string order puts ``10`` first)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def list_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str], list[int]]:
    """List a folder-per-class dataset.

    Returns:
        ``(classes, paths, labels)``: class names in natural order (``2`` before ``10``), image paths relative to
        ``root`` with ``/`` separators in sorted order, and the class index of each path. Hidden files and folders,
        archiver leftovers (``__MACOSX``) and non-image files are ignored.
    Raises:
        InputError: no class folder, or a class folder without images (a class that can be neither learned nor
            tested; remove the folder or add images).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root is not a folder: {root}")
    classes = sorted((d.name for d in root.iterdir() if d.is_dir() and not skipped_name(d.name)), key=natural_key)
    if not classes:
        raise InputError(f"{root}: no class folders found (expected ROOT/<class>/<image>)")
    paths, labels, empty = [], [], []
    for label, name in enumerate(classes):
        found = _images_below(root, root / name)
        paths += found
        labels += [label] * len(found)
        if not found:
            empty.append(name)
    if len(empty) == len(classes):
        raise InputError(f"{root}: no images found in the class folders ({', '.join(classes)})")
    if empty:
        raise InputError(f"{root}: class folders without images: {', '.join(empty)} (remove them or add images; "
                         f"images are {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return classes, paths, labels


def skipped_name(name: str) -> bool:
    """Whether a file or folder is not data: hidden, or an archiver's or operating system's leftover."""
    return name.startswith(".") or name in JUNK_FOLDERS


def _images_below(root: Path, folder: Path) -> list[str]:
    """Image files below ``folder`` (recursively, through linked folders), relative to ``root`` with ``/``, sorted.
    Links to nothing and links that loop back to a folder already listed are left out, with a warning naming them."""
    found, problems, seen = [], [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back to a folder above (or listed already): not walked twice, or forever
            problems.append(f"{Path(dirpath).relative_to(root).as_posix()} (a link loop)")
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not skipped_name(d)]
        # strings, not a Path per file: pathlib took three quarters of listing 2000 photos
        relative = os.path.relpath(dirpath, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for filename in filenames:
            if filename.startswith(".") or os.path.splitext(filename)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            if not os.path.isfile(os.path.join(dirpath, filename)):  # False for a dangling symlink
                problems.append(f"{prefix}{filename} (a link to nothing)")
                continue
            found.append(prefix + filename)
    if problems:
        log.warning("%s: skipped %d entries: %s", folder, len(problems), first_few(problems))
    return sorted(found)


def first_few(names: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` names, comma-separated, and how many more there are: for a warning that lists skips."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def list_images(root: str | os.PathLike) -> list[str]:
    """All images below ``root`` (recursively, hidden entries skipped), relative with ``/``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder does not exist: {root}")
    found = _images_below(root, root)
    if not found:
        raise InputError(f"{root}: no images found")
    return found


def find_unreadable(root: str | os.PathLike, paths: list[str]) -> dict[str, str]:
    """Images under ``root`` that cannot be decoded, with the reason. Decodes at 1/8 scale, so a check is cheap."""
    bad = {}
    for relative in paths:
        path = Path(root) / relative
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as error:
            bad[relative] = f"cannot read file ({error.strerror or error})"
            continue
        if raw.size == 0:
            bad[relative] = "empty file"
        # OpenCV cannot reduce an image smaller than 8 px; such an image is decoded whole
        elif _decode(raw, cv2.IMREAD_REDUCED_GRAYSCALE_8) is None and _decode(raw, cv2.IMREAD_GRAYSCALE) is None:
            bad[relative] = "not a decodable image (corrupt or unsupported format)"
    return bad


def _decode(raw: np.ndarray, flags: int) -> np.ndarray | None:
    """``cv2.imdecode``, None where OpenCV raises (it asserts on some odd files instead of returning None)."""
    try:
        return cv2.imdecode(raw, flags)
    except cv2.error:
        return None
