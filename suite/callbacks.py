"""Keras callbacks the runner adds. Keras' own (TensorBoard, BackupAndRestore, ModelCheckpoint,
ReduceLROnPlateau, TerminateOnNaN) do the work; the small ones here only add what Keras lacks."""

import math
import time

import keras


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the current learning rate into the epoch logs so TensorBoard and the history record it.
    Must come before the TensorBoard callback in the list."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochStats(keras.callbacks.Callback):
    """Epoch wall time and training throughput (images/s), logged like a metric."""

    def __init__(self, examples_per_epoch):
        super().__init__()
        self.examples = examples_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self.t0
        if logs is not None:
            logs["epoch_time"] = dt
            logs["images_per_sec"] = self.examples / dt if dt > 0 else 0.0


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that also remembers where the loss stopped being finite."""

    def __init__(self):
        super().__init__()
        self.where = None  # {"epoch": e, "batch": b, "loss": value}
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = {"epoch": self.epoch + 1, "batch": batch + 1, "loss": str(float(loss))}
            self.model.stop_training = True
