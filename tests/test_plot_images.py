"""The evaluate stage's misclassified digits: one mosaic of tiles, six a row."""

import numpy as np

from stages.plots import TILE_GAP, TILE_LABEL, mosaic


def test_the_mosaic_puts_each_digit_in_its_tile_under_a_blank_label_band() -> None:
    height, width = 28, 28
    images = np.arange(1, 8, dtype=np.uint8)[:, None, None] * np.ones((7, height, width), np.uint8)
    tile_height, tile_width = height + TILE_LABEL, width + TILE_GAP
    tiles = mosaic(images, columns=6)
    assert tiles.shape == (2 * tile_height, 6 * tile_width)  # seven digits: two rows
    for position in range(7):
        row, column = divmod(position, 6)
        top, left = row * tile_height, column * tile_width
        assert (
            tiles[top + TILE_LABEL : top + tile_height, left : left + width] == position + 1
        ).all()
        assert (tiles[top : top + TILE_LABEL, left : left + tile_width] == 0).all()  # the label's
        assert (tiles[top : top + tile_height, left + width : left + tile_width] == 0).all()
    assert (tiles[tile_height:, tile_width:] == 0).all()  # the second row's empty tiles


def test_six_digits_fill_one_row_and_none_leave_one_blank_row() -> None:
    images = np.ones((6, 28, 28), np.uint8)
    assert mosaic(images, columns=6).shape == (28 + TILE_LABEL, 6 * (28 + TILE_GAP))
    assert mosaic(images[:0], columns=6).shape == (28 + TILE_LABEL, 6 * (28 + TILE_GAP))
    assert not mosaic(images[:0], columns=6).any()
