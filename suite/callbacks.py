"""Keras callbacks the runner adds. Keras' own (TensorBoard, BackupAndRestore, ReduceLROnPlateau,
TerminateOnNaN) do the work; the small ones here add what Keras lacks, chiefly safety against `kill -9`:

- `Backup` is Keras' BackupAndRestore with an atomic commit. Keras writes `latest.weights.h5` in place and
  then `training_metadata.json`, so a kill during the write leaves a corrupt file (the resume crashes) and a
  kill between the two leaves weights one epoch ahead of the epoch counter. Here each epoch is written into
  a temporary folder that is renamed to `backup/epoch-NNNNN` (rename is atomic), then older ones go. The
  commit also holds what Keras does not keep: the full history, optimizer iteration count, the plateau
  callback's and the best checkpoint's state, so a resumed run goes on exactly where it stopped.
- `TensorBoard` flushes its event files at every epoch end, before the backup commits, and `trim_events`
  drops, on resume, the points of any epoch that was logged but not committed: steps stay continuous.
- `BestCheckpoint` writes best.keras atomically (Keras' ModelCheckpoint writes in place).
"""

import json
import math
import os
import pathlib
import shutil
import time

import keras

WEIGHTS = "backup.weights.h5"
STATE = "state.json"


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

    def __init__(self, batch_ds, log_dir):
        super().__init__()
        self.batch_ds, self.log_dir = batch_ds, str(log_dir)
        self.batch, self.kernels, self.writer = None, [], None

    def on_train_begin(self, logs=None):
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf

        self.kernels = kernel_layers(self.model)
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

        model, (x, y) = self.model, self.batch
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


def _clamp(callback, batch):
    """Keras (3.15) reports the last call of an epoch as ending at begin + steps_per_execution − 1 even when the
    epoch ends sooner (batch 16 of 11); the real last batch is the epoch's."""
    steps = (callback.params or {}).get("steps")
    return min(batch, steps - 1) if steps else batch


class Progbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with the batch clamped to the epoch (see _clamp): no "16/11 … -3s" at an epoch's end."""

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(_clamp(self, batch), logs)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that also remembers where the loss stopped being finite (1-based epoch and batch)."""

    def __init__(self):
        super().__init__()
        self.where = None  # {"epoch": e, "batch": b, "loss": value}
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.where is None and loss is not None and not math.isfinite(float(loss)):
            self.where = {"epoch": self.epoch + 1, "batch": _clamp(self, batch) + 1, "loss": str(float(loss))}
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` (atomically) whenever `monitor` reaches a new maximum. `best` is part of
    the backup state, so a resumed run does not overwrite a better model with a worse one."""

    def __init__(self, path, monitor):
        super().__init__()
        self.path, self.monitor, self.best = pathlib.Path(path), monitor, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get(self.monitor)
        if v is None or not math.isfinite(float(v)) or float(v) <= self.best:
            return
        self.best = float(v)
        save_model(self.model, self.path)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback whose event files are flushed at every epoch end (the writer otherwise
    holds up to 2 minutes of events in memory, which a kill would lose after the backup committed them), and
    which skips Keras' per-batch `batch_*` summaries when update_freq="epoch": no writer is active then, so they
    write nothing, yet cost ~0.4 ms a step (6 % of LeNet-5's step on 2 CPU cores)."""

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" and not self._should_write_train_graph and not self._should_trace:
            return
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for w in self._writers.values():
            w.flush()


def _epoch_dirs(backup_dir):
    """Committed epochs in `backup_dir`, newest first: [(epoch, path)]."""
    out = []
    for p in pathlib.Path(backup_dir).glob("epoch-*"):
        try:
            out.append((int(p.name.split("-", 1)[1]), p))
        except ValueError:
            continue
    return sorted(out, reverse=True)


def committed(backup_dir):
    """The newest committed backup state (a dict with epoch, iterations, history, ...), or None."""
    for _, p in _epoch_dirs(backup_dir):
        try:
            state = json.loads((p / STATE).read_text())
        except (OSError, ValueError):
            continue
        if (p / WEIGHTS).is_file():
            return {**state, "path": str(p)}
    return None


class Backup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore with an atomic per-epoch commit (see the module docstring).

    stateful: {name: (object, [attribute, ...])} saved with each commit and restored on resume, e.g. the
    ReduceLROnPlateau callback's wait/best. stop: a StopOnNaN; an epoch in which the loss diverged is not
    committed. The backup is not deleted at train end: the runner deletes it after results.json is
    written, so a kill in between still finds the finished epochs."""

    def __init__(self, backup_dir, stateful=None, stop=None):
        super().__init__(str(backup_dir), delete_checkpoint=False)
        self.dir = pathlib.Path(backup_dir)
        self.stateful = stateful or {}
        self.stop = stop
        self.history = {}  # every epoch's logs, restored ones included
        self.restored = None  # the state resumed from, or None

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        if self.dir.is_dir():
            for p in self.dir.glob(".tmp-*"):  # a commit that a kill interrupted
                shutil.rmtree(p, ignore_errors=True)
        state = committed(self.dir)
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
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        self.model._initial_epoch = state["epoch"]
        self.restored = state

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            try:
                self.history.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                pass
        if self.stop is not None and self.stop.where:
            return  # a diverged epoch is not a completed one
        self.commit(epoch + 1)

    def commit(self, epoch):
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{epoch}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.model.save_weights(tmp / WEIGHTS)
        opt = self.model.optimizer
        lr = None
        if opt is not None and not _scheduled(opt):
            lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
        state = {
            "epoch": epoch,
            "iterations": int(keras.ops.convert_to_numpy(opt.iterations)) if opt is not None else 0,
            "learning_rate": lr,
            "history": self.history,
            "callbacks": {name: {a: _plain(getattr(obj, a)) for a in attrs if hasattr(obj, a)}
                          for name, (obj, attrs) in self.stateful.items()},
            "time": time.time(),
        }
        with open(tmp / STATE, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        fsync_path(tmp / WEIGHTS)
        final = self.dir / f"epoch-{epoch:05d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)  # the commit point
        fsync_path(self.dir)
        for e, p in _epoch_dirs(self.dir):
            if e != epoch:
                shutil.rmtree(p, ignore_errors=True)

    def on_train_end(self, logs=None):
        pass


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

    def __init__(self, run_dir, cfg, *, train_ds=None, test=None, mean=None, std=None, class_names=None,
                 stop=None, hparams=True):
        super().__init__()
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
            print(f"note: no op graph for TensorBoard ({type(e).__name__}: {str(e)[:200]})")

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
        v = next((float(x) for k, x in (logs or {}).items() if k.startswith("val_") and k.endswith("accuracy")
                  and "top" not in k), None)
        if v is not None and math.isfinite(v):
            self.best_val = v if self.best_val is None else max(self.best_val, v)

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
            probs = self.model.predict(ds, verbose=0)
            if isinstance(probs, (list, tuple)):  # auxiliary heads: the first output is the classifier
                probs = probs[0]
            probs = keras.ops.convert_to_numpy(probs)
            tblog.log_confusion(self.writer, labels, probs.argmax(-1), class_names=self.class_names,
                                num_classes=probs.shape[-1], step=self.epoch)
        finally:
            self.writer.close()
