"""Matplotlib images: accuracy per epoch in the 2016 project's style, and misclassified digits."""

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from stages.files import atomic_output

TILE_LABEL = 9  # pixel rows above each misclassified digit, for its `true → predicted`
TILE_GAP = 4  # pixel columns between two digits


def save_figure(figure: Figure, path: Path) -> None:
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100, metadata={"Software": None})


def plot_accuracy(history: np.ndarray, variant: str, path: Path) -> None:
    """Train and validation accuracy per epoch, as the 2016 project plotted them."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    axes.plot(history["epoch"], history["accuracy"], label="train")
    axes.plot(history["epoch"], history["val_accuracy"], label="validation")
    axes.set(title=f"{variant}: model accuracy", xlabel="epoch", ylabel="accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    save_figure(figure, path)


def mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """The images as tiles of one image, `columns` a row, each with TILE_LABEL blank rows
    above it (for its label) and TILE_GAP blank columns right of it."""
    count, height, width = images.shape
    rows = max(1, math.ceil(count / columns))
    tiles = np.zeros((rows * columns, height + TILE_LABEL, width + TILE_GAP), images.dtype)
    tiles[:count, TILE_LABEL:, :width] = images
    tiles = tiles.reshape(rows, columns, height + TILE_LABEL, width + TILE_GAP)
    return tiles.transpose(0, 2, 1, 3).reshape(rows * (height + TILE_LABEL), -1)


def plot_misclassified(
    images: np.ndarray, actual: np.ndarray, predicted: np.ndarray, path: Path, limit: int = 36
) -> None:
    """The first `limit` misclassified digits, six a row, each under `true → predicted`: one
    image of tiles, drawn in one go rather than as an axes per digit."""
    wrong = np.flatnonzero(actual != predicted)[:limit]
    columns = 6
    rows = max(1, math.ceil(len(wrong) / columns))
    height, width = images.shape[1:]
    title = 0.4  # inches above the tiles
    figure = Figure(figsize=(columns * 1.2, rows * 1.35 + title))
    axes = figure.add_axes((0, 0, 1, 1 - title / (rows * 1.35 + title)))
    axes.axis("off")
    axes.imshow(mosaic(images[wrong], columns), cmap="gray_r", interpolation="nearest")
    for position, index in enumerate(wrong):
        row, column = divmod(position, columns)
        x = column * (width + TILE_GAP) + (width - 1) / 2  # the digit's middle pixel
        y = row * (height + TILE_LABEL) + TILE_LABEL - 1
        label = f"{actual[index]} → {predicted[index]}"
        axes.text(x, y, label, ha="center", va="bottom", fontsize=9)
    figure.suptitle(f"misclassified test digits (true → predicted), {len(wrong)} shown")
    save_figure(figure, path)


def plot_validation_accuracy(histories: dict[str, np.ndarray], path: Path) -> None:
    """Every variant's validation accuracy per epoch, overlaid in one chart."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for variant, history in histories.items():
        axes.plot(history["epoch"], history["val_accuracy"], label=variant)
    axes.set(title="validation accuracy per epoch", xlabel="epoch", ylabel="accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    save_figure(figure, path)
