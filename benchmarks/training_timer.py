"""A probe for benchmarks/train_speed.py: the seconds of training in an epoch."""

import time

import keras


class TrainingTimer(keras.callbacks.Callback):
    """Adds `train_seconds` to the epoch's logs: from the epoch's start to its validation's."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.trained = time.perf_counter() - self.started

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        logs["train_seconds"] = self.trained
