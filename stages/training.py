"""Training one variant: the train stage's work, once its params are known to be good."""

import stages.tf_quiet  # noqa: F401  (before anything imports TensorFlow)

# isort: split
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages.dataset import load_split
from stages.environment import environment
from stages.errors import StageError, raise_if_interrupted
from stages.files import atomic_output, json_text
from stages.keras_file import canonicalize
from stages.models import build_model, compile_model, one_hot, scale
from stages.params import ModelParams, Params, TrainParams
from stages.paths import history_file, model_file, training_file, training_metrics_file


def configure_tensorflow(params: TrainParams) -> None:
    """Seed every generator, make TensorFlow's ops deterministic and set its thread count."""
    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()
    if params.threads:
        tf.config.threading.set_intra_op_parallelism_threads(params.threads)
        tf.config.threading.set_inter_op_parallelism_threads(params.threads)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The `train.strategy` param as a tf.distribute strategy; batch sizes stay global under all.

    `mirrored` replicates over every local GPU, or over the logical CPU devices when there is no
    GPU; `multi_worker` reads the cluster from the TF_CONFIG environment variable.
    """
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        from stages import keras_compat  # Keras internals: loaded for multi_worker only

        keras_compat.apply()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


# What a collective raises when another task of the cluster died (its socket closed) or froze
# (the coordination service's heartbeat, 10 s by default, declared it unhealthy).
LOST_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.DeadlineExceededError,
)
TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def lost_peer(error: tf.errors.OpError) -> StageError:
    """The one-line error for a multi_worker task that died or froze, named as in TF_CONFIG."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec().as_dict()
    itself = (resolver.task_type, resolver.task_id)
    named = [(job, int(index)) for job, index in TASK_NAME.findall(error.message)]
    lost = [task for task in named if task != itself and task[0] in cluster]
    who = f"{lost[0][0]} {lost[0][1]} ({cluster[lost[0][0]][lost[0][1]]})" if lost else "a task"
    return StageError(
        f"multi_worker training lost {who}: it died or stopped answering",
        "restart every worker with its TF_CONFIG; `dvc repro` reruns the stage",
    )


