"""The model builders give the 2016 architectures with their exact parameter counts."""

import keras
import numpy as np
import pytest

from stages.models import build_model, compile_model, flops_per_image, one_hot
from stages.params import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")


def layer_summary_of(model) -> list[tuple[str, tuple]]:
    return [(layer.__class__.__name__, tuple(layer.output.shape[1:])) for layer in model.layers]


def layer_summary(variant: str) -> list[tuple[str, tuple]]:
    return layer_summary_of(build_model(PARAMS.model(variant)))


def test_small_model_acts_on_rows_and_has_9474_params() -> None:
    model = build_model(PARAMS.model("small"))
    assert model.count_params() == 9474
    assert [layer.count_params() for layer in model.layers] == [812, 812, 0, 7850]
    assert layer_summary("small") == [
        ("Dense", (28, 28)),
        ("Dense", (28, 28)),
        ("Flatten", (784,)),
        ("Dense", (10,)),
    ]


def test_wide_dropout_model_has_669706_params() -> None:
    assert build_model(PARAMS.model("wide_dropout")).count_params() == 669_706
    assert layer_summary("wide_dropout") == [
        ("Flatten", (784,)),
        ("Dense", (512,)),
        ("Dropout", (512,)),
        ("Dense", (512,)),
        ("Dropout", (512,)),
        ("Dense", (10,)),
    ]


def test_wide_model_is_the_same_without_dropout() -> None:
    assert build_model(PARAMS.model("wide")).count_params() == 669_706
    assert [name for name, _ in layer_summary("wide")] == ["Flatten", "Dense", "Dense", "Dense"]


def test_label_smoothing_and_weight_decay_reach_the_compiled_model() -> None:
    params = PARAMS.model("wide").model_copy(update={"label_smoothing": 0.1, "weight_decay": 0.05})
    model = build_model(params)
    compile_model(model, params, steps_per_epoch=10, steps_per_execution=1)
    assert model.loss.label_smoothing == 0.1
    assert model.optimizer.weight_decay == 0.05
    # Smoothed targets: 0.9 + 0.01 on the digit, 0.01 elsewhere; the loss sees exactly that.
    probabilities = np.full((1, 10), 0.1, dtype=np.float32)
    expected = -np.log(0.1)  # every class at 0.1: the cross-entropy of any target is -log 0.1
    assert float(model.loss(one_hot(np.array([3])), probabilities)) == pytest.approx(expected)
    assert one_hot(np.array([3, 0])).tolist()[0] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_no_weight_decay_leaves_the_optimizer_without_it() -> None:
    params = PARAMS.model("wide").model_copy(update={"weight_decay": 0.0})
    model = build_model(params)
    compile_model(model, params, steps_per_epoch=10, steps_per_execution=1)
    assert params.weight_decay == 0.0 and model.optimizer.weight_decay is None


def test_conv_layout_builds_blocks_of_conv_activation_and_pooling() -> None:
    params = PARAMS.model("wide").model_copy(
        update={"layout": "conv", "conv_filters": [32, 64], "kernel_size": 3, "hidden_units": [128]}
    )
    model = build_model(params)
    # 3x3x1x32 + 32; 3x3x32x64 + 64; (5*5*64)x128 + 128; 128x10 + 10
    assert model.count_params() == 320 + 18_496 + 204_928 + 1_290 == 225_034
    assert [(name, shape) for name, shape in layer_summary_of(model)] == [
        ("Reshape", (28, 28, 1)),
        ("Conv2D", (26, 26, 32)),
        ("MaxPooling2D", (13, 13, 32)),
        ("Conv2D", (11, 11, 64)),
        ("MaxPooling2D", (5, 5, 64)),
        ("Flatten", (1600,)),
        ("Dense", (128,)),
        ("Dense", (10,)),
    ]
    assert model(np.zeros((2, 28, 28), dtype=np.float32)).shape == (2, 10)


def test_batch_norm_replaces_the_conv_bias_and_average_pooling_is_used() -> None:
    params = PARAMS.model("wide").model_copy(
        update={
            "layout": "conv",
            "conv_filters": [8],
            "kernel_size": 5,
            "pooling": "average",
            "batch_norm": True,
            "hidden_units": [16],
        }
    )
    model = build_model(params)
    # 5x5x1x8 (no bias) + 4x8 BatchNormalization; (12*12*8)x16 + 16; 16x10 + 10
    assert model.count_params() == 200 + 32 + 18_448 + 170
    assert [name for name, _ in layer_summary_of(model)] == [
        "Reshape",
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "AveragePooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]


def test_cnn_variant_has_its_exact_parameter_count() -> None:
    params = PARAMS.model("cnn")
    model = build_model(params)
    assert model(np.zeros((2, 28, 28), dtype=np.float32)).shape == (2, 10)
    assert model.count_params() == 184_586  # 5x5 kernels: 832 + 51,264 + 131,200 + 1,290
    translation, rotation = model.layers[1:3]
    assert isinstance(translation, keras.layers.RandomTranslation)
    assert translation.height_factor == translation.width_factor == 0.1  # of the image, each way
    assert isinstance(rotation, keras.layers.RandomRotation)
    assert rotation.factor == pytest.approx((-10 / 360, 10 / 360))  # 10 degrees, as turns


def test_augmentation_on_a_dense_layout_keeps_its_image_shape() -> None:
    params = PARAMS.model("small").model_copy(update={"augment_shift": 0.1})
    model = build_model(params)
    assert model.count_params() == 9474
    assert [name for name, _ in layer_summary_of(model)][:3] == [
        "Reshape",
        "RandomTranslation",
        "Reshape",
    ]
    assert layer_summary_of(model)[2][1] == (28, 28)


def test_flops_per_image_count_two_per_multiply_add_of_each_kernel() -> None:
    assert flops_per_image(build_model(PARAMS.model("small"))) == 2 * (2 * 28 * 28 * 28 + 784 * 10)
    wide = 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert flops_per_image(build_model(PARAMS.model("wide"))) == wide == 1_337_344
    conv = PARAMS.model("wide").model_copy(
        update={"layout": "conv", "conv_filters": [4], "kernel_size": 3, "hidden_units": [8]}
    )
    # 3x3x1x4 on 26x26 positions, then (13*13*4)x8, then 8x10
    assert flops_per_image(build_model(conv)) == 2 * (9 * 4 * 26 * 26 + 676 * 8 + 80)
