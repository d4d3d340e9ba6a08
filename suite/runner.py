"""The one experiment runner: every command (run, tune trials, studies) trains through `run()`.

Order matters: everything that can be wrong with the input (config, data, network vs image size) is
checked before the run directory is created, so a mistake never leaves files behind or touches
earlier runs. A run directory is complete when it holds results.json (written atomically, last).
"""

import hashlib
import json
import os
import pathlib
import platform
import sys
import time

from . import config as config_mod
from . import data as data_mod
from .errors import UserError

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


def config_hash(cfg):
    """Identifies 'the same command' for resuming: the resolved config without display-only keys."""
    c = json.loads(json.dumps(cfg))
    c["train"].pop("verbose", None)
    c["experiment"].pop("description", None)
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

    from . import optim, registry

    d, t, m = cfg["data"], cfg["train"], cfg["model"]
    data = data_mod.load(d["name"])
    xtr, ytr, xva, yva = data_mod.split(data, d["val_split"], d["split_seed"])
    if d["limit"]:
        xtr, ytr = xtr[:d["limit"]], ytr[:d["limit"]]
    h, w = d["image_size"] or data.shape[:2]
    c = d["channels"] or data.shape[2]
    shape = (h, w, c)
    if t["label_smoothing"] and not optim.one_hot(t):
        raise UserError("train.label_smoothing needs one-hot targets: also set train.loss=categorical_crossentropy")

    keras.config.set_dtype_policy(t["precision"])
    keras.utils.set_random_seed(t["seed"])
    if t["deterministic"] and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    kw = {k: v for k, v in m.items() if k != "name"}
    try:
        model = registry.build(m["name"], shape, data.num_classes, **kw)
    except ValueError as e:
        msg = " ".join(str(e).split())[:300]
        raise UserError(f"{m['name']} cannot take {h}×{w}×{c} images with these settings: {msg}; "
                        "use larger images (data.image_size), padding='same' or a small-image stem") from None
    return dict(data=data, train=(xtr, ytr), val=(xva, yva), shape=shape, model=model)


def run_dir_for(cfg, fresh=False):
    """logs/<experiment>/<run-id>/ — the newest unfinished run of the same config is resumed unless fresh."""
    root = pathlib.Path(cfg["log"]["dir"]) / cfg["experiment"]["name"]
    h = config_hash(cfg)
    if not fresh and root.is_dir():
        for d in sorted(root.glob(f"*-{h}"), reverse=True):
            if status_of(d) == "incomplete":
                return d, True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = root / f"{stamp}-{h}"
    n = 1
    while d.exists():  # two runs in the same second
        d = root / f"{stamp}.{n}-{h}"
        n += 1
    return d, False


def make_dir(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write the log directory {path} ({e.strerror}); "
                        "pick another with --set log.dir=PATH") from None


