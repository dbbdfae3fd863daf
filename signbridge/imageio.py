"""Reading images and listing folder-per-class datasets (numpy + OpenCV only, so detector workers start fast)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

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
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return np.ascontiguousarray(image[:, :, ::-1])


def list_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str], list[int]]:
    """List a folder-per-class dataset.

    Returns:
        ``(classes, paths, labels)``: class names sorted, image paths relative to ``root`` with ``/`` separators in
        sorted order, and the class index of each path. Hidden files and non-image files are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root is not a folder: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise InputError(f"{root}: no class folders found (expected ROOT/<class>/<image>)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith(".") or Path(filename).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                paths.append(Path(dirpath, filename).relative_to(root).as_posix())
                labels.append(label)
    if not paths:
        raise InputError(f"{root}: no images found in the class folders ({', '.join(classes)})")
    return classes, paths, labels


def list_images(root: str | os.PathLike) -> list[str]:
    """All images below ``root`` (recursively, hidden entries skipped), relative with ``/``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder does not exist: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath, f).relative_to(root).as_posix()
            for f in filenames
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        ]
    if not found:
        raise InputError(f"{root}: no images found")
    return sorted(found)


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
        elif cv2.imdecode(raw, cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            bad[relative] = "not a decodable image (corrupt or unsupported format)"
    return bad
