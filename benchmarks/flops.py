"""FLOPs of one training step per image, as TensorFlow computes them.

A training step runs each kernel layer forward, then backward twice: the gradient of its kernel
and the gradient of its input. No one needs the gradient of the image, so the first kernel
layer's input gradient is never computed (the tape skips it for a Dense layer; for a
convolution TensorFlow prunes the unused op before the graph runs): 6 FLOPs per
multiply-add of every kernel, less 2 per multiply-add of the first. Activations, pooling,
biases and the optimizer's update are left out, being a small fraction.
"""

import keras
import numpy as np

from stages.models import flops_per_image


def training_flops_per_image(model: keras.Model) -> int:
    """Forward, kernel gradients and input gradients of every kernel layer but the first."""
    first = next(layer for layer in model.layers if hasattr(layer, "kernel"))
    positions = int(np.prod(first.output.shape[1:-1]))  # rows, pixels, or 1 for flat Dense
    first_forward = 2 * int(np.prod(first.kernel.shape)) * positions
    return 3 * flops_per_image(model) - first_forward
