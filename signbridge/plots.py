"""Images of results, drawn with OpenCV in milliseconds whatever their size (for TensorBoard and the app)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# matplotlib's "Blues" at its ends: an empty cell is near white, a full one dark blue
_LIGHT, _DARK = np.array([247, 251, 255], np.float32), np.array([8, 48, 107], np.float32)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TITLE = 0.5  # text scale of the axis titles


def confusion_image(matrix: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str] | None = None,
                    side: int = 800) -> np.ndarray:
    """An RGB ``uint8`` image ``(H, W, 3)`` of a confusion matrix (rows: true classes, columns: predicted).

    A cell's color is its share of its row (on the diagonal, the recall of the row's class), so a rare class reads
    as clearly as a common one; the counts are written in the cells and the class names along both axes when they
    fit (cells of at least 18 and 9 pixels). The matrix fills about ``side`` pixels, at least 1 per class. A
    matplotlib figure with a text per cell took 0.5 s for 10 classes and 17 s for 100; this takes 3-8 ms up to 500.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or not counts.shape[0]:
        raise ValueError(f"a confusion matrix is square and not empty, got shape {counts.shape}")
    classes = len(counts)
    names = [str(i) for i in range(classes)] if class_names is None else [str(name) for name in class_names]
    if len(names) != classes:
        raise ValueError(f"{len(names)} class names for a confusion matrix of {classes} classes")
    cell = max(1, min(64, side // classes))
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    colors = (_LIGHT + share[..., None] * (_DARK - _LIGHT)).round().astype(np.uint8)
    grid = np.repeat(np.repeat(colors, cell, axis=0), cell, axis=1)
    if cell >= 12:
        grid[::cell, :] = 200  # cell borders
        grid[:, ::cell] = 200
    if cell >= 18:
        _write_counts(grid, counts, share, cell)

    scale = 0.4 if cell >= 14 else 0.3
    labelled = cell >= 9
    names_size = max(_text_size(name, scale)[0] for name in names) + 8 if labelled else 0
    title_size = _text_size("predicted", _TITLE)[1] + 12
    margin = title_size + names_size  # left of the matrix and above it
    extent = classes * cell
    image = np.full((margin + extent + 4, margin + extent + 4, 3), 255, np.uint8)
    image[margin:margin + extent, margin:margin + extent] = grid
    _paste(image, _text_image("predicted", _TITLE), margin + extent // 2, title_size // 2)
    _paste(image, np.rot90(_text_image("true", _TITLE)), title_size // 2, margin + extent // 2)
    if labelled:
        for i, name in enumerate(names):
            centre = margin + i * cell + cell // 2
            row_name = _text_image(name, scale)
            _paste(image, row_name, margin - 4 - row_name.shape[1] // 2, centre)  # right-aligned
            column_name = np.rot90(row_name)  # reads upwards, ending just above its column
            _paste(image, column_name, centre, margin - 4 - column_name.shape[0] // 2)
    return image


def _write_counts(grid: np.ndarray, counts: np.ndarray, share: np.ndarray, cell: int) -> None:
    """Each non-zero count in its cell, where it fits (white on dark cells)."""
    scale = 0.45 if cell >= 32 else 0.35
    for (i, j), count in np.ndenumerate(counts):
        if not count:
            continue
        text = str(count)
        width, height = _text_size(text, scale)
        if width > cell - 2:
            continue
        color = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
        cv2.putText(grid, text, (j * cell + (cell - width) // 2, i * cell + (cell + height) // 2), _FONT, scale,
                    color, 1, cv2.LINE_AA)


def _text_size(text: str, scale: float) -> tuple[int, int]:
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    return width, height


def _text_image(text: str, scale: float) -> np.ndarray:
    """Black ``text`` on white, just large enough for it (descenders included)."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    image = np.full((height + baseline + 2, width + 2, 3), 255, np.uint8)
    cv2.putText(image, text, (1, height + 1), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def _paste(image: np.ndarray, text: np.ndarray, centre_x: int, centre_y: int) -> None:
    """Darken ``image`` with the text image centred at ``(centre_x, centre_y)``, cut at the image's edges."""
    y0, x0 = centre_y - text.shape[0] // 2, centre_x - text.shape[1] // 2
    ys = slice(max(y0, 0), min(y0 + text.shape[0], image.shape[0]))
    xs = slice(max(x0, 0), min(x0 + text.shape[1], image.shape[1]))
    region = image[ys, xs]
    region[...] = np.minimum(region, text[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0])