def run(cfg, *, fresh=False, callbacks=(), echo=print, run_dir=None):
    """Train and evaluate one configuration. Returns the results dict (also in results.json).

    run_dir: use this directory (e.g. a tuner trial's) instead of logs/<experiment>/<run-id>/; an
    unfinished run there is resumed. callbacks: extra Keras callbacks (e.g. a tuner's)."""
    import keras

    from . import callbacks as cb
    from . import optim, pipeline

    t_start = time.time()
    parts = prepare(cfg)
    if run_dir is None:
        run_dir, resumed = run_dir_for(cfg, fresh)
    else:
        run_dir = pathlib.Path(run_dir)
        resumed = (run_dir / "backup").is_dir() and status_of(run_dir) == "incomplete"
    make_dir(run_dir)
    write_json(run_dir / CONFIG, cfg)
    if resumed:
        echo(f"resuming {run_dir} from its last completed epoch (use --fresh to start over)")

    d, t = cfg["data"], cfg["train"]
    data, model, shape = parts["data"], parts["model"], parts["shape"]
    (xtr, ytr), (xva, yva) = parts["train"], parts["val"]
    n_out = len(model.outputs)
    mean, std = pipeline.channel_stats(xtr, shape[2])
    common = dict(shape=shape, batch_size=t["batch_size"], data_cfg=d, seed=t["seed"], mean=mean, std=std,
                  num_classes=data.num_classes, one_hot=optim.one_hot(t))
    train_ds = pipeline.make(xtr, ytr, training=True, n_outputs=n_out, **common)
    val_ds = pipeline.make(xva, yva, training=False, n_outputs=n_out, **common) if len(xva) else None
    test_ds = pipeline.make(data.x_test, data.y_test, training=False, **common)
    steps = -(-len(xtr) // t["batch_size"])

    compile_kw = dict(jit_compile=t["jit_compile"], steps_per_execution=t["steps_per_execution"])
    if n_out > 1:  # auxiliary classifiers (GoogLeNet): weighted into the loss, dropped at inference
        from .nets.googlenet import AUX_LOSS_WEIGHT

        model.compile(optimizer=optim.optimizer(t, steps), loss=[optim.loss(t)] * n_out,
                      loss_weights=[1.0] + [AUX_LOSS_WEIGHT] * (n_out - 1),
                      metrics=[optim.metrics(t, data.num_classes)] + [[] for _ in range(n_out - 1)], **compile_kw)
    else:
        model.compile(optimizer=optim.optimizer(t, steps), loss=optim.loss(t),
                      metrics=optim.metrics(t, data.num_classes), **compile_kw)

    stop = cb.StopOnNaN()
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    if n_out > 1:
        monitor = monitor.replace("accuracy", "predictions_accuracy")
    cbs = [stop, cb.EpochStats(len(xtr)), cb.LearningRateLogger()]
    if t["schedule"] == "plateau":
        cbs.insert(0, keras.callbacks.ReduceLROnPlateau(monitor=monitor.replace("accuracy", "loss"), factor=t["decay"],
                                                        patience=t["patience"], min_lr=t["min_lr"], verbose=1))
    cbs += list(callbacks)
    cbs += [keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
            keras.callbacks.TensorBoard(str(run_dir), write_graph=True, profile_batch=_profile(cfg))]
    if cfg["log"]["checkpoints"]:
        cbs.append(keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor=monitor, mode="max",
                                                   save_best_only=True))
    history = model.fit(train_ds, validation_data=val_ds, epochs=t["epochs"], callbacks=cbs, verbose=t["verbose"],
                        shuffle=False)  # tf.data shuffles (or not: data.shuffle)

    infer = model if n_out == 1 else keras.Model(model.input, model.outputs[0], name=model.name)
    status = "diverged" if stop.where else "complete"
    test = {}
    if status == "complete":
        if n_out > 1:
            infer.compile(loss=optim.loss(t), metrics=optim.metrics(t, data.num_classes))
        test = {k: float(v) for k, v in infer.evaluate(test_ds, verbose=0, return_dict=True).items()}
        if cfg["log"]["checkpoints"]:
            infer.save(run_dir / "last.keras")
    hist = {k: [float(x) for x in v] for k, v in history.history.items()}
    val_acc = hist.get(monitor, [])
    results = {
        "status": status,
        "experiment": cfg["experiment"]["name"],
        "model": cfg["model"]["name"],
        "data": data.name,
        "test": test,
        "best_val_accuracy": max(val_acc) if val_acc else None,
        "epochs": t["epochs"],
        "epochs_run_now": len(hist.get("loss", [])),
        "resumed": resumed,
        "diverged_at": stop.where,
        "params": int(infer.count_params()),
        "input_shape": list(shape),
        "num_classes": data.num_classes,
        "train_examples": len(xtr),
        "wall_time_s": round(time.time() - t_start, 2),
        "seed": t["seed"],
        "reference_accuracy": cfg["experiment"]["reference_accuracy"] or None,
        "reference_data": cfg["experiment"]["reference_data"],
        "history": hist,
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
        "backend": keras.backend.backend(),
        "versions": versions(),
        "run_dir": str(run_dir),
    }
    write_json(run_dir / RESULTS, results)
    echo(summary_line(results))
    return results


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


def summary_line(r):
    if r["status"] == "diverged":
        w = r["diverged_at"]
        return (f"{r['experiment']} ({r['model']}) · {r['data']} · DIVERGED at epoch {w['epoch']} batch {w['batch']} "
                f"(loss {w['loss']}) · {r['run_dir']}")
    acc = r["test"].get("accuracy")
    ref = ""
    if r.get("reference_accuracy"):
        ref = f" (paper: {r['reference_accuracy']:.2%} on {r.get('reference_data') or 'its data'})"
    name = r["model"] if r["experiment"] == r["model"] else f"{r['experiment']} ({r['model']})"
    return (f"{name} · {r['data']} · test accuracy {acc:.4f}{ref} · "
            f"loss {r['test'].get('loss', float('nan')):.4f} · {r['params']:,} params · "
            f"{r['wall_time_s']:.1f} s · {r['run_dir']}")


def resolve(target, overrides=(), extra=None):
    return config_mod.resolve(target, overrides, extra)
