"""Optimizers, learning-rate schedules and losses from the [train] table (all Keras' own classes)."""

import math

import keras


def schedule(t, steps_per_epoch):
    """The learning rate: a float, or a keras LearningRateSchedule stepping per batch.
    ("plateau" is a constant here; the ReduceLROnPlateau callback lowers it, see callbacks.py.)"""
    lr, total = t["lr"], t["epochs"] * steps_per_epoch
    kind = t["schedule"]
    if kind in ("constant", "plateau"):
        return lr
    if kind == "step":
        bounds = [int(round(m * steps_per_epoch)) for m in sorted(t["milestones"])]
        values = [lr * t["decay"] ** i for i in range(len(bounds) + 1)]
        steps = keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
        warm = int(round(t["warmup_epochs"] * steps_per_epoch))
        return WarmUp(steps, warm, t["min_lr"]) if warm else steps
    if kind == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=max(1, int(t["decay_epochs"] * steps_per_epoch)), decay_rate=t["decay"])
    if kind == "polynomial":
        return keras.optimizers.schedules.PolynomialDecay(lr, max(1, total), t["min_lr"], power=t["power"])
    if kind == "linear":
        return LinearWarmupDecay(lr, max(1, total), int(round(t["warmup_epochs"] * steps_per_epoch)), t["min_lr"])
    if kind == "cosine":
        warm = int(round(t["warmup_epochs"] * steps_per_epoch))
        if warm:  # Keras' own linear warm-up, then the cosine from the peak: a one-cycle shape
            return keras.optimizers.schedules.CosineDecay(t["min_lr"], max(1, total - warm), alpha=t["min_lr"] / lr,
                                                          warmup_target=lr, warmup_steps=warm)
        return keras.optimizers.schedules.CosineDecay(lr, max(1, total), alpha=t["min_lr"] / lr)
    raise ValueError(kind)


@keras.saving.register_keras_serializable(package="suite")
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """A straight line from `floor` up to `peak` over `warmup_steps`, then a straight line down to `floor` at
    `total_steps`: the piecewise-linear one-cycle of Page 2018's ResNet-9 ([0, 5, 24] epochs → [0, 0.4, 0]).
    Keras ships a warm-up with CosineDecay only (its PolynomialDecay has none), so this one is written here."""

    def __init__(self, peak, total_steps, warmup_steps=0, floor=0.0):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.warmup_steps, self.floor = int(warmup_steps), float(floor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm, rest = self.warmup_steps, max(1, self.total_steps - self.warmup_steps)
        up = self.floor + (self.peak - self.floor) * step / max(1, warm)
        down = self.peak + (self.floor - self.peak) * keras.ops.minimum((step - warm) / rest, 1.0)
        return keras.ops.where(step < warm, up, down)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "floor": self.floor}


@keras.saving.register_keras_serializable(package="suite")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """A straight rise from `floor` to `schedule`'s value at `warmup_steps`, then `schedule` itself (the gradual
    warm-up of Goyal et al. 2017) — for the step schedule, which Keras ships without one; written here."""

    def __init__(self, schedule, warmup_steps, floor=0.0):
        if isinstance(schedule, dict):  # from a saved optimizer
            schedule = keras.optimizers.schedules.deserialize(schedule)
        self.schedule, self.warmup_steps, self.floor = schedule, int(warmup_steps), float(floor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak = keras.ops.cast(self.schedule(self.warmup_steps), "float32")
        up = self.floor + (peak - self.floor) * step / max(1, self.warmup_steps)
        return keras.ops.where(step < self.warmup_steps, up, keras.ops.cast(self.schedule(step), "float32"))

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "warmup_steps": self.warmup_steps,
                "floor": self.floor}


def optimizer(t, steps_per_epoch):
    lr = schedule(t, steps_per_epoch)
    name = t["optimizer"]
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=t["momentum"], nesterov=t["nesterov"])
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=t["momentum"])
    return {"adam": keras.optimizers.Adam, "adagrad": keras.optimizers.Adagrad,
            "adadelta": keras.optimizers.Adadelta, "ftrl": keras.optimizers.Ftrl}[name](lr)


def one_hot(t):
    """Whether the loss wants one-hot targets (everything but the sparse cross-entropy)."""
    return t["loss"] != "sparse_categorical_crossentropy"


def loss(t):
    name, ls = t["loss"], t["label_smoothing"]
    if name == "sparse_categorical_crossentropy":
        if ls:
            raise ValueError("label smoothing needs one-hot targets: use loss = categorical_crossentropy")
        return keras.losses.SparseCategoricalCrossentropy()
    if name == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(label_smoothing=ls)
    if name == "binary_crossentropy":  # on the softmax outputs, one-vs-rest per class
        return keras.losses.BinaryCrossentropy(label_smoothing=ls)
    return keras.losses.MeanSquaredError()


def metrics(t, num_classes):
    sparse = not one_hot(t)
    acc = keras.metrics.SparseCategoricalAccuracy if sparse else keras.metrics.CategoricalAccuracy
    top = keras.metrics.SparseTopKCategoricalAccuracy if sparse else keras.metrics.TopKCategoricalAccuracy
    out = [acc(name="accuracy")]
    if num_classes > 5:
        out.append(top(k=5, name="top5"))
    return out


def is_finite(x):
    return x is not None and math.isfinite(x)
