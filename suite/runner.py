"""The one experiment runner: every command (run, tune trials, studies) trains through `run()`.

Order matters: everything that can be wrong with the input (config, data, network vs image size) is
checked before the run directory is created, so a mistake never leaves files behind or touches
earlier runs. A run directory is complete when it holds results.json (written atomically, last).
"""

import hashlib
import json
import math
import os
import pathlib
import platform
import shutil
import sys
import time

from . import commits, memory
from . import data as data_mod
from .errors import UserError, one_line

RESULTS = "results.json"
CONFIG = "config.json"


def write_json(path, obj):
    """Atomic write: a reader sees the old file or the new one, never half of one."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path):
    """A JSON file's content, or None when it is missing or unreadable (a torn or foreign file)."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


SINCE_HASHED = {"data.cutout": 0, "data.crop_fill": "constant", "train.plateau_monitor": "auto", "data.whiten": "none"}


def config_hash(cfg):
    """Identifies 'the same command' for resuming: the resolved config without display-only keys."""
    c = json.loads(json.dumps(cfg))
    c["train"].pop("verbose", None)
    c["experiment"].pop("description", None)
    c.pop("tune", None)  # the search space does not change what `run` trains
    c.pop("eval", None)  # nor does how the test set is evaluated
    c["log"].pop("backup_every", None)  # nor how often its state is committed
    c["log"].pop("commit_interval", None)
    c["data"].pop("autotune", None)  # nor tf.data's thread tuning: the pipeline yields the same
    c["train"].pop("distribute", None)  # nor on how many devices: a run resumes on other hardware
    for key, default in SINCE_HASHED.items():  # settings added later, at their default: as before they existed,
        sec, k = key.split(".")                # so a run begun by an older suite still resumes after an upgrade
        if c.get(sec, {}).get(k, default) == default:
            c.get(sec, {}).pop(k, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:8]


def status_of(run_dir):
    """'complete', 'diverged', 'failed' (from results.json) or 'incomplete' (no results.json yet)."""
    p = pathlib.Path(run_dir) / RESULTS
    if not p.is_file():
        return "incomplete"
    try:
        return json.loads(p.read_text()).get("status", "complete")
    except (OSError, ValueError):
        return "incomplete"


def prepare(cfg):
    """Load data and build the model, checking everything; nothing is written. Returns a dict of parts."""
    import keras

    from . import distribute, hardware, optim, registry, whiten

    distribute.initialize()  # SUITE_CPU_DEVICES, before anything touches a device
    d, t, m = cfg["data"], cfg["train"], cfg["model"]
    data = data_mod.load(d["name"])
    xtr, ytr, xva, yva = data_mod.splits(data, d)
    h, w = d["image_size"] or data.shape[:2]
    c = d["channels"] or data.shape[2]
    shape = (h, w, c)
    if d.get("cutout", 0) > min(h, w):
        raise UserError(f"data.cutout = {d['cutout']} is larger than the {h}×{w} images the network "
                        f"takes; use at most {min(h, w)} (Page 2018: 8 on 32×32 CIFAR)")
    if d.get("crop_fill") == "reflect" and d["crop"] >= min(h, w):  # a reflection repeats no edge pixel
        raise UserError(f"data.crop = {d['crop']} with data.crop_fill = 'reflect' needs images larger than the "
                        f"crop; these are {h}×{w}: use data.crop ≤ {min(h, w) - 1} or crop_fill = 'constant'")
    if d.get("whiten", "none") != "none" and h * w * c > whiten.MAX_VALUES:
        gib = (h * w * c) ** 2 * 4 / 2**30
        raise UserError(f"data.whiten = '{d['whiten']}' needs images of at most {whiten.MAX_VALUES:,} values "
                        f"(H·W·C), these have {h * w * c:,} ({h}×{w}×{c}): its matrix would be {gib:.1f} GiB; "
                        "use --set data.whiten=none, or smaller images (data.image_size)")
    if t["label_smoothing"] and not optim.one_hot(t):
        raise UserError("train.label_smoothing needs one-hot targets: also set train.loss=categorical_crossentropy")

    plan = distribute.plan(cfg)  # one device, or data parallel over several (suite/distribute.py)
    b = t["batch_size"]
    steps = len(xtr) // b if plan.drop_remainder else -(-len(xtr) // b)
    if steps == 0:
        raise UserError(f"train.batch_size {b} is more than the {len(xtr)} training examples, and data parallel "
                        f"training on JAX trains full batches only: use --batch-size {len(xtr)} or less")
    device = hardware.accelerator()
    eff = plan.settle(hardware.effective(cfg, steps, device), t)  # every "auto" setting decided for this machine
    keras.config.set_dtype_policy(eff["precision"])
    keras.utils.set_random_seed(t["seed"])
    if t["deterministic"] and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    kw = {k: v for k, v in m.items() if k != "name"}
    plan.activate()  # run() deactivates it when the run ends (suite bench trains on one device: no-op)
    try:
        with plan.scope():
            model = registry.build(m["name"], shape, data.num_classes, **kw)
        check_shapes(model, m["name"], shape)
    except ValueError as e:
        plan.deactivate()
        raise build_error(e, m["name"], shape) from None
    except BaseException:
        plan.deactivate()
        raise
    return dict(data=data, train=(xtr, ytr), val=(xva, yva), shape=shape, model=model, steps=steps,
                device=device, effective=eff, plan=plan)


