"""Keras callbacks the runner adds. Keras' own (TensorBoard, ReduceLROnPlateau, TerminateOnNaN) do most of the
work; the ones here add what Keras lacks, chiefly runs that can be interrupted at any moment and resumed exactly:

- `Backup` commits the training state atomically at every epoch end and mid-epoch (log.backup_every, and when a
  signal arrives). Keras' BackupAndRestore commits between epochs only, writes `latest.weights.h5` in place and
  then `training_metadata.json` (a kill during the write leaves a corrupt file, one between the two weights an
  epoch ahead of the counter), and leaves out the random-number generators' states, the running metric sums, the
  history and the callbacks' counters that an exact resume needs. Here each commit is written into a temporary
  folder, checksummed, and renamed to `backup/epoch-E[-step-S]` (rename is atomic); the newest two are kept, and
  `commits.restore_point` falls back from a damaged one.
- `Preemption`: SIGTERM / Ctrl-C commit at the next step boundary and stop with exit 143 / 130.
- `Segments`: the callback list of a run resumed mid-epoch, which trains the rest of that epoch and the following
  epochs in two fit calls, seen by the callbacks as one training. It also hands the step's figures to the
  callbacks that only show or check them (progress bar, NaN stop) one call late, so that a batch end does not wait
  for the device (see `BATCH_LOGS`).
- `TensorBoard` flushes its event files at every epoch end, before the backup commits, and `trim_events` drops,
  on resume, the points of any epoch that was logged but not committed: steps stay continuous.
- `BestCheckpoint` writes best.keras atomically (Keras' ModelCheckpoint writes in place).
"""

import contextlib
import json
import math
import os
import pathlib
import shutil
import time

import keras
from keras.src.utils import python_utils  # pythonify_logs and is_default, as Keras' CallbackList uses them

from .commits import STATE, WEIGHTS, commit_name, file_sha256, newest_first, state_digest
from .errors import one_line


