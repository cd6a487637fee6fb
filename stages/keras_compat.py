"""Two fixes that let Keras 3 train under MultiWorkerMirroredStrategy; applied only for it.

With two or more workers, the pinned Keras fails in `model.fit`:

1. `_maybe_symbolic_build` reduces the first batch across the workers to learn its shapes, and
   that collective fails (keras-team/keras#20585). The fix builds from the shapes and dtypes of
   the training data's element spec: no collective, and no batch drawn (drawing one starts an
   iterator, which would move the shuffle on by an epoch against a run on one worker).
2. `reduce_per_replica` averages the logged values along axis 0, which a scalar loss does not
   have (tensorflow/tensorflow#72388). The fix averages every value over the replicas with
   `axis=None`, element by element, so a scalar stays a scalar and a vector metric keeps its
   shape, as Keras's own "mean" does on one machine.

Both were checked on the Keras versions in VERIFIED_KERAS only; `apply()` refuses any other, so
an upgrade is a deliberate step: rerun the two-worker test of tests/test_scale.py, then add the
version. Only the train stage under `multi_worker` imports this module.
"""

from typing import Any

import keras
import tensorflow as tf

from stages.errors import StageError

VERIFIED_KERAS = ("3.15.1",)

if keras.__version__ in VERIFIED_KERAS:  # Keras internals, whose layout other versions may change
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    KERAS_REDUCE_PER_REPLICA = trainer.reduce_per_replica


def build_from_element_spec(
    self: keras.Model, iterator: Any = None, data_batch: Any = None
) -> None:
    """Keras's `_maybe_symbolic_build`, building from the element spec of the data."""
    if self._distribute_strategy is None:
        return
    if iterator is not None:
        data_batch = iterator.data_adapter.get_tf_dataset().element_spec
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
    """Keras's `reduce_per_replica`, averaging across workers element by element."""
    if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
        return tree.map_structure(lambda value: strategy.reduce("MEAN", value, None), values)
    return KERAS_REDUCE_PER_REPLICA(values, strategy, reduction)


def apply() -> None:
    """Patch the two functions, on a verified Keras version only."""
    if keras.__version__ not in VERIFIED_KERAS:
        raise StageError(
            f"train.strategy multi_worker needs a Keras fix checked on Keras "
            f"{', '.join(VERIFIED_KERAS)}, not on Keras {keras.__version__}",
            "install the pinned versions (`make install`), or verify the fix in "
            "stages/keras_compat.py on this version",
        )
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_element_spec
    trainer.reduce_per_replica = reduce_per_replica
