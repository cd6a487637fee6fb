"""The PyTorch peer of benchmarks/train_speed.py: a plain training loop of the same recipe.

Per variant, what the train stage does with Keras, written in eager PyTorch: the same layers
and parameter count; the same optimizer at Keras's hyper-parameters (KERAS_OPTIMIZERS); the
weight decay applied as Keras applies it (every parameter shrinks by learning rate × decay
before each step, whatever the optimizer); the cosine decay stepped once per batch; label
smoothing; the same random shifts and rotations, one resampling each; the same batch sizes and
thread count; the arrays shuffled by a permutation each epoch (no DataLoader) and a validation
pass after every epoch, as `model.fit` does. tests/test_benchmark.py checks the settings
against the Keras model's, variant by variant.
"""

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from stages.params import ModelParams, TrainParams, feature_map_sizes

# Keras 3's defaults for each optimizer, under PyTorch's names. Keras adds epsilon to the root
# of the raw second moment (Adam) or under the root (RMSprop), PyTorch to the corrected root:
# the same work, and a difference in the last digits only.
KERAS_OPTIMIZERS = {
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-7, "amsgrad": False}),
    "rmsprop": (
        torch.optim.RMSprop,
        {"alpha": 0.9, "eps": 1e-7, "momentum": 0.0, "centered": False},
    ),
    "sgd": (torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
}
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
}


class RandomAffine(nn.Module):
    """Keras's RandomTranslation (`shift`, a fraction of the side) or RandomRotation
    (`degrees`): one bilinear resampling per batch in training, zeros outside the image."""

    def __init__(self, shift: float = 0.0, degrees: float = 0.0) -> None:
        super().__init__()
        self.shift, self.degrees = shift, degrees

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        count = images.shape[0]
        angle = (torch.rand(count) * 2 - 1) * math.radians(self.degrees)
        offset = (torch.rand(count, 2) * 2 - 1) * 2 * self.shift  # grid coordinates span 2
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)],
            1,
        )
        grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
        return functional.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def augmentation(params: ModelParams) -> list[nn.Module]:
    """As stages.models.augmentation: a translation, then a rotation, each only when set."""
    layers: list[nn.Module] = []
    if params.augment_shift:
        layers.append(RandomAffine(shift=params.augment_shift))
    if params.augment_rotation:
        layers.append(RandomAffine(degrees=params.augment_rotation))
    return layers


def build(params: ModelParams) -> nn.Module:
    """The layers that stages.models.build_model builds, in PyTorch (logits out)."""
    activation = ACTIVATIONS[params.activation]
    augment = augmentation(params)
    layers: list[nn.Module] = []
    if augment or params.layout == "conv":
        layers += [nn.Unflatten(1, (1, 28)), *augment]
    if params.layout == "conv":
        channels = 1
        for filters in params.conv_filters:
            layers += [nn.Conv2d(channels, filters, params.kernel_size, bias=not params.batch_norm)]
            layers += [nn.BatchNorm2d(filters)] if params.batch_norm else []
            layers += [activation()]
            if params.pooling != "none":
                pool = nn.MaxPool2d if params.pooling == "max" else nn.AvgPool2d
                layers.append(pool(2))
            channels = filters
        side = feature_map_sizes(params.conv_filters, params.kernel_size, params.pooling)[-1]
        layers.append(nn.Flatten())
        width = channels * side * side
    elif params.layout == "flat":
        layers.append(nn.Flatten())
        width = 784
    else:
        layers += [nn.Flatten(1, 2)] if augment else []  # back from the augmentation's channel
        width = 28
    for units in params.hidden_units:
        layers += [nn.Linear(width, units), activation()]
        layers += [nn.Dropout(params.dropout)] if params.dropout else []
        width = units
    if params.layout == "rows":
        layers.append(nn.Flatten())
        width *= 28
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


@dataclass
class Recipe:
    """What a training step uses besides the model."""

    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | None
    loss: nn.CrossEntropyLoss
    weight_decay: float


def recipe(params: ModelParams, model: nn.Module, steps_per_epoch: int) -> Recipe:
    """The variant's optimizer, learning-rate schedule, loss and weight decay, as Keras's."""
    optimizer_class, settings = KERAS_OPTIMIZERS[params.optimizer]
    optimizer = optimizer_class(model.parameters(), lr=params.learning_rate, **settings)
    schedule = None
    if params.lr_schedule == "cosine":  # Keras's CosineDecay: to zero over every step
        total = params.epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    loss = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)
    return Recipe(optimizer, schedule, loss, params.weight_decay)


def training_step(
    model: nn.Module, step: Recipe, images: torch.Tensor, labels: torch.Tensor
) -> None:
    """One batch: decoupled weight decay at this step's rate, as Keras, then the update."""
    step.optimizer.zero_grad()
    step.loss(model(images), labels).backward()
    if step.weight_decay:
        rate = step.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1 - rate * step.weight_decay)
    step.optimizer.step()
    if step.schedule:
        step.schedule.step()


def epoch_seconds(
    params: ModelParams,
    train_params: TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
) -> dict[str, list[float]]:
    """Wall-clock seconds of each epoch (`seconds`) and of its training alone (`train_seconds`)."""
    threads = train_params.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    torch.manual_seed(train_params.seed)
    x, y = torch.from_numpy(train[0]).float() / 255, torch.from_numpy(train[1]).long()
    x_val = torch.from_numpy(validation[0]).float() / 255
    y_val = torch.from_numpy(validation[1]).long()
    model = build(params)
    step = recipe(params, model, math.ceil(len(y) / params.batch_size))
    seconds: dict[str, list[float]] = {"seconds": [], "train_seconds": []}
    for _ in range(params.epochs):
        started = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(y)).split(params.batch_size):
            training_step(model, step, x[batch], y[batch])
        seconds["train_seconds"].append(time.perf_counter() - started)
        model.eval()
        with torch.no_grad():
            size = train_params.validation_batch_size
            for images, labels in zip(x_val.split(size), y_val.split(size), strict=True):
                outputs = model(images)
                step.loss(outputs, labels)
                outputs.argmax(1).eq(labels).sum()
        seconds["seconds"].append(time.perf_counter() - started)
    return seconds
