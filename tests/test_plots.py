import numpy as np
import pytest

from signbridge.plots import confusion_image


def cell_color(image: np.ndarray, cell: int, classes: int, row: int, column: int) -> np.ndarray:
    """The color inside a cell of ``cell`` pixels: the matrix is the image's bottom-right square, less a border of
    4 white pixels."""
    top, left = (size - 4 - classes * cell for size in image.shape[:2])
    return image[top + row * cell + cell // 4, left + column * cell + cell // 4]


def test_confusion_image_colors_each_row_by_its_share():
    # a rare class all right and a common class all right read the same; a confused class is lighter on the diagonal
    matrix = np.array([[2, 0, 0], [0, 200, 0], [0, 50, 50]])
    image = confusion_image(matrix, ["rare", "common", "confused"], side=192)  # cells of 64 pixels
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    rare, common, confused, confusion, empty = (cell_color(image, 64, 3, row, column)
                                                for row, column in ((0, 0), (1, 1), (2, 2), (2, 1), (0, 2)))
    assert np.array_equal(rare, common)
    assert np.array_equal(confused, confusion)  # half of the row each
    # darker with a larger share: empty > half > all
    assert empty.sum() > confused.sum() > common.sum()


def test_confusion_image_writes_names_only_where_they_fit():
    matrix = np.eye(4, dtype=int) * 5
    named = confusion_image(matrix, ["alpha", "beta", "gamma", "delta"], side=200)
    numbered = confusion_image(matrix, None, side=200)
    assert named.shape[0] > numbered.shape[0]  # longer names: a wider margin for them
    # thousands of classes: one pixel each, no names, quickly
    many = confusion_image(np.eye(1500, dtype=int), [f"sign{i}" for i in range(1500)], side=800)
    assert many.shape[0] < 1600


def test_confusion_image_refuses_what_is_not_a_confusion_matrix():
    with pytest.raises(ValueError, match="square"):
        confusion_image(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="2 class names"):
        confusion_image(np.zeros((3, 3), dtype=int), ["a", "b"])