def datasets(cfg, parts, raw=None, epoch=0, skip=0, stats=None):
    """The train/val/test tf.data pipelines `run` feeds, and the channel statistics. raw (default: what
    data.augment_on decided): ship raw pixels for the model's Augment layer (suite/augment.py). epoch, skip: the
    training stream's epoch (an int or a tf.Variable) and first batch (see pipeline.make). stats: an earlier call's
    (mean, std, pca), not computed over the training images again."""
    from . import optim, pipeline, whiten

    d, t = cfg["data"], cfg["train"]
    data, shape = parts["data"], parts["shape"]
    (xtr, ytr), (xva, yva) = parts["train"], parts["val"]
    raw = parts["effective"]["augment_on"] == "device" if raw is None else raw
    zca = None  # data.whiten's (μ, P) for the model's Whiten layer (on_device); not needed by a later stream
    if stats is None:
        mean, std = pipeline.channel_stats(xtr, shape[2])
        pca = pipeline.colour_pca(xtr, shape[2]) if d.get("pca_colour", 0.0) > 0 else None  # None: not 3 channels
        if d.get("whiten", "none") == "zca":
            zca = whiten.fit(pipeline.pixels(xtr, shape, d), math.prod(shape))
    else:
        mean, std, pca = stats
    n_out = len(parts["model"].outputs)
    common = dict(shape=shape, batch_size=t["batch_size"], data_cfg=d, seed=t["seed"], mean=mean, std=std,
                  num_classes=data.num_classes, one_hot=optim.one_hot(t), raw=raw,
                  autotune=parts["effective"]["autotune"])
    plan = parts["plan"]
    train = pipeline.make(xtr, ytr, training=True, n_outputs=n_out, pca=pca, epoch=epoch, skip=skip,
                          drop_remainder=plan.drop_remainder, **common)
    return dict(
        train=plan.local_part(train),  # several processes: each its slice of every global batch
        val=pipeline.make(xva, yva, training=False, n_outputs=n_out, **common) if len(xva) else None,
        test=pipeline.make(data.x_test, data.y_test, training=False, **common),
        mean=mean, std=std, raw=raw, pca=pca, zca=zca)


def first_batch(cfg, parts, ds):
    """A one-batch dataset for log.grad_norms: the first train.batch_size training examples (in data.order) through
    the training pipeline (`ds` = datasets()'s: same statistics, augmentation seed, raw or not) without the shuffle,
    i.e. the training stream's first batch when data.shuffle is false. Built apart from ds["train"] on purpose:
    every iteration of that draws the next shuffle order and augmentation seeds, so taking a batch from it would
    change what the training sees."""
    xtr, ytr = parts["train"]
    n = cfg["train"]["batch_size"]
    return _training_stream(cfg, parts, ds, xtr[:n], ytr[:n], shuffle=False)


def _training_stream(cfg, parts, ds, x, y, shuffle=None, **kw):
    """Images `x` through the training pipeline as `ds` = datasets()'s feeds them (statistics, augmentation and
    its seed, raw or not), not cached: epoch 0's batches unless `kw` says otherwise."""
    from . import optim, pipeline

    d, t = cfg["data"], cfg["train"]
    d = {**d, "cache": False, "shuffle": d["shuffle"] if shuffle is None else shuffle}
    return pipeline.make(x, y, shape=parts["shape"], batch_size=t["batch_size"], training=True, data_cfg=d,
                         seed=t["seed"], mean=ds["mean"], std=ds["std"], num_classes=parts["data"].num_classes,
                         one_hot=optim.one_hot(t), n_outputs=len(parts["model"].outputs), raw=ds["raw"],
                         pca=ds.get("pca"), **kw)


PRECISE_BN_CACHE = 256 * 2**20  # bytes of float32 pixels kept in memory (CIFAR-10's 8,192 images: 96 MiB)


