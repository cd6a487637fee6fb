"""The training FLOPs that GFLOP/s counts are those TensorFlow computes, checked on its graph."""

import keras
import pytest
import tensorflow as tf
from tensorflow.python.framework.ops import get_stats_for_node_def

from benchmarks.flops import training_flops_per_image
from benchmarks.train_speed import restate
from stages.models import build_model, flops_per_image
from stages.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
BATCH = 8


def training_step_ops(model: keras.Model) -> list[tf.Operation]:
    """The ops that one gradient step of the model runs: those its gradients depend on in the
    graph that tf.function traces (TensorFlow prunes the rest before it runs the graph)."""
    loss = keras.losses.CategoricalCrossentropy()

    @tf.function
    def step(images: tf.Tensor, targets: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            value = loss(targets, model(images, training=True))
        return tape.gradient(value, model.trainable_variables)

    specs = tf.TensorSpec([BATCH, 28, 28]), tf.TensorSpec([BATCH, 10])
    graph = step.get_concrete_function(*specs)
    needed, todo = set(), [tensor.op for tensor in graph.outputs]
    while todo:
        op = todo.pop()
        if op not in needed:
            needed.add(op)
            todo += [tensor.op for tensor in op.inputs] + list(op.control_inputs)
    return list(needed)


def tensorflow_flops(ops: list[tf.Operation], kind: str) -> float:
    """TensorFlow's own FLOP statistics of the ops of one type, per image."""
    return sum(get_stats_for_node_def(op.graph, op.node_def, "flops").value for op in ops
               if op.type == kind) / BATCH  # fmt: skip


@pytest.mark.parametrize("variant", ["small", "wide"])
def test_dense_training_flops_equal_tensorflows_matmul_count(variant: str) -> None:
    model = build_model(PARAMS.model(variant))
    ops = training_step_ops(model)
    assert training_flops_per_image(model) == tensorflow_flops(ops, "MatMul")
    assert training_flops_per_image(model) < 3 * flops_per_image(model)  # no image gradient


def test_convolutions_skip_only_the_images_gradient() -> None:
    model = build_model(PARAMS.model("cnn"))
    ops = training_step_ops(model)
    kinds = [op.type for op in ops]
    assert kinds.count("Conv2DBackpropFilter") == 2  # both kernels' gradients
    assert kinds.count("Conv2DBackpropInput") == 1  # the second block's input, not the image
    dense = tensorflow_flops(ops, "MatMul") / 3  # forward, kernel and input gradients
    assert tensorflow_flops(ops, "Conv2D") + dense == flops_per_image(model)
    first = 2 * 5 * 5 * 1 * 32 * 24 * 24  # the first convolution's forward FLOPs
    assert training_flops_per_image(model) == 3 * flops_per_image(model) - first


def test_restating_gflops_counts_the_new_flops_over_the_measured_samples() -> None:
    report = {"matmul_ceiling_gflops": 200.0,
              "rows": [{"variant": "wide", "samples_per_second": 10_000, "gflops": 40.1,
                        "ceiling_fraction": 0.2}]}  # fmt: skip
    restated = restate(report, {"wide": 3_000_000})
    assert restated["rows"][0] == {"variant": "wide", "samples_per_second": 10_000,
                                   "gflops": 30.0, "ceiling_fraction": 0.15}  # fmt: skip
    assert report["rows"][0]["gflops"] == 40.1  # the committed report is not changed in place
