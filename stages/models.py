"""Build and compile the Keras model that a variant's params describe."""

import keras
import numpy as np
from keras.optimizers.schedules import LearningRateSchedule

from stages.mnist import IMAGE_SHAPE, NUM_CLASSES
from stages.params import ModelParams

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


def build_model(params: ModelParams) -> keras.Model:
    """Hidden Dense layers on the 28x28 image, each followed by Dropout when it is set.

    layout `rows`: the Dense layers act on each 28-pixel row, then Flatten (the 2016 small model).
    layout `flat`: Flatten first, then the Dense layers.
    """
    layers: list = [keras.Input(shape=IMAGE_SHAPE)]
    if params.layout == "flat":
        layers.append(keras.layers.Flatten())
    for units in params.hidden_units:
        layers.append(keras.layers.Dense(units, activation=params.activation))
        if params.dropout > 0:
            layers.append(keras.layers.Dropout(params.dropout))
    if params.layout == "rows":
        layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name=params.name)


def learning_rate(params: ModelParams, steps_per_epoch: int) -> float | LearningRateSchedule:
    """The constant rate, or a cosine decay from it to zero over all training steps."""
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            params.learning_rate, decay_steps=params.epochs * steps_per_epoch
        )
    return params.learning_rate


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Digit labels as float32 one-hot rows, the targets that label smoothing needs."""
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def compile_model(
    model: keras.Model, params: ModelParams, steps_per_epoch: int, steps_per_execution: int
) -> None:
    """Cross-entropy on one-hot targets; `weight_decay` is Keras's decoupled decay (AdamW-style)."""
    optimizer = OPTIMIZERS[params.optimizer](
        learning_rate(params, steps_per_epoch), weight_decay=params.weight_decay or None
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