def precise_bn(cfg, parts, ds, model):
    """eval.precise_bn's recomputation of `model`'s BatchNorm statistics (suite/precise_bn.py), or None (off, or
    no BatchNorm). Its images: eval.precise_bn training images drawn once at random (train.seed; whole batches, or
    the one short batch of a smaller set) through the training pipeline's augmentation, the same at every call,
    and kept in memory after the first when they fit PRECISE_BN_CACHE. Not taken from a training stream, which
    shuffles the whole set at every call: the input of a call on CIFAR-10 (2 busy cores), raw / host-augmented
    pixels, took 1.1–1.3 / 1.9–2.6 s that way, 0.23–0.29 / 0.70–0.77 s for the drawn images alone, 0.02 s kept."""
    import numpy as np

    from .precise_bn import PreciseBN, bn_layers

    images = cfg["eval"]["precise_bn"]
    if not images or not bn_layers(model):
        return None
    xtr, ytr = parts["train"]
    bs = cfg["train"]["batch_size"]
    n = min(images, len(xtr))
    n = n - n % bs if n >= bs else n
    pick = np.random.default_rng(cfg["train"]["seed"]).permutation(len(xtr))[:n]
    stream = _training_stream(cfg, parts, ds, xtr[pick], ytr[pick], shuffle=False)
    if n * math.prod(parts["shape"]) * 4 <= PRECISE_BN_CACHE:
        stream = stream.cache()
    return PreciseBN(model, stream)


def on_device(cfg, parts, ds):
    """The prepared network as it trains: behind the Whiten layer with data.whiten (suite/whiten.py), and behind
    the Augment layer when the pipeline ships raw pixels."""
    from . import augment, pipeline, whiten

    net = parts["model"]
    if ds.get("zca") is not None:
        net = whiten.wrap(net, ds["zca"], ds["mean"], ds["std"])
    if not ds["raw"]:
        return net
    dtype, scale = pipeline.raw_format(parts["train"][0], parts["shape"])
    d = cfg["data"]
    return augment.wrap(net, parts["shape"], dtype, mean=ds["mean"], std=ds["std"], scale=scale, crop=d["crop"],
                        flip=d["flip"], seed=cfg["train"]["seed"], pca=ds.get("pca"),
                        pca_sigma=d.get("pca_colour", 0.0), cutout=d.get("cutout", 0),
                        crop_fill=d.get("crop_fill", "constant"))


def compile_model(model, cfg, parts):
    """model.compile as `run` does it: optimizer, schedule, loss(es), metrics, jit and steps per call."""
    from . import optim

    t, eff = cfg["train"], parts["effective"]
    n_out, num_classes = len(model.outputs), parts["data"].num_classes
    kw = dict(optimizer=optim.optimizer(t, parts["steps"]), jit_compile=eff["jit_compile"],
              steps_per_execution=eff["steps_per_execution"])
    if n_out > 1:  # auxiliary classifiers (GoogLeNet): weighted into the loss, dropped at inference
        from .nets.googlenet import AUX_LOSS_WEIGHT

        model.compile(loss=[optim.loss(t)] * n_out, loss_weights=[1.0] + [AUX_LOSS_WEIGHT] * (n_out - 1),
                      metrics=[optim.metrics(t, num_classes)] + [[] for _ in range(n_out - 1)], **kw)
    else:
        model.compile(loss=optim.loss(t), metrics=optim.metrics(t, num_classes), **kw)
    return model


ADVICE = "use larger images (--set data.image_size=[32,32]), --set model.padding=same or a small-image stem"


def _size(shape):
    dims = [d for d in tuple(shape)[1:-1]]
    return "×".join("?" if d is None else str(d) for d in dims) if dims else "?"


def _describe(layer):
    """'Conv2D 5×5, stride 1, padding valid' from whatever of these the layer has."""
    bits = [type(layer).__name__]
    k = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if k is not None:
        bits[0] += " " + "×".join(map(str, k if isinstance(k, (tuple, list)) else (k,)))
    st = getattr(layer, "strides", None)
    if st is not None:
        st = tuple(st) if isinstance(st, (tuple, list)) else (st,)
        bits.append(f"stride {st[0] if len(set(st)) == 1 else '×'.join(map(str, st))}")
    if getattr(layer, "padding", None) in ("valid", "same"):
        bits.append(f"padding {layer.padding}")
    return ", ".join(bits)


def _failing_layer(tb):
    """The innermost Keras layer being called when a build failed, and its input tensor (or None, None).
    Keras filters its own frames from tracebacks but keeps the error handler's, whose `args` are
    (layer, inputs, ...)."""
    import keras

    found = (None, None)
    while tb is not None:
        loc = tb.tb_frame.f_locals
        args = loc.get("args")
        cand = args if isinstance(args, tuple) and args else (loc.get("self"), loc.get("inputs"))
        if isinstance(cand[0], keras.layers.Layer) and len(cand) > 1 and hasattr(cand[1], "shape"):
            found = (cand[0], cand[1])
        tb = tb.tb_next
    return found


