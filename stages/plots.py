"""Matplotlib images: accuracy per epoch in the 2016 project's style, and misclassified digits."""

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from stages.files import atomic_output


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


def plot_misclassified(
    images: np.ndarray, actual: np.ndarray, predicted: np.ndarray, path: Path, limit: int = 36
) -> None:
    """A grid of the first `limit` misclassified digits, titled `true → predicted`."""
    wrong = np.flatnonzero(actual != predicted)[:limit]
    columns = 6
    rows = max(1, math.ceil(len(wrong) / columns))
    figure = Figure(figsize=(columns * 1.2, rows * 1.35), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, wrong, strict=False):
        axes.imshow(images[index], cmap="gray_r")
        axes.set_title(f"{actual[index]} → {predicted[index]}", fontsize=9)
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
