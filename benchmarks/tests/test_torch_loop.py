"""The PyTorch peer (`benchmarks/torch_loop.py`) runs each variant's recipe as Keras does."""

import keras
import numpy as np
import pytest

from benchmarks import torch_loop
from stages.models import build_model, compile_model, learning_rate
from stages.params import ModelParams, load_params
from tests.conftest import REPO, repo_params

# A Keras optimizer setting, and where PyTorch keeps it in a param group.
TORCH_SETTING = {
    "beta_1": lambda group: group["betas"][0],
    "beta_2": lambda group: group["betas"][1],
    "epsilon": lambda group: group["eps"],
    "amsgrad": lambda group: group["amsgrad"],
    "rho": lambda group: group["alpha"],
    "momentum": lambda group: group["momentum"],
    "centered": lambda group: group["centered"],
    "nesterov": lambda group: group["nesterov"],
}
UNUSED = {  # Keras settings that the train stage leaves at their defaults (no clipping, no EMA)
    "clipnorm": None,
    "global_clipnorm": None,
    "clipvalue": None,
    "use_ema": False,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}
STEPS_PER_EPOCH = 7


def keras_and_peer(params: ModelParams) -> tuple[keras.Model, torch_loop.nn.Module]:
    model = build_model(params)
    compile_model(model, params, STEPS_PER_EPOCH, steps_per_execution=1)
    return model, torch_loop.build(params)


def augmentation_amounts(layers: list) -> dict[str, float]:
    """The shift and the rotation of the augmentation layers, Keras's or the peer's."""
    amounts = {}
    for layer in layers:
        if isinstance(layer, keras.layers.RandomTranslation):
            assert layer.height_factor == layer.width_factor
            amounts["shift"] = layer.height_factor
        elif isinstance(layer, keras.layers.RandomRotation):
            amounts["degrees"] = layer.factor[1] * 360
        elif isinstance(layer, torch_loop.RandomAffine):
            amounts |= {"shift": layer.shift} if layer.shift else {"degrees": layer.degrees}
    return amounts


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # a schedule, no training
@pytest.mark.parametrize("variant", list(repo_params()["models"]))
def test_the_pytorch_peer_runs_the_variants_recipe(variant: str) -> None:
    """The peer's model, optimizer, schedule, loss and augmentation are the Keras model's."""
    params = load_params(REPO / "params.yaml").model(variant)
    model, peer = keras_and_peer(params)
    recipe = torch_loop.recipe(params, peer, STEPS_PER_EPOCH)

    assert sum(p.numel() for p in peer.parameters()) == model.count_params()
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [m.p for m in peer.modules() if isinstance(m, torch_loop.nn.Dropout)] == dropouts
    assert augmentation_amounts(list(peer.modules())) == pytest.approx(
        augmentation_amounts(model.layers)
    )

    config = model.optimizer.get_config()
    assert type(recipe.optimizer).__name__ == type(model.optimizer).__name__
    assert {key: config[key] for key in UNUSED} == UNUSED
    group = recipe.optimizer.param_groups[0]
    settings = set(config) - set(UNUSED) - {"name", "learning_rate", "weight_decay"}
    settings -= {"ema_momentum", "ema_overwrite_frequency"}  # EMA is off (UNUSED)
    for key in settings:
        assert TORCH_SETTING[key](group) == pytest.approx(config[key], rel=1e-6), key
    assert group["weight_decay"] == 0  # decoupled, as Keras's: applied by the loop itself
    assert recipe.weight_decay == pytest.approx(config["weight_decay"] or 0.0)
    assert recipe.loss.label_smoothing == model.loss.get_config()["label_smoothing"]

    keras_rates = learning_rate(params, STEPS_PER_EPOCH)  # what compile_model gave Keras
    for step in range(params.epochs * STEPS_PER_EPOCH):  # the rate of each step, before it
        keras_rate = keras_rates(step) if callable(keras_rates) else keras_rates
        assert group["lr"] == pytest.approx(float(keras_rate), rel=1e-5, abs=1e-9), step
        if recipe.schedule:
            recipe.schedule.step()


def test_the_peer_decays_every_weight_as_keras_does_before_its_step() -> None:
    """One SGD step at rate r and decay d: w <- w (1 - r d) - r g, in Keras and in the peer."""
    params = (
        load_params(REPO / "params.yaml")
        .model("wide")
        .model_copy(
            update={
                "optimizer": "sgd",
                "lr_schedule": "constant",
                "weight_decay": 0.5,
                "learning_rate": 0.1,
                "label_smoothing": 0.0,
                "hidden_units": [4],
            }
        )
    )
    model, peer = keras_and_peer(params)
    weights = [w.numpy() for w in model.weights]
    with torch_loop.torch.no_grad():
        for parameter, weight in zip(peer.parameters(), weights, strict=True):
            parameter.copy_(torch_loop.torch.from_numpy(weight.T.copy()))
    images = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    labels = np.arange(5)
    model.train_on_batch(images, np.eye(10, dtype=np.float32)[labels])
    recipe = torch_loop.recipe(params, peer, STEPS_PER_EPOCH)
    torch_loop.training_step(
        peer, recipe, torch_loop.torch.from_numpy(images), torch_loop.torch.from_numpy(labels)
    )
    for parameter, weight in zip(peer.parameters(), model.weights, strict=True):
        np.testing.assert_allclose(parameter.detach().numpy().T, weight.numpy(), atol=1e-6)