def build_error(e, name, shape):
    """A one-line UserError for a builder's ValueError, naming the layer and the map size it got."""
    from .nets.blocks import KnobError

    h, w, c = shape
    msg = one_line(e, limit=None, kind=False)
    if isinstance(e, KnobError):  # a knob's value, wrong for any images
        return UserError(f"cannot build {name}: {msg[:300]}")
    layer, x = _failing_layer(e.__traceback__)
    if layer is None:  # the builder's own message (e.g. exercise2_cnn names the layer itself)
        return UserError(f"cannot build {name} for {h}×{w}×{c} images: {msg[:300]}")
    if any(s in msg.lower() for s in ("negative", "zero", "too small", "output size")):
        return UserError(f"{name} cannot take {h}×{w}×{c} images: layer {layer.name} ({_describe(layer)}) gets a "
                         f"{_size(x.shape)} feature map and its output would be smaller than 1×1; {ADVICE}")
    return UserError(f"cannot build {name} for {h}×{w}×{c} images: layer {layer.name} ({_describe(layer)}) on a "
                     f"{_size(x.shape)} input: {msg[:240]}")


def check_shapes(model, name, shape):
    """Keras lets some layers (e.g. VALID pooling) produce empty maps; a 0×N map is an error here."""
    h, w, c = shape
    for layer in model.layers:
        try:
            out = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(out) >= 3 and any(d is not None and d < 1 for d in out[1:-1]):
            try:
                src = layer.input.shape
            except (AttributeError, ValueError):
                src = out
            raise UserError(f"{name} cannot take {h}×{w}×{c} images: layer {layer.name} ({_describe(layer)}) turns a "
                            f"{_size(src)} feature map into {_size(out)}; {ADVICE}")


