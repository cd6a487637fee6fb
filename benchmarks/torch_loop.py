"""The PyTorch peer of benchmarks/train_speed.py: a plain training loop of the same model.

Eager PyTorch on all cores, the variant's batch size and optimizer at PyTorch's defaults, the
arrays shuffled by a permutation of indices each epoch (no DataLoader), a validation pass after
every epoch, as `model.fit` does. Needs the `bench` extra: `pip install -e ".[bench]"`.
"""

import math
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from stages.params import ModelParams, feature_map_sizes

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": lambda parameters: torch.optim.SGD(parameters, lr=0.01),
}
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
}


class Augment(nn.Module):
    """Random shifts and rotations in training, as Keras's RandomTranslation and RandomRotation.

    One resampling does both, where Keras resamples twice: a little less work than the project.
    """

    def __init__(self, shift: float, degrees: float) -> None:
        super().__init__()
        self.shift, self.turn = shift, math.radians(degrees)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training or (self.shift == 0 and self.turn == 0):
            return images
        count = images.shape[0]
        angle = (torch.rand(count) * 2 - 1) * self.turn
        offset = (torch.rand(count, 2) * 2 - 1) * 2 * self.shift  # grid coordinates span 2
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)],
            1,
        )
        grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
        return functional.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def build(params: ModelParams) -> nn.Module:
    """The layers that stages.models.build_model builds, in PyTorch."""
    activation = ACTIVATIONS[params.activation]
    layers: list[nn.Module] = []
    if params.layout == "conv" or params.augment_shift or params.augment_rotation:
        layers += [nn.Unflatten(1, (1, 28)), Augment(params.augment_shift, params.augment_rotation)]
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
        layers += [nn.Flatten(1, 2)] if layers else []  # back from the augmentation's channel
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


def epoch_seconds(
    params: ModelParams,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    epochs: int,
) -> list[float]:
    """Wall-clock seconds of each epoch, training and validation."""
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    x, y = torch.from_numpy(train[0]).float() / 255, torch.from_numpy(train[1]).long()
    x_val = torch.from_numpy(validation[0]).float() / 255
    y_val = torch.from_numpy(validation[1]).long()
    model = build(params)
    optimizer = OPTIMIZERS[params.optimizer](model.parameters())
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(y)).split(params.batch_size):
            optimizer.zero_grad()
            functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for images, labels in zip(x_val.split(1000), y_val.split(1000), strict=True):
                outputs = model(images)
                functional.cross_entropy(outputs, labels)
                outputs.argmax(1).eq(labels).sum()
        seconds.append(time.perf_counter() - started)
    return seconds
