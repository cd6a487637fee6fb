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


def augmentation(params: ModelParams) -> list[keras.layers.Layer]:
    """Random shifts and rotations of each training image; Keras skips them at inference."""
    layers: list[keras.layers.Layer] = []
    if params.augment_shift:
        shift = params.augment_shift
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant"))
    if params.augment_rotation:
        turn = params.augment_rotation / 360
        layers.append(keras.layers.RandomRotation(turn, fill_mode="constant"))
    return layers


def convolution_blocks(params: ModelParams) -> list[keras.layers.Layer]:
    """Per entry of `conv_filters`: Conv2D, BatchNormalization if set, activation, pooling."""
    pooling = {"max": keras.layers.MaxPooling2D, "average": keras.layers.AveragePooling2D}
    layers: list[keras.layers.Layer] = []
    for filters in params.conv_filters:
        if params.batch_norm:
            layers.append(keras.layers.Conv2D(filters, params.kernel_size, use_bias=False))
            layers.append(keras.layers.BatchNormalization())
            layers.append(keras.layers.Activation(params.activation))
        else:
            layers.append(
                keras.layers.Conv2D(filters, params.kernel_size, activation=params.activation)
            )
        if params.pooling in pooling:
            layers.append(pooling[params.pooling](pool_size=2))
    return layers


def build_model(params: ModelParams) -> keras.Model:
    """The variant's layers on the 28x28 image; hidden Dense layers are followed by Dropout if set.

    layout `rows`: the Dense layers act on each 28-pixel row, then Flatten (the 2016 small model).
    layout `flat`: Flatten first, then the Dense layers.
    layout `conv`: convolution blocks, Flatten, then the Dense layers.
    Augmentation layers, when set, come first and act on the image with a channel axis.
    """
    layers: list = [keras.Input(shape=IMAGE_SHAPE)]
    augment = augmentation(params)
    if augment or params.layout == "conv":
        layers.append(keras.layers.Reshape((*IMAGE_SHAPE, 1)))
    layers.extend(augment)
    if params.layout == "conv":
        layers.extend(convolution_blocks(params))
    elif augment:
        layers.append(keras.layers.Reshape(IMAGE_SHAPE))
    if params.layout in ("flat", "conv"):
        layers.append(keras.layers.Flatten())
    for units in params.hidden_units:
        layers.append(keras.layers.Dense(units, activation=params.activation))
        if params.dropout > 0:
            layers.append(keras.layers.Dropout(params.dropout))
    if params.layout == "rows":
        layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name=params.name)


def flops_per_image(model: keras.Model) -> int:
    """Forward-pass FLOPs of the Dense and Conv2D layers: 2 per multiply-add of each kernel.

    A kernel acts once per output position (each row for `rows`, each pixel for Conv2D);
    activations, pooling and normalisation are left out, being a small fraction.
    """
    return sum(
        2 * int(np.prod(layer.kernel.shape)) * int(np.prod(layer.output.shape[1:-1]))
        for layer in model.layers
        if hasattr(layer, "kernel")
    )


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