def run_dir_for(cfg, fresh=False):
    """logs/<experiment>/<run-id>/ — the newest unfinished run of the same config is resumed unless fresh
    (one that another process is training is left alone). Returns (path, resuming)."""
    root = pathlib.Path(cfg["log"]["dir"]) / cfg["experiment"]["name"]
    h = config_hash(cfg)
    if not fresh and root.is_dir():
        for d in sorted(root.glob(f"*-{h}"), reverse=True):
            if not d.is_dir() or is_locked(d):
                continue
            if status_of(d) == "incomplete":
                return d, True
            if (d / "backup").is_dir():  # finished, but killed before its backup was deleted
                shutil.rmtree(d / "backup", ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = root / f"{stamp}-{h}"
    n = 1
    while d.exists():  # two runs in the same second
        d = root / f"{stamp}.{n}-{h}"
        n += 1
    return d, False


def check_writable(path, need_bytes=0, shown=None):
    """Fails with one line if `path` (or the nearest existing parent) cannot take new files: checked
    before the run directory is created, so a bad log.dir leaves nothing behind. `shown`: the path to name."""
    p = pathlib.Path(path).absolute()
    path = shown or path
    while not p.exists() and p != p.parent:
        p = p.parent
    fix = "pick another with --logdir PATH"
    if not p.is_dir():
        raise UserError(f"cannot write the log directory {path}: {p} is a file, not a folder; {fix}")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the log directory {path}: {p} is not writable; {fix}")
    free = shutil.disk_usage(p).free
    if free < need_bytes:
        raise UserError(f"not enough disk space for {path}: {free / 1e6:.0f} MB free, about "
                        f"{need_bytes / 1e6:.0f} MB needed (checkpoints and backup); free some space or {fix}")


def make_dir(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write the log directory {path} ({e.strerror}); "
                        "pick another with --logdir PATH") from None


def lock(run_dir):
    """An exclusive lock on the run directory for this process's lifetime (released by the OS even after
    kill -9): two processes never train into the same directory. Returns the fd (or None without fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        return None
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{run_dir} is being trained by another process; wait for it, or use --fresh "
                        "for a new run") from None
    return fd


def is_locked(run_dir):
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def unlock(fd):
    if fd is not None:
        os.close(fd)


def run(cfg, *, fresh=False, callbacks=(), echo=print, run_dir=None, timer=None, cluster=None):
    """Train and evaluate one configuration. Returns the results dict (also in results.json).

    run_dir: use this directory (e.g. a tuner trial's) instead of logs/<experiment>/<run-id>/; an
    unfinished run there is resumed. callbacks: extra Keras callbacks (e.g. a tuner's). timer: a callback put
    after all the others (suite.bench's epoch timer, so an epoch's time includes every callback's work).
    cluster: distribute.cluster()'s, to train as one of several processes (every process calls run alike).

    Crash safety (kill -9 at any moment): every epoch end flushes TensorBoard, saves best.keras atomically
    and then commits the backup atomically (callbacks.Backup; log.commit_interval may leave an epoch end
    uncommitted, then best.keras waits for the next commit); a rerun of the same command finds the
    unfinished directory, drops TensorBoard points past the last commit and continues from there."""
    from . import distribute

    t_start = time.time()
    rss0 = memory.start()  # the run's peak host memory is measured from here (suite/memory.py)
    if cluster and cluster["processes"] > 1 and cfg["train"].get("distribute") == "none":
        raise UserError(f"train.distribute none cannot train as one of {cluster['processes']} processes; drop "
                        "--num-processes/--coordinator, or use --distribute data_parallel")
    distribute.initialize(cluster)  # join the other processes before anything touches a device
    parts = prepare(cfg)  # every input check: nothing has been written yet
    plan = parts["plan"]
    fd = None
    try:
        if plan.chief:
            try:
                run_dir, resumed, fd, done = _claim(cfg, parts, run_dir, fresh, echo)
            except UserError as e:
                plan.share({"error": str(e)})  # the other processes stop with the same line
                raise
            plan.share({"run_dir": str(run_dir), "resumed": resumed, "done": done})
        else:  # the chief's directory and restore point
            got = plan.share(None)
            if "error" in got:
                raise UserError(got["error"])
            run_dir, resumed, done = pathlib.Path(got["run_dir"]), got["resumed"], got["done"]
        from . import callbacks as cb

        seen = done is None or (pathlib.Path(done["path"]) / commits.WEIGHTS).is_file()
        if not plan.agree(seen):  # every host must read the chief's backup to resume from it
            raise UserError(f"a process cannot read the backup {done['path']} that process 0 resumes from: every "
                            "host must see the log directory at the same path (a shared filesystem), "
                            "e.g. --logdir /shared/logs")
        if not plan.chief:
            echo(f"process {plan.process_id} of {plan.processes}: training with process 0, which writes {run_dir}")
        # SIGTERM / Ctrl-C: during training, commit at the next step and stop (exit 143 / 130); before and after
        # it (data, the final test), stop at once: every file is written atomically
        with cb.Preemption(resume_hint()) as preempt:
            return _train(cfg, parts, run_dir, resumed, done, callbacks, echo, t_start, timer, rss0, preempt)
    finally:
        unlock(fd)
        plan.deactivate()


def _claim(cfg, parts, run_dir, fresh, echo):
    """The chief's run directory, created and locked, and the state it resumes from:
    (run_dir, resumed, lock fd, restore point or None)."""
    shown = run_dir
    if run_dir is None:
        run_dir, resumed = run_dir_for(cfg, fresh)
        shown = cfg["log"]["dir"]
    else:
        run_dir = pathlib.Path(run_dir)
        resumed = (run_dir / CONFIG).is_file() and status_of(run_dir) == "incomplete"  # a run began there
    params = parts["model"].count_params()
    if cfg["data"].get("whiten", "none") != "none":  # its matrix, in every model file
        params += math.prod(parts["shape"]) ** 2
    # disk: best + last + the backup (weights and optimizer slots) + event files
    check_writable(run_dir, need_bytes=20 * params + 20_000_000, shown=shown)
    make_dir(run_dir)
    fd = lock(run_dir)
    try:
        # the state to resume from, checked before anything in the directory changes (all damaged: one line, exit 2)
        done = commits.restore_point(run_dir / "backup", echo) if resumed else None
    except BaseException:
        unlock(fd)
        raise
    return run_dir, resumed, fd, done


def _train(cfg, parts, run_dir, resumed, done, callbacks, echo, t_start, timer, rss0, preempt):
    import keras
    import tensorflow as tf

    from . import callbacks as cb
    from . import config, optim, whiten

    t = cfg["train"]
    steps = parts["steps"]
    plan = parts["plan"]
    chief = plan.chief  # the one process that writes (suite/distribute.py)
    start_epoch, start_step = (done["epoch"], done.get("step", 0)) if done else (0, 0)
    if start_step >= steps:  # not with the same settings (the batch size is in the config hash); to be safe
        start_step = 0
    resumed_at = (start_epoch, start_step)
    if resumed and chief:
        for p in run_dir.glob(".*.tmp*"):  # a model or JSON file whose atomic write a kill interrupted
            if p.is_file():
                p.unlink()
        cb.trim_events(run_dir, start_epoch, done["iterations"] if done else 0)
        if done:
            where = f"batch {start_step} of epoch {start_epoch + 1}" if start_step else f"epoch {start_epoch}"
            echo(f"resuming {run_dir} after {where} of {t['epochs']} (use --fresh to start over)")
        else:
            echo(f"restarting {run_dir}: it stopped before its first commit")
    if chief:
        write_json(run_dir / CONFIG, cfg)

    data, shape = parts["data"], parts["shape"]
    xtr = parts["train"][0]
    epoch_var = tf.Variable(start_epoch, dtype=tf.int64, trainable=False)  # set by cb.SetEpoch at each epoch start
    ds = datasets(cfg, parts, epoch=epoch_var)
    train_ds, val_ds, test_ds, mean, std = ds["train"], ds["val"], ds["test"], ds["mean"], ds["std"]
    with plan.scope():
        model = compile_model(on_device(cfg, parts, ds), cfg, parts)
    n_out = len(model.outputs)
    # data parallel: validation, the test and the saved models use this process's own copy (cb.Validate)
    copy = local_copy(cfg, parts, ds) if plan.parallel else None
    precise = precise_bn(cfg, parts, ds, model if copy is None else copy)

    position = cb.Position()
    stop = cb.StopOnNaN(position)
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    if n_out > 1:
        monitor = monitor.replace("accuracy", "predictions_accuracy")
    stateful = {}
    grads = ([cb.GradientNorms(first_batch(cfg, parts, ds), run_dir / "gradients", probe=copy)]
             if cfg["log"].get("grad_norms") and chief else [])  # before TensorBoard and Backup: its logs are recorded
    verbose = t["verbose"] if chief else 0  # one progress bar, the chief's
    cbs = ([cb.SetEpoch(epoch_var), stop, cb.EpochStats(len(xtr), position), cb.LearningRateLogger()] + grads
           + ([cb.Progbar(position)] if verbose else []))
    if t["schedule"] == "plateau":
        watch = t.get("plateau_monitor", "auto")
        watch = monitor.replace("accuracy", "loss") if watch == "auto" else watch
        if n_out > 1 and watch.endswith("accuracy") and "predictions_" not in watch:  # the main head's accuracy
            watch = watch.replace("accuracy", "predictions_accuracy")
        plateau = keras.callbacks.ReduceLROnPlateau(monitor=watch, factor=t["decay"], patience=t["patience"],
                                                    min_lr=t["min_lr"], verbose=verbose)
        cbs.insert(0, plateau)
        stateful["plateau"] = (plateau, ["best", "wait", "cooldown_counter"])
    ours = copy is not None or precise is not None  # validation by cb.Validate, not by Keras' fit
    if ours:  # first: every other callback reads the validation figures it adds
        cbs.insert(0, cb.Validate(model if copy is None else copy, val_ds, plan.local, precise_bn=precise))
    cbs += list(callbacks)
    # Epoch-end order is the crash-safety protocol: TensorBoard flushed → best.keras → backup commit.
    if chief:
        cbs.append(cb.TensorBoard(str(run_dir), write_graph=True,
                                  profile_batch=_profile(cfg) if not start_epoch else 0))
    spacing = config.commit_spacing(parts["effective"]["commit_interval"])  # None: every epoch end commits
    best = None
    if cfg["log"]["checkpoints"] and chief:
        best = cb.BestCheckpoint(run_dir / "best.keras", monitor, source=copy, local=plan.local,
                                 defer=spacing is not None)
        cbs.append(best)
        stateful["best_checkpoint"] = (best, ["best"])
    backup = cb.Backup(run_dir / "backup", steps=steps, restore=done, stateful=stateful, stop=stop,
                       every=config.parse_every(cfg["log"].get("backup_every", "epoch")), preempt=preempt,
                       spacing=spacing, epochs=t["epochs"], before=[best.flush] if best is not None else [],
                       position=position, write=chief, local=plan.local)
    preempt.backup = backup
    cbs.append(backup)
    # augmented-image grid, confusion matrix, HParams (callers passing callbacks, e.g. tuner trials, write their own)
    if chief:
        with plan.local():
            preview = train_ds if not ds["raw"] else augmented_preview(model, train_ds)
        cbs.append(cb.RunSummaries(run_dir, cfg, train_ds=preview, test=(test_ds, data.y_test), mean=mean, std=std,
                                   class_names=data.class_names, stop=stop, hparams=not callbacks,
                                   history=backup.history, predictor=copy, local=plan.local))
    if timer is not None:
        cbs.append(timer)
    cbs += ([cb.FaultSteps()] if os.environ.get("SUITE_FAULT") else []) + [preempt]  # the tests' kills
    calls = cb.Segments(cbs, model=model, epochs=t["epochs"], steps=steps, verbose=verbose)
    backup.settle = calls.settle  # a mid-epoch commit first lets the NaN check see the step it commits
    fit = dict(validation_data=None if ours else val_ds, callbacks=calls, verbose=verbose, shuffle=False)
    preempt.training = True
    if start_step:  # the rest of the interrupted epoch: its own stream from the batch it stopped at
        position.offset, position.seconds = start_step, float(done.get("seconds", 0.0))
        rest = datasets(cfg, parts, epoch=start_epoch, skip=start_step, stats=(mean, std, ds["pca"]))["train"]
        # Keras (TF backend) creates the compiled metrics' variables at the first step; the committed running
        # sums go into them before it (cb.Backup.on_epoch_begin), so build them now, as Keras' own distributed
        # path does (a private method: Keras has no public one for this)
        with plan.scope():
            model._symbolic_build(data_batch=(*rest.element_spec, None))
        model.fit(rest, initial_epoch=start_epoch, epochs=start_epoch + 1, **fit)
        position.offset, position.seconds = 0, 0.0
        start_epoch += 1
    if start_epoch < t["epochs"] and not model.stop_training:
        model.fit(train_ds, initial_epoch=start_epoch, epochs=t["epochs"], **fit)
    else:  # Keras' loop did not run: the callbacks still begin (restoring the state) and end once
        calls.on_train_begin()
    calls.end()
    preempt.training = False
    history = model.history

    final = model if copy is None else copy  # the trained weights, on this process's one device
    infer = final if n_out == 1 else keras.Model(final.input, final.outputs[0], name=final.name)
    status = "diverged" if stop.where else "complete"
    test = {}
    if status == "complete":
        with plan.local():
            if n_out > 1:
                infer.compile(loss=optim.loss(t), metrics=optim.metrics(t, data.num_classes))
            if cfg["eval"]["tta"] != "none":  # the paper's test-time augmentation (suite/evaluate.py), which
                test = test_with_tta(infer, cfg, parts, ds)  # also measures the image alone ("single_view")
            else:
                test = {k: float(v) for k, v in infer.evaluate(test_ds, verbose=0, return_dict=True).items()}
            penalty = weight_penalty(infer)
            if penalty and "loss" in test:  # Keras' loss includes it: say how much, or 99 % beside loss 4.8 reads oddly
                test["weight_penalty"] = penalty
            if cfg["log"]["checkpoints"] and chief:
                cb.save_model(infer, run_dir / "last.keras")
    hist = backup.history  # every epoch, the ones before a resume included
    # without validation the monitor is the training accuracy: not a validation figure (r20 on all 50k: 99.3 %)
    val_acc = [v for v in hist.get(monitor, []) if v == v] if monitor.startswith("val_") else []
    results = {
        "status": status,
        "experiment": cfg["experiment"]["name"],
        "model": cfg["model"]["name"],
        "data": data.name,
        "test": test,
        "best_val_accuracy": max(val_acc) if val_acc else None,
        "epochs": t["epochs"],
        "epochs_completed": len(hist.get("loss", [])) - (1 if stop.where else 0),
        "epochs_run_now": len(history.history.get("loss", [])),  # epochs this process trained (or finished)
        "resumed": bool(resumed),
        "resumed_from_epoch": resumed_at[0] if resumed else None,  # epochs finished before this process
        "resumed_from_batch": resumed_at[1] if resumed else None,  # and batches of the next one
        "diverged_at": stop.where,
        "params": int(infer.count_params()) - whiten.extra_params(infer),  # the network's own
        "input_shape": list(shape),
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "train_examples": len(xtr),
        "wall_time_s": round(time.time() - t_start, 2),
        "peak_rss_mb": memory.peak_mb(rss0),  # host RSS peak above the start of run(); None off Linux
        "seed": t["seed"],
        "deterministic": t["deterministic"],
        "reference_accuracy": cfg["experiment"]["reference_accuracy"] or None,
        "reference_data": cfg["experiment"]["reference_data"],
        "history": hist,
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
        "backend": keras.backend.backend(),
        "runtime": {**parts["effective"], "jit_compile": getattr(model, "jit_compile", None),
                    "batch_size": t["batch_size"], "device": parts["device"]["name"],
                    "device_kind": parts["device"]["kind"], "devices": parts["device"]["count"]},
        "distribution": plan.record(t["batch_size"], len(xtr)),  # strategy, devices, processes, global batch
        "versions": versions(),
        "run_dir": str(run_dir),
    }
    if not chief:  # the chief writes the results (and would have stopped at the same point on an error)
        return results
    cb._fault("results")
    write_json(run_dir / RESULTS, results)  # the run is finished from here on
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    echo(summary_line(results))
    return results


def local_copy(cfg, parts, ds):
    """Data parallel: this process's own copy of the trained network on one device, compiled as run compiles it
    (same metric names), outside the distribution; cb.Validate keeps its weights those of the training."""
    from . import registry

    m = cfg["model"]
    kw = {k: v for k, v in m.items() if k != "name"}
    with parts["plan"].local():
        net = registry.build(m["name"], parts["shape"], parts["data"].num_classes, **kw)
        return compile_model(on_device(cfg, {**parts, "model": net}, ds), cfg, parts)


def test_with_tta(model, cfg, parts, ds):
    """Test metrics averaged over eval.tta's views of each image, and the image alone as "single_view"."""
    from . import evaluate, pipeline

    data, shape, d = parts["data"], parts["shape"], cfg["data"]
    raw_test = pipeline.make(data.x_test, data.y_test, shape=shape, batch_size=cfg["train"]["batch_size"],
                             training=False, data_cfg=d, seed=0, mean=ds["mean"], std=ds["std"], raw=True)
    return evaluate.with_tta(model, raw_test, cfg["eval"]["tta"], evaluate.shift_for(cfg, shape), ds["raw"], shape,
                             ds["mean"], ds["std"])


def resume_hint():
    """'run the same command to resume: python -m suite run …', from this process's own command line."""
    import shlex

    args = list(sys.argv)
    if args and pathlib.Path(args[0]).name == "__main__.py":
        args = ["python", "-m", "suite"] + args[1:]
    elif args:
        args[0] = pathlib.Path(args[0]).name
    return "run the same command to resume" + (f": {shlex.join(args)}" if args else "")


def augmented_preview(model, train_ds):
    """The first training batch as the model's Augment layer turns it into network input, for TensorBoard's
    image grid: a copy of the layer (same seed, fresh random state) so training's own draws are untouched."""
    import keras
    import tensorflow as tf

    from .augment import Augment

    layer = Augment.from_config(model.get_layer("augment").get_config())
    for x, y in train_ds.take(1):
        return tf.data.Dataset.from_tensors((keras.ops.convert_to_numpy(layer(x.numpy(), training=True)), y))
    return train_ds


def load_model(path):
    """Load a saved .keras model with Keras' safe mode (no arbitrary code from lambda layers)."""
    import keras

    return keras.models.load_model(path, safe_mode=True)


def list_runs(log_dir):
    """[(run_dir, status, results-or-None, note)] for every run directory under log_dir at any depth (a run's
    logs/<experiment>/<run-id>, a study's logs/studies/<study>/<arm>/seed-…, a search's …/tune-…/trial_…), in
    path order. status: complete | diverged | incomplete | running (an incomplete run another process holds)."""
    root = pathlib.Path(log_dir)
    rows = []
    if not root.is_dir():
        return rows
    for cfg_file in sorted(root.rglob(CONFIG)):
        d = cfg_file.parent
        st, res, note = status_of(d), None, ""
        if st == "incomplete":
            try:
                epochs = json.loads(cfg_file.read_text())["train"]["epochs"]
            except (OSError, ValueError, KeyError, TypeError):
                epochs = "?"
            state = commits.committed(d / "backup")
            note = f"{state['epoch'] if state else 0}/{epochs} epochs saved"
            if state and state.get("step"):
                note += f" +{state['step']} batches"
            if is_locked(d):
                st = "running"
        else:
            try:
                res = json.loads((d / RESULTS).read_text())
            except (OSError, ValueError):
                res = None
        rows.append((d, st, res, note))
    return rows


def _profile(cfg):
    return (2, 6) if cfg["log"]["profile"] else 0


def versions():
    import keras
    import numpy

    v = {"python": platform.python_version(), "keras": keras.__version__, "numpy": numpy.__version__}
    for mod in ("tensorflow", "jax", "keras_tuner"):
        if mod in sys.modules:
            v[mod] = getattr(sys.modules[mod], "__version__", "?")
    return v


def weight_penalty(model):
    """The regularisation term Keras adds to every reported loss (L2 weight decay), at the current weights; 0.0 when
    no layer has a regulariser."""
    import keras

    return float(sum(float(keras.ops.convert_to_numpy(v)) for v in model.losses))


def summary_line(r):
    from . import config

    if r["status"] == "diverged":
        w = r["diverged_at"]
        name = r["model"] if r["experiment"] == r["model"] else f"{r['experiment']} ({r['model']})"
        return (f"{name} · {r['data']} · DIVERGED at epoch {w['epoch']} batch {w['batch']} "
                f"(loss {w['loss']}) · {r['run_dir']}")
    acc = r["test"].get("accuracy")
    ref = config.paper_figure(r.get("reference_accuracy"), r.get("reference_data"))
    name = r["model"] if r["experiment"] == r["model"] else f"{r['experiment']} ({r['model']})"
    tta = f" ({r['test']['tta']} TTA)" if r["test"].get("tta") else ""
    penalty = f" ({r['test']['weight_penalty']:.4f} of it the L2 penalty)" if r["test"].get("weight_penalty") else ""
    return (f"{name} · {r['data']} · test accuracy {acc:.4f}{tta}{ref} · "
            f"loss {r['test'].get('loss', float('nan')):.4f}{penalty} · {r['params']:,} params · "
            f"{r['wall_time_s']:.1f} s · {r['run_dir']}")