def training_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """The training set in scaled, one-hot batches, in a new order each epoch drawn from `seed`.

    Keras's own path for arrays restarts its seeded shuffle with each epoch's iterator, so every
    epoch would see the same order; tf.data's shuffle draws the next order at each iteration.
    """
    inputs, targets = tf.constant(scale(images)), tf.constant(one_hot(labels))

    def batch(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.gather(inputs, indices), tf.gather(targets, indices)

    order = tf.data.Dataset.range(len(labels))
    order = order.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False  # else each epoch's end waits up to 2 s for its thread
    return order.batch(batch_size).map(batch).prefetch(2).with_options(options)


class EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall-clock `seconds` to the logs; list it before CSVLogger."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        logs["seconds"] = time.perf_counter() - self.started


class CSVLoggerFromOne(keras.callbacks.CSVLogger):
    """CSVLogger numbering epochs from 1, as Keras prints them and the training record counts."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch + 1, logs)


class StopOnCtrlC(keras.callbacks.Callback):
    """Ends training at the epoch's end if a Ctrl-C was swallowed; list it after the checkpoint."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        raise_if_interrupted()


def fit_variant(
    model_params: ModelParams,
    train_params: TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    model_path: Path,
    history_path: Path,
    verbose: int,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.callbacks.History:
    """Build, compile and fit one variant: the train stage's code path, also timed by benchmarks/.

    The model of the epoch that `checkpoint` names (the best validation accuracy, or the last)
    goes to `model_path`, the history to `history_path`. `extra_callbacks` (the benchmarks'
    probes) run after the stage's own.
    """
    configure_tensorflow(train_params)
    strategy = distribution_strategy(train_params.strategy)
    with strategy.scope():
        model = build_model(model_params)
        steps_per_epoch = math.ceil(len(train[1]) / model_params.batch_size)
        compile_model(model, model_params, steps_per_epoch, train_params.steps_per_execution)
    if verbose:
        model.summary()
        print(f"{train_params.strategy} strategy: {strategy.num_replicas_in_sync} replica(s)")
    callbacks = [
        EpochTimer(),
        CSVLoggerFromOne(str(history_path)),
        keras.callbacks.ModelCheckpoint(
            str(model_path),
            monitor="val_accuracy",
            mode="max",
            save_best_only=model_params.checkpoint == "best",
        ),
        StopOnCtrlC(),
        *extra_callbacks,
    ]
    try:
        return model.fit(
            training_batches(*train, model_params.batch_size, train_params.seed),
            epochs=model_params.epochs,
            shuffle=False,  # training_batches shuffles; Keras would warn that it cannot
            validation_data=(scale(validation[0]), one_hot(validation[1])),
            validation_batch_size=train_params.validation_batch_size,
            callbacks=callbacks,
            verbose=verbose,
        )
    except LOST_PEER_ERRORS as error:
        if train_params.strategy != "multi_worker":
            raise
        raise lost_peer(error) from None


def training_record(
    history: dict[str, list[float]], train_size: int, threads: int, checkpoint: str
) -> dict:
    """What training knows: the best epoch, the one ModelCheckpoint kept, epochs run, speed and
    environment."""
    val_accuracy = history["val_accuracy"]
    best = int(np.argmax(val_accuracy))
    kept = best if checkpoint == "best" else len(val_accuracy) - 1
    seconds = sum(history["seconds"])
    return {
        "validation": {
            "best_accuracy": float(val_accuracy[best]),
            "best_epoch": best + 1,
            "kept_accuracy": float(val_accuracy[kept]),
            "kept_epoch": kept + 1,
        },
        "epochs": len(val_accuracy),
        "timing": {
            "seconds": round(seconds, 2),
            "samples_per_second": round(len(val_accuracy) * train_size / seconds, 1),
        },
        "environment": environment(threads),
    }


def training_metrics(record: dict) -> dict:
    """The record without timings or machine: what the same params must reproduce."""
    return {"validation": record["validation"], "epochs": record["epochs"]}


def is_chief(params: TrainParams) -> bool:
    """Whether this process writes the outputs: always, except on a multi_worker non-chief.

    The chief is the `chief` task of TF_CONFIG if there is one, else worker 0.
    """
    if params.strategy != "multi_worker":
        return True
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    jobs = resolver.cluster_spec().jobs
    if not jobs or resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs


def fit_and_record(variant: str, params: Params, outputs: tuple[Path, Path, Path]) -> dict:
    """Fit the variant into (model, history, record) paths; return the record."""
    model_path, history_path, record_path = outputs
    train_set = load_split("train")
    history = fit_variant(
        params.model(variant),
        params.train,
        train_set,
        load_split("validation"),
        model_path,
        history_path,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    canonicalize(model_path)
    record = training_record(
        history.history, len(train_set[1]), params.train.threads, params.model(variant).checkpoint
    )
    record_path.write_text(json_text(record))
    return record


def train(variant: str, params: Params) -> None:
    """Fit the variant, keeping the epoch its `checkpoint` names, and record it.

    A multi_worker worker other than the chief trains in step with it but writes only to a
    temporary folder, removed at the end.
    """
    if not is_chief(params.train):
        with tempfile.TemporaryDirectory(prefix="worker-") as scratch:
            names = ("model.keras", "history.csv", "record.json")
            fit_and_record(variant, params, tuple(Path(scratch) / name for name in names))
        print(f"{variant}: trained as a worker; the chief saves the model")
        return
    with (
        atomic_output(model_file(variant)) as model_temporary,
        atomic_output(history_file(variant)) as history_temporary,
        atomic_output(training_file(variant)) as record_temporary,
        atomic_output(training_metrics_file(variant)) as metrics_temporary,
    ):
        record = fit_and_record(
            variant, params, (model_temporary, history_temporary, record_temporary)
        )
        metrics_temporary.write_text(json_text(training_metrics(record)))
    best = record["validation"]
    print(
        f"{variant}: best validation accuracy {best['best_accuracy']:.4f} at epoch "
        f"{best['best_epoch']} of {record['epochs']}; {record['timing']['seconds']:.1f} s; "
        f"saved epoch {best['kept_epoch']} to {model_file(variant)}"
    )