def fsync_path(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_model(model, path):
    """model.save(path) atomically: the file is complete or absent/old, never half-written."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")  # Keras wants the .keras suffix
    model.save(tmp)
    fsync_path(tmp)
    os.replace(tmp, path)


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the current learning rate into the epoch logs so TensorBoard and the history record it.
    Must come before the TensorBoard callback in the list."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def kernel_layers(model):
    """[(layer name, kernel variable)] of every layer with a trainable `kernel` (Conv, Dense), in layer order,
    nested models (the Augment wrapper's network, blocks) included. Names made unique with _2, _3, …"""
    walk = getattr(model, "_flatten_layers", None)  # Keras' own depth-first walk over tracked sublayers
    layers = walk(include_self=False, recursive=True) if walk else model.layers
    out, seen = [], set()
    for layer in layers:
        k = getattr(layer, "kernel", None) if layer.trainable else None
        if not isinstance(k, keras.Variable) or not k.trainable or id(k) in seen:
            continue
        seen.add(id(k))
        name, i = layer.name, 1
        while any(n == name for n, _ in out):
            i += 1
            name = f"{layer.name}_{i}"
        out.append((name, k))
    return out


class GradientNorms(keras.callbacks.Callback):
    """log.grad_norms: at every epoch end, the L2 norm of the loss gradient with respect to each Conv/Dense kernel
    on one fixed training batch (runner.first_batch; with several outputs the first output's loss), in training
    mode, as TensorBoard scalars grad_norm/<layer> in `log_dir` (the run "gradients"), and grad_norm_first,
    grad_norm_last and grad_norm_ratio (first/last kernel layer) in the epoch logs: the vanishing-gradient
    measurement (sigmoid nets' first layers get orders of magnitude less than their last). The probe leaves the
    training untouched: BatchNorm statistics and random-seed states are restored after it. Must come before the
    TensorBoard callback. TensorFlow only (GradientTape); on another backend it logs nothing."""

    def __init__(self, batch_ds, log_dir, probe=None):
        super().__init__()
        self.batch_ds, self.log_dir = batch_ds, str(log_dir)
        self.probe = probe  # data parallel: the process's own copy of the network (Validate keeps it current)
        self.batch, self.kernels, self.writer = None, [], None

    @property
    def net(self):
        return self.probe if self.probe is not None else self.model

    def on_train_begin(self, logs=None):
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf

        self.kernels = kernel_layers(self.net)
        for x, y in self.batch_ds.take(1):
            self.batch = (x, y)
        if self.kernels and self.batch is not None:
            self.writer = tf.summary.create_file_writer(self.log_dir)

    def norms(self):
        """[(layer name, gradient norm)] for the kernels the (first) output's loss reaches. The compiled data loss
        alone, without the weight-decay penalties of model.losses: their gradient, weight_decay·W, does not pass
        through the network and would put a floor under the norms that hides a vanishing gradient (plain20's
        default 1e-4 is about as large as the whole data gradient of a sigmoid net's first conv)."""
        import tensorflow as tf

        model, (x, y) = self.net, self.batch
        opt = model.optimizer
        scale = 1.0  # mixed_float16: differentiate the scaled loss as training does, so small gradients survive
        if opt is not None and hasattr(opt, "scale_loss"):
            scale = float(keras.ops.convert_to_numpy(opt.scale_loss(keras.ops.ones((), "float32"))))
        fn = keras.losses.get(model.loss[0] if isinstance(model.loss, (list, tuple)) else model.loss)
        state = model.non_trainable_variables  # BatchNorm moving statistics, seed generators, metrics
        saved = [v.numpy() for v in state]
        try:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                if isinstance(y_pred, (list, tuple)):  # auxiliary heads: the classifier's loss alone
                    y, y_pred = y[0], y_pred[0]
                loss = keras.ops.cast(fn(y, y_pred), "float32") * scale
            grads = tape.gradient(loss, [k for _, k in self.kernels])
        finally:
            for v, s in zip(state, saved):
                v.assign(s)
        return [(name, float(tf.norm(tf.cast(g, tf.float32))) / scale)
                for (name, _), g in zip(self.kernels, grads) if g is not None]

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            return
        import tensorflow as tf

        norms = self.norms()
        if not norms:
            return
        with self.writer.as_default(step=epoch):  # epoch-stepped like Keras' epoch_* scalars (see trim_events)
            for name, value in norms:
                tf.summary.scalar(f"grad_norm/{name}", value)
        self.writer.flush()  # before the backup commits: see the module docstring
        if logs is not None:
            first, last = norms[0][1], norms[-1][1]
            logs["grad_norm_first"], logs["grad_norm_last"] = first, last
            logs["grad_norm_ratio"] = first / last if last > 0 else float("nan")

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EpochStats(keras.callbacks.Callback):
    """Epoch wall time and training throughput (images/s), logged like a metric. An epoch resumed mid-way counts
    the time its committed part took before the interruption (Position.seconds), not the part lost to it."""

    def __init__(self, examples_per_epoch, position=None):
        super().__init__()
        self.examples, self.position = examples_per_epoch, position or Position()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter() - self.position.seconds

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self.t0
        if logs is not None:
            logs["epoch_time"] = dt
            logs["images_per_sec"] = self.examples / dt if dt > 0 else 0.0


def _clamp(callback, batch):
    """Keras (3.15) reports the last call of an epoch as ending at begin + steps_per_execution − 1 even when the
    epoch ends sooner (batch 16 of 11); the real last batch is the epoch's (less the batches a resumed epoch
    had trained before this fit call: Position.offset)."""
    # Keras' ProgbarLogger keeps the epoch's length as `target` and leaves `params` unset (its set_params).
    steps = (callback.params or {}).get("steps") or getattr(callback, "target", None)
    offset = getattr(getattr(callback, "position", None), "offset", 0)
    return min(batch, steps - 1 - offset) if steps else batch


# How a callback uses the logs at a batch end (its `batch_logs`), read by Segments:
#   "late": reads the figures, and may get them one call late (shows or checks them);
#   "unread": acts at the step boundary without reading them (commits, signals);
#   anything else that overrides on_train_batch_end / on_batch_end reads them at once, as Keras does.
# Reading a figure waits until the device has run the step that computes it (pythonify_logs: float(value)), and a
# batch end waits in the training loop; the step already dispatched is then the only work the device has queued.
# Keras' answer is async dispatch (callbacks on a thread pool), all or nothing per list, which the step-boundary
# callbacks here cannot take (a commit reads the training state of the step it records). So when no callback
# needs them at once, the "late" ones get call k's figures at the end of call k + 1, when the device has run it
# and has call k + 1 queued, and at the epoch's end. Written here because Keras has no per-callback choice.
BATCH_LOGS = ("late", "unread")


class Progbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with the batch clamped to the epoch (see _clamp): no "16/11 … -3s" at an epoch's end;
    an epoch resumed mid-way goes on from the batch it stopped at (Position)."""

    batch_logs = "late"

    def __init__(self, position=None):
        super().__init__()
        self.position = position or Position()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(self.position.offset + _clamp(self, batch), logs)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that also remembers where the loss stopped being finite (1-based epoch and batch). It may see
    a call's loss one call late (Segments): the training then stops a call later, the epoch is not committed
    either way, and Backup settles the figures before a mid-epoch commit."""

    batch_logs = "late"

    def __init__(self, position=None):
        super().__init__()
        self.where = None  # {"epoch": e, "batch": b, "loss": value}
        self.epoch, self.position = 0, position or Position()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.where is None and loss is not None and not math.isfinite(float(loss)):
            self.where = {"epoch": self.epoch + 1, "batch": self.position.offset + _clamp(self, batch) + 1,
                          "loss": str(float(loss))}
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` (atomically) whenever `monitor` reaches a new maximum. `best` is part of
    the backup state, so a resumed run does not overwrite a better model with a worse one.
    defer (epoch-end commits spaced out, log.commit_interval): a new best is held in memory (its weights and
    optimizer slots) and written by `flush`, which Backup calls before each commit and which runs at the training's
    end: best.keras is then written at most once per commit, and still before the commit that records `best`."""

    def __init__(self, path, monitor, source=None, local=None, defer=False):
        super().__init__()
        self.path, self.monitor, self.best = pathlib.Path(path), monitor, -math.inf
        self.source = source  # data parallel: the process's own copy (Validate keeps it current)
        self.local = local or contextlib.nullcontext  # distribute.Plan.local: a save of this process alone
        self.defer, self.pending = defer, None

    @property
    def net(self):
        return self.source if self.source is not None else self.model

    def _variables(self):
        net = self.net
        extra = list(net.optimizer.variables) if getattr(net, "optimizer", None) is not None else []
        seen, out = set(), []
        for v in list(net.weights) + extra:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get(self.monitor)
        if v is None or not math.isfinite(float(v)) or float(v) <= self.best:
            return
        self.best = float(v)
        if self.defer:  # (on JAX the training state is in the variables at an epoch end)
            self.pending = [keras.ops.convert_to_numpy(x) for x in self._variables()]
            return
        with self.local():
            save_model(self.net, self.path)

    def flush(self):
        """Writes a held best model: its values go into the network for the save, then the current ones back."""
        if self.pending is None:
            return
        variables = self._variables()
        now = [keras.ops.convert_to_numpy(x) for x in variables]
        try:
            for x, value in zip(variables, self.pending):
                x.assign(value)
            with self.local():
                save_model(self.net, self.path)
        finally:
            for x, value in zip(variables, now):
                x.assign(value)
        self.pending = None

    def on_train_end(self, logs=None):
        self.flush()


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback whose event files are flushed at every epoch end (the writer otherwise
    holds up to 2 minutes of events in memory, which a kill would lose after the backup committed them), and
    which skips Keras' per-batch `batch_*` summaries when update_freq="epoch": no writer is active then, so they
    write nothing, yet cost ~0.4 ms a step (6 % of LeNet-5's step on 2 CPU cores)."""

    @property
    def batch_logs(self):  # per-batch summaries read the figures; without them nothing does
        return "unread" if self.update_freq == "epoch" else None

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" and not self._should_write_train_graph and not self._should_trace:
            return
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for w in self._writers.values():
            w.flush()


COMMIT_FORMAT = 2
ARRAYS = "arrays.npz"  # random-number generator states, and mid-epoch the running metric sums


class Validate(keras.callbacks.Callback):
    """Validation at each epoch end in place of Keras' own, for two cases. Data parallel (suite/distribute.py): on
    this process's own copy of the network (runner.local_copy) on one device, exact for any number of examples (a
    batch sharded over D devices must divide by D) and needing no other process; the copy's weights are kept those
    of the training (BestCheckpoint, GradientNorms and the test read them). eval.precise_bn: the network's
    BatchNorm statistics recomputed first (suite/precise_bn.py), which Keras' validation has no hook for. Puts the
    figures into the epoch logs as Keras' validation does (val_loss, val_accuracy, ...); first in the list, as every
    other callback reads them."""

    def __init__(self, target, val_ds, local, precise_bn=None):
        super().__init__()
        self.target, self.val_ds, self.local, self.precise_bn = target, val_ds, local, precise_bn

    @property
    def copy(self):
        """Validating a copy of the training network (data parallel), not the training network itself."""
        return self.target is not self.model

    def sync(self):
        if self.copy:
            weights = self.model.get_weights()  # replicated: every process holds them whole
            with self.local():
                self.target.set_weights(weights)

    def on_epoch_end(self, epoch, logs=None):
        self.sync()
        if self.precise_bn is not None:
            with self.local():
                self.precise_bn()
                weights = self.target.get_weights() if self.copy else None
            if weights is not None:  # the training network keeps them too: the backup commit and sync() carry them
                self.model.set_weights(weights)
        if self.val_ds is None or logs is None:
            return
        with self.local():
            res = self.target.evaluate(self.val_ds, verbose=0, return_dict=True)
        logs.update({f"val_{k}": float(v) for k, v in res.items()})

    def on_train_end(self, logs=None):
        self.sync()


class Position:
    """Where the training is: `offset` = batches of the current epoch trained before this fit call began (a run
    resumed mid-epoch trains the rest of that epoch in a fit call of its own, whose batches Keras numbers from 0).
    Shared by the callbacks that number batches (Backup, Progbar, StopOnNaN)."""

    def __init__(self):
        self.offset = 0
        self.seconds = 0.0  # training time of those batches (EpochStats adds it to the epoch's time)


class Backup(keras.callbacks.Callback):
    """Commits the training state atomically (see the module docstring) at every epoch end and, mid-epoch, every
    `every` (config.parse_every's) steps or seconds and when `preempt` (a Preemption) has caught a signal. A commit holds
    the weights and optimizer slots, the optimizer's iteration count and learning rate, the data position (epoch,
    batch: the stream is a function of them, suite/pipeline.py), mid-epoch the running metric sums (so the epoch's
    logged means come out as without the interruption), the full history, and the `stateful` callbacks' attributes
    ({name: (object, [attribute, ...])}, e.g. ReduceLROnPlateau's wait/best). The newest two commits are kept, so a
    damaged newest one falls back to the one before (restore_point). stop: a StopOnNaN; an epoch in which the loss
    diverged is not committed. Keras' BackupAndRestore commits only between epochs and writes in place.
    `settle` is called before a mid-epoch commit (Segments.settle), so `stop` has seen the committed step's loss."""

    batch_logs = "unread"

    def __init__(self, backup_dir, *, steps, restore=None, stateful=None, stop=None, every=None, preempt=None,
                 position=None, write=True, local=None, spacing=None, epochs=None, before=()):
        super().__init__()
        # write=False (a data-parallel process other than the chief): restores, never writes; local: Plan.local
        self.write, self.local = write, local or contextlib.nullcontext
        self.dir = pathlib.Path(backup_dir)
        self.steps, self.restore, self.stateful, self.stop = steps, restore, stateful or {}, stop
        self.every, self.preempt, self.position = every, preempt, position or Position()
        self.history = {}  # every epoch's logs, restored ones included (updated in place: others hold it)
        self.metrics = None  # running metric sums of a mid-epoch commit, put back at its epoch's start
        self.epoch, self.last = 0, (0, time.monotonic())  # last commit: (batch within the epoch, clock)
        self.epoch_start = time.monotonic()
        self.at = None  # (epoch, batch) of the newest commit this process wrote
        # spacing (log.commit_interval, seconds): an epoch end commits only when this long has passed since the
        # last commit, or it is the last epoch (`epochs`), or a signal came; None: every epoch end
        self.spacing, self.epochs, self.committed = spacing, epochs, time.monotonic()
        self.before = before  # called before each commit is written (BestCheckpoint.flush)
        self.settle = lambda: None  # the runner puts Segments.settle here

    def on_train_begin(self, logs=None):
        if self.write and self.dir.is_dir():
            for p in self.dir.glob(".tmp-*"):  # a commit that a kill interrupted
                shutil.rmtree(p, ignore_errors=True)
        state = self.restore
        if state is None:
            return
        opt = self.model.optimizer
        if opt is not None and not opt.built:
            opt.build(self.model.trainable_variables)
        self.model.load_weights(pathlib.Path(state["path"]) / WEIGHTS)  # weights and optimizer slots
        if opt is not None:
            opt.iterations.assign(state["iterations"])
            if state.get("learning_rate") is not None and not _scheduled(opt):
                opt.learning_rate = state["learning_rate"]  # ReduceLROnPlateau may have lowered it
        for name, (obj, attrs) in self.stateful.items():
            for a in attrs:
                if a in state.get("callbacks", {}).get(name, {}):
                    setattr(obj, a, state["callbacks"][name][a])
        self.history.clear()
        self.history.update({k: list(v) for k, v in state.get("history", {}).items()})
        if ARRAYS in state.get("files", {}):
            import numpy as np

            with np.load(pathlib.Path(state["path"]) / ARRAYS) as f:
                for i, v in enumerate(_rng_states(self.model)):
                    v.assign(f[f"rng{i}"])
                if state.get("step"):
                    self.metrics = [f[k] for k in sorted((k for k in f.files if k.startswith("metric")),
                                                         key=lambda k: int(k[6:]))]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.last = epoch, (self.position.offset, time.monotonic())
        self.epoch_start = time.monotonic() - self.position.seconds
        if self.metrics is not None:  # after Keras reset them: the sums of the batches trained before the kill
            for v, value in zip(self.model.metrics_variables, self.metrics):
                v.assign(value)
            self.metrics = None

    def on_train_batch_end(self, batch, logs=None):
        done = self.position.offset + _clamp(self, batch) + 1  # batches of this epoch trained
        if done >= self.steps or (self.stop is not None and self.stop.where):
            return  # the epoch-end commit follows (or the loss diverged)
        due = self.preempt is not None and self.preempt.signal is not None
        if self.every is not None and not due:
            kind, n = self.every
            due = done - self.last[0] >= n if kind == "steps" else time.monotonic() - self.last[1] >= n
        if due:
            self.settle()  # the figures of the step to commit: a loss gone NaN there is not committed
            if self.stop is not None and self.stop.where:
                return
            self.commit(self.epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            try:
                self.history.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                pass
        if self.stop is not None and self.stop.where:
            return  # a diverged epoch is not a completed one
        if self.spacing and time.monotonic() - self.committed < self.spacing and epoch + 1 != self.epochs and (
                self.preempt is None or self.preempt.signal is None):
            return  # committed lately: a kill now loses less than `spacing` of training, resumed exactly
        self.commit(epoch + 1, 0)

    def commit(self, epoch, step):
        if not self.write:  # the chief commits this point (Preemption reads `at`)
            self.last, self.at, self.committed = (step, time.monotonic()), (epoch, step), time.monotonic()
            return
        with self.local():
            self._commit(epoch, step)

    def _commit(self, epoch, step):
        for fn in self.before:
            fn()
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{epoch}-{step}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model = self.model  # (on JAX this property syncs the training state into the variables first)
        model.save_weights(tmp / WEIGHTS)
        import numpy as np

        arrays = {f"rng{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(_rng_states(model))}
        if step:
            arrays.update({f"metric{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.metrics_variables)})
        np.savez(tmp / ARRAYS, **arrays)
        files = [WEIGHTS, ARRAYS]
        opt = model.optimizer
        lr = None
        if opt is not None and not _scheduled(opt):
            lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
        state = {
            "format": COMMIT_FORMAT,
            "epoch": epoch,
            "step": step,
            "iterations": int(keras.ops.convert_to_numpy(opt.iterations)) if opt is not None else 0,
            "learning_rate": lr,
            "seconds": time.monotonic() - self.epoch_start if step else 0.0,  # this epoch's training so far
            "history": self.history,
            "callbacks": {name: {a: _plain(getattr(obj, a)) for a in attrs if hasattr(obj, a)}
                          for name, (obj, attrs) in self.stateful.items()},
            "time": time.time(),
        }
        for name in files:
            fsync_path(tmp / name)
        state["files"] = {name: file_sha256(tmp / name) for name in files}
        state["digest"] = state_digest(state)
        with open(tmp / STATE, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        _fault("commit")  # tests: a kill with the commit written but not yet renamed
        final = self.dir / commit_name(epoch, step)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)  # the commit point
        fsync_path(self.dir)
        for _, p in newest_first(self.dir)[2:]:  # keep this one and the one before
            shutil.rmtree(p, ignore_errors=True)
        self.last, self.at, self.committed = (step, time.monotonic()), (epoch, step), time.monotonic()


def _rng_states(model):
    """The state variables of the model's random-number generators (keras.random.SeedGenerator: Dropout, the
    Augment layer), in a fixed order. model.save_weights leaves them out, so a resumed run would draw other
    dropout masks and crops than an uninterrupted one."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


def _fault(point):
    """Fault injection for the tests: SUITE_FAULT="<point>:<n>[:<action>]" acts the n-th time this process passes
    `point` (commit: a commit written but not yet renamed into place; step: after a training call's callbacks;
    results: just before results.json is written). action: kill (SIGKILL, the default), term / int (SIGTERM /
    SIGINT, as a preempting scheduler or Ctrl-C sends), term2 (two SIGTERMs), raise (a crash: RuntimeError)."""
    spec = os.environ.get("SUITE_FAULT", "")
    bits = spec.split(":")
    if bits[0] != point or len(bits) < 2:
        return
    _FAULTS[spec] = _FAULTS.get(spec, 0) + 1
    if _FAULTS[spec] != int(bits[1]):
        return
    import signal

    action = bits[2] if len(bits) > 2 else "kill"
    if action == "raise":
        raise RuntimeError(f"injected fault at {point} {bits[1]}")
    sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "term2": signal.SIGTERM, "int": signal.SIGINT}[action]
    os.kill(os.getpid(), sig)
    if action == "term2":
        time.sleep(0.05)  # let the first one be handled
        os.kill(os.getpid(), sig)


_FAULTS = {}  # passes per SUITE_FAULT spec in this process


class FaultSteps(keras.callbacks.Callback):
    """SUITE_FAULT="step:<n>" (tests): a kill after the n-th training call's callbacks. Last in the list."""

    batch_logs = "unread"

    def on_train_batch_end(self, batch, logs=None):
        _fault("step")


class Preemption(keras.callbacks.Callback):
    """SIGTERM (a preemptible machine's notice) and SIGINT (Ctrl-C) during training: the training stops at the next
    step boundary after Backup has committed there (or at the epoch end, if the epoch's last step has run), and
    the run ends with errors.Stopped (exit 143 / 130). A second signal, or one outside training (loading data,
    the final test), stops the process at once: every commit is atomic, so nothing is torn. Install with `with`
    around the training (main thread only: elsewhere Python cannot catch signals and this does nothing). Last in
    the callback list."""

    SIGNALS = ("SIGTERM", "SIGINT")
    batch_logs = "unread"

    def __init__(self, resume_hint, backup=None):
        super().__init__()
        self.backup, self.hint = backup, resume_hint
        self.signal, self.training, self.old = None, False, {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old = {}

    def _handle(self, signum, frame):
        import signal
        import sys

        name = signal.Signals(signum).name
        if self.signal is not None or not self.training:
            print(f"{name}: stopping now; the run keeps its last commit; {self.hint}", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signal = signum
        print(f"\n{name}: saving at the next step boundary (a second {name} stops at once)", file=sys.stderr,
              flush=True)

    def _stop(self, where):
        import signal

        from .errors import Stopped

        name = signal.Signals(self.signal).name
        raise Stopped(f"stopped by {name} {where} (saved); {self.hint}", 128 + self.signal)

    def on_train_batch_end(self, batch, logs=None):
        b = self.backup
        if self.signal is not None and b.at is not None and b.at[0] == b.epoch and b.at[1] > 0:
            self._stop(f"in epoch {b.epoch + 1}, after batch {b.at[1]} of {b.steps}")

    def on_epoch_end(self, epoch, logs=None):
        if self.signal is not None:
            self._stop(f"after epoch {epoch + 1}")


def _batch_logs(callback):
    """A callback's batch_logs (BATCH_LOGS), None for one that reads the figures at once, False for one with
    nothing to do at a batch end (Keras' own test, as in CallbackList's async dispatch: both methods unoverridden)."""
    kind = getattr(callback, "batch_logs", None)
    if kind in BATCH_LOGS:
        return kind
    idle = python_utils.is_default(callback.on_train_batch_end) and python_utils.is_default(callback.on_batch_end)
    return False if idle else None


class Segments(keras.callbacks.CallbackList):
    """One callback list for the fit calls of one run: a run resumed mid-epoch trains the rest of that epoch with
    one model.fit and the following epochs with another; its callbacks see one training (one on_train_begin, one
    on_train_end: `end()` after the last call) and the whole epoch's batch numbers (Position).
    Batch ends (BATCH_LOGS): when no callback reads the figures at once, the "late" ones get each call's at the next
    call's end or the epoch's (`settle`), the others run at once with the figures unread; otherwise every callback
    gets them at once, in list order, as in Keras."""

    def __init__(self, callbacks, *, model, epochs, steps, verbose):
        super().__init__(callbacks, add_history=True, add_progbar=False, model=model, verbose=verbose,
                         epochs=epochs, steps=steps)
        self.begun, self.ended = False, False
        kinds = [(c, _batch_logs(c)) for c in self.callbacks]
        acting = [(c, k) for c, k in kinds if k is not False]  # callbacks with work at a batch end
        self.lag = any(k == "late" for _, k in acting) and all(k in BATCH_LOGS for _, k in acting)
        self.late = [c for c, k in acting if self.lag and k == "late"]
        self.now = [(c, k != "unread") for c, k in acting if not (self.lag and k == "late")]  # (callback, reads)
        self.pending = None  # (batch, logs) of the last call, for the "late" ones

    def on_train_batch_end(self, batch, logs=None):
        if self.lag:
            self.settle()  # the call before: the device has run it
            self.pending = (batch, logs)
        figures = None
        for c, reads in self.now:
            if reads and figures is None:
                figures = python_utils.pythonify_logs(logs)  # waits for this call's step
            c.on_train_batch_end(batch, figures if reads else logs)

    def settle(self):
        """The "late" callbacks' batch end for the last call, if they have not had it."""
        if self.pending is None:
            return
        (batch, logs), self.pending = self.pending, None
        figures = python_utils.pythonify_logs(logs)
        for c in self.late:
            c.on_train_batch_end(batch, figures)

    def on_epoch_end(self, epoch, logs=None):
        self.settle()
        super().on_epoch_end(epoch, logs)

    def on_train_begin(self, logs=None):
        if not self.begun:
            self.begun = True
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        self.settle()
        self.last_logs = logs

    def end(self):
        if self.begun and not self.ended:
            self.ended = True
            super().on_train_end(getattr(self, "last_logs", None))


class SetEpoch(keras.callbacks.Callback):
    """Sets the training pipeline's epoch variable at every epoch start, before Keras iterates the dataset
    afresh: epoch e's batches are then the stream's epoch e (suite/pipeline.py)."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


def _scheduled(opt):
    """Whether the optimizer's learning rate is a schedule (a function of iterations) rather than a variable."""
    inner = getattr(opt, "inner_optimizer", opt)  # LossScaleOptimizer under mixed precision
    return isinstance(getattr(inner, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule)


def _plain(v):
    try:
        return float(v) if not isinstance(v, (int, str, bool)) else v
    except (TypeError, ValueError):
        return None


def _event_files(run_dir):
    return [p for p in pathlib.Path(run_dir).rglob("events.out.tfevents.*")
            if "backup" not in p.relative_to(run_dir).parts]


def trim_events(run_dir, epoch, iterations):
    """Before a run resumes at `epoch` (0 = from the start), drop every TensorBoard point it will write
    again: epoch-stepped points at step ≥ epoch, iteration-stepped ones (`*_vs_iterations`) past
    `iterations`, and the graph/model/hparams summaries each start rewrites. A record cut short by a kill
    is dropped too. Files are rewritten atomically. Returns the number of points dropped."""
    for p in pathlib.Path(run_dir).rglob(".trim.tmp"):  # a rewrite that a kill interrupted
        p.unlink()
    files = _event_files(run_dir)
    if not files:
        return 0
    if epoch == 0:
        for p in files:
            p.unlink()
        return len(files)
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    dropped = 0
    for path in files:
        kept, changed = [], False
        try:
            for rec in tf.data.TFRecordDataset(str(path)):
                kept.append(rec.numpy())
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError):
            changed = True  # a truncated last record
        out = []
        for raw in kept:
            ev = event_pb2.Event.FromString(raw)
            if ev.HasField("file_version"):
                out.append(raw)
                continue
            if ev.HasField("graph_def") or ev.HasField("meta_graph_def"):
                changed, dropped = True, dropped + 1
                continue
            if ev.HasField("summary"):
                values = [v for v in ev.summary.value if _keep(v.tag, ev.step, epoch, iterations)]
                if len(values) != len(ev.summary.value):
                    changed, dropped = True, dropped + len(ev.summary.value) - len(values)
                    if not values:
                        continue
                    del ev.summary.value[:]
                    ev.summary.value.extend(values)
                    raw = ev.SerializeToString()
                out.append(raw)
            elif ev.step < epoch:
                out.append(raw)
            else:
                changed, dropped = True, dropped + 1
        if changed:
            tmp = path.with_name(".trim.tmp")  # no "tfevents" in the name: TensorBoard must not read it
            with tf.io.TFRecordWriter(str(tmp)) as w:
                for raw in out:
                    w.write(raw)
            os.replace(tmp, path)
    return dropped


def _keep(tag, step, epoch, iterations):
    if tag == "keras" or tag.startswith("_hparams_"):
        return False  # written again when the run restarts
    if tag.endswith("_vs_iterations"):
        return step <= iterations
    return step < epoch


class RunSummaries(keras.callbacks.Callback):
    """What Keras' TensorBoard callback does not log, written to the run directory (see suite.tblog):
    at the start the run's settings as HParams and a grid of augmented training images; at the end (unless the
    loss diverged) the test confusion matrix, per-class accuracy, and test / best validation accuracy as scalars,
    which the HParams dashboard shows as columns beside those of train/ and validation/."""

    batch_logs = "unread"  # its batch end only closes a profiler trace

    def __init__(self, run_dir, cfg, *, train_ds=None, test=None, mean=None, std=None, class_names=None,
                 stop=None, hparams=True, history=None, predictor=None, local=None):
        super().__init__()
        self.predictor = predictor  # data parallel: the process's own copy of the network predicts the test set
        self.local = local or contextlib.nullcontext
        self.history = history  # Backup.history: every epoch's logs, those before a resume included
        self.run_dir, self.cfg, self.train_ds = str(run_dir), cfg, train_ds
        self.test = test  # (dataset, integer labels in the dataset's order)
        self.mean, self.std, self.class_names = mean, std, class_names
        self.stop, self.hparams = stop, hparams
        self.epoch, self.best_val = 0, None
        self.grid_done, self.mark_steps, self.trace = False, False, None

    def on_train_begin(self, logs=None):
        from . import tblog

        if self.hparams:
            name = f"{self.cfg['experiment']['name']}/{pathlib.Path(self.run_dir).name}"
            tblog.write_hparams(self.run_dir, tblog.run_hparams(self.cfg), trial_id=name)
        self.writer = tblog.tf.summary.create_file_writer(self.run_dir)  # one events file for the rest
        try:  # beside Keras' conceptual graph in train/
            tblog.log_op_graph(pathlib.Path(self.run_dir) / "train", self.model)
        except Exception as e:  # a graph TensorFlow cannot trace must not stop the training
            print(f"note: no op graph for TensorBoard ({one_line(e)})")

    def on_epoch_begin(self, epoch, logs=None):
        from . import tblog

        first, self.grid_done = not self.grid_done, True
        if first and self.train_ds is not None and self.mean is not None:
            # at the first epoch this process trains: step 0, or the epoch a resumed run restarts at
            tblog.log_augmented_batch(self.writer, self.train_ds, self.mean, self.std, self.cfg.get("data"),
                                      step=epoch)
        # --profile: mark each step of the first epoch so the profiler's overview and input-pipeline pages can
        # find them (Keras 3 marks profiled batches under a name XProf does not treat as a training step)
        self.mark_steps = bool(first and self.cfg.get("log", {}).get("profile")
                               and keras.backend.backend() == "tensorflow")

    def on_train_batch_begin(self, batch, logs=None):
        if self.mark_steps:
            import tensorflow as tf

            self.trace = tf.profiler.experimental.Trace("train", step_num=batch, _r=1)
            self.trace.__enter__()

    def on_train_batch_end(self, batch, logs=None):
        if self.trace is not None:
            self.trace.__exit__(None, None, None)
            self.trace = None

    def on_epoch_end(self, epoch, logs=None):
        self.mark_steps = False
        self.epoch = epoch + 1
        logs = {k: [v] for k, v in (logs or {}).items()} if self.history is None else self.history
        vals = next((v for k, v in logs.items() if k.startswith("val_") and k.endswith("accuracy")
                     and "top" not in k), [])
        for v in vals:
            if v is not None and math.isfinite(float(v)):
                self.best_val = float(v) if self.best_val is None else max(self.best_val, float(v))

    def on_train_end(self, logs=None):
        from . import tblog

        try:
            if self.stop is not None and self.stop.where:
                return  # diverged: the weights are not worth a confusion matrix
            if self.best_val is not None:
                tblog.write_scalars(self.writer, {"best_val_accuracy": self.best_val}, step=self.epoch)
            if self.test is None:
                return
            ds, labels = self.test
            with self.local():
                probs = (self.predictor if self.predictor is not None else self.model).predict(ds, verbose=0)
            if isinstance(probs, (list, tuple)):  # auxiliary heads: the first output is the classifier
                probs = probs[0]
            probs = keras.ops.convert_to_numpy(probs)
            tblog.log_confusion(self.writer, labels, probs.argmax(-1), class_names=self.class_names,
                                num_classes=probs.shape[-1], step=self.epoch)
        finally:
            self.writer.close()
