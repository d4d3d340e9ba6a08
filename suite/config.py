"""Configuration: plain nested data. Network defaults ← experiment file (TOML) ← command-line flags.

Every key and its type comes from DEFAULTS below, except `[model]`, whose keys and types are the
chosen builder's keyword defaults (see suite.registry). Unknown keys, wrong types and out-of-range
values are rejected with a UserError before anything is built or written.
"""

import copy
import datetime
import math
import pathlib
import tomllib

from . import registry
from .errors import UserError, did_you_mean

PACKAGE = pathlib.Path(__file__).resolve().parent
# The shipped recipes: suite/experiments/ in an installed package (pyproject.toml maps the checkout's top-level
# experiments/ there), the checkout's experiments/ when running from the source tree.
EXPERIMENTS = next((p for p in (PACKAGE / "experiments", PACKAGE.parent / "experiments") if p.is_dir()),
                   PACKAGE / "experiments")

DEFAULTS = {
    "experiment": {
        "name": "",  # defaults to the experiment file's stem, or the network's name
        "description": "",
        "reference_accuracy": 0.0,  # the paper's test accuracy (0 = none), shown by `suite report`
        "reference_data": "",  # the data set the reference accuracy is for
        "source": "",  # where the recipe and the reference come from
    },
    "model": {"name": ""},  # + the builder's knobs
    "data": {
        "name": "digits",  # digits | mnist | fashion_mnist | cifar10 | cifar100 | path.npz | image folder
        "image_size": [],  # [H, W] to resize to; [] keeps the data's size (or model.input_shape's)
        "channels": 0,  # 1 or 3 to convert grey↔RGB; 0 keeps the data's channels
        "val_split": 0.1,  # fraction of the training set held out, fixed by data.split_seed
        "split_seed": 0,
        "shuffle": True,  # reshuffle training data every epoch
        "crop": 0,  # random crop after padding by this many pixels (training only)
        "crop_fill": "constant",  # the padding: "constant" (zeros, the ResNet paper) or "reflect" (Page 2018, airbench)
        "flip": False,  # random horizontal flip (training only)
        # σ of AlexNet's PCA colour noise (§4.1; the paper: 0.1), 0 = off; training only. Applies to 3-channel
        # input only, grey input is left as is
        "pca_colour": 0.0,
        # side in pixels of a square set to the training mean at a uniform place inside each image (cutout: DeVries
        # & Taylor 2017; Page 2018's 94 % ResNet-9 used 8 on CIFAR), 0 = off; training only, after crop and flip
        "cutout": 0,
        # "zca": global contrast normalisation + ZCA whitening fitted on the training images, as NiN and All-CNN-C
        # (after Goodfellow et al. 2013); a layer in front of the network (suite/whiten.py). "none": per-channel
        # mean/std only
        "whiten": "none",
        "batched_augment": True,  # host: augment whole batches (batch → map): ~2× the input rate per image
        # where crop, flip and normalisation run: "host" (tf.data), "device" (the compiled model's first layer,
        # fed uint8 batches: suite/augment.py) or "auto" (device on a GPU/TPU, host on a CPU; suite/hardware.py)
        "augment_on": "auto",
        # tf.data's autotuner (parallel maps, prefetch): "auto" is on with a GPU/TPU, off on a CPU, where its threads
        # compete with the training's for the cores (suite/hardware.py); true/false force it. What the pipeline
        # yields is the same either way.
        "autotune": "auto",
        "cache": True,  # cache decoded, resized images in memory
        "limit": 0,  # use only the first N training examples (0 = all); for quick looks and tests
        "order": "stored",  # training examples as stored, or "by_label" (stable sort after data.limit: 0s, 1s, …)
    },
    "train": {
        "epochs": 10,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,  # sgd and rmsprop
        "nesterov": False,
        "loss": "sparse_categorical_crossentropy",
        "label_smoothing": 0.0,
        "schedule": "constant",
        "milestones": [],  # step schedule: epochs at which lr *= decay
        "decay": 0.1,  # step / exponential / plateau factor
        "decay_epochs": 1.0,  # exponential: lr *= decay every decay_epochs
        "power": 1.0,  # polynomial
        "patience": 5,  # plateau
        # plateau: the figure it watches; auto = val_loss (loss without a validation set). NiN's paper lowered the
        # lr when the *training* accuracy stopped improving: "accuracy"
        "plateau_monitor": "auto",
        "min_lr": 0.0,
        "warmup_epochs": 0.0,  # cosine, linear, step: rise linearly from min_lr to lr over this many epochs first
        "seed": 0,
        "deterministic": False,
        "precision": "auto",  # auto: mixed_bfloat16 on a GPU/TPU that has bf16, float32 elsewhere
        "jit_compile": "auto",
        "steps_per_execution": "auto",  # auto: 32 steps per call on a GPU/TPU, 8 on a CPU (suite/hardware.py)
        "verbose": 1,  # Keras progress: 0 silent, 1 bar, 2 one line per epoch
        # several devices (suite/distribute.py): "data_parallel" splits each batch (batch_size is the global batch)
        # over every device of every process; "auto" does so when there is more than one GPU/TPU; "none": one device
        "distribute": "auto",
    },
    # the final test figure (and `suite eval`'s default): test-time augmentation averaged over views, as the papers
    # evaluated (suite/evaluate.py): none | flip (image + mirror) | 10crop (AlexNet: 4 corners + centre, mirrored)
    "eval": {
        "tta": "none",
        "shift": 0,  # 10crop: pixels the corner views move (0 = data.crop, or an eighth of the image)
        # BatchNorm's statistics recomputed with the current weights over this many training images before each
        # validation and the test, in place of the moving averages gathered during training (suite/precise_bn.py);
        # 0 = off. 8192: pycls' NUM_SAMPLES_PRECISE
        "precise_bn": 8192,
    },
    "log": {
        "dir": "logs",
        "checkpoints": True,
        "profile": False,
        # per-epoch L2 norm of the loss gradient w.r.t. each Conv/Dense kernel on one fixed training batch:
        # TensorBoard run "gradients" (grad_norm/<layer>) and grad_norm_first/last/ratio in the history
        "grad_norms": False,
        # mid-epoch commits of the training state besides every epoch end (suite/callbacks.py Backup): a time
        # ("2min", "90s", "1h"), a number of steps ("500 steps") or "epoch" (epoch ends only). A kill loses at most
        # this much training; a signal (SIGTERM, Ctrl-C) commits at the next step whatever it is.
        "backup_every": "2min",
        # the least time between two epoch-end commits: "auto" (a CPU: every epoch end; a GPU/TPU: "30s", since a
        # commit there can cost as much as a short epoch's training: suite/hardware.py), "epoch", or a time
        # ("30s", "5min"). A kill loses at most this much training, resumed exactly from the commit before; a
        # signal and the last epoch always commit.
        "commit_interval": "auto",
    },
    # `python -m suite tune` (suite/tune/). Search space: a list of values per knob; for lr, momentum, dropout
    # and weight_decay two numbers are a range (lr, weight_decay: log-uniform) and three or more a set of values;
    # [] = not tuned. `depth` maps to the network's depth knob (VGG 11/13/16/19, CIFAR ResNet 20/32/44/56, …).
    "tune": {
        "lr": [1e-4, 1e-1],
        "batch_size": [32, 64, 128],
        "depth": [],
        "optimizer": [],
        "momentum": [],
        "dropout": [],
        "weight_decay": [],
        "padding": [],
        "activation": [],
        "tuner": "random",  # random | hyperband | bayesian | grid
        "max_trials": 0,  # 0 = 10 (random, bayesian), every combination (grid); hyperband runs its brackets
        "epochs": 6,  # epochs per trial; hyperband: the most a trial gets (max_epochs)
        "factor": 3,  # hyperband: keep the best 1/factor of each round
        "hyperband_iterations": 1,
        "objective": "val_accuracy",  # val_accuracy | val_loss | accuracy | loss (best epoch of a trial)
        "seed": 0,  # the search's random seed (the trials keep train.seed)
        "max_failures": 10,  # this many failed (e.g. diverged) trials in a row stop the search
        "checkpoints": False,  # keep best.keras/last.keras of every trial
        "restart_every": 20,  # start the process afresh after this many trials (0 = never); see suite/tune/tuner.py
    },
}

CHOICES = {
    "train.optimizer": ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "ftrl"),
    "train.loss": ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy", "mse"),
    "train.schedule": ("constant", "step", "exponential", "polynomial", "cosine", "linear", "plateau"),
    "train.plateau_monitor": ("auto", "val_loss", "val_accuracy", "loss", "accuracy"),
    "train.precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    "data.augment_on": ("auto", "host", "device"),
    "data.crop_fill": ("constant", "reflect"),
    "data.whiten": ("none", "zca"),
    "data.order": ("stored", "by_label"),
    "eval.tta": ("none", "flip", "10crop"),
    "train.jit_compile": ("auto", True, False),
    "data.autotune": ("auto", True, False),
    "train.verbose": (0, 1, 2),
    "train.distribute": ("auto", "none", "data_parallel"),
    "data.channels": (0, 1, 3),
    "model.padding": ("same", "valid"),
    "model.pooling": ("max", "avg"),  # lenet5, exercise2_cnn, allcnn
    "tune.tuner": ("random", "hyperband", "bayesian", "grid"),
    "tune.objective": ("val_accuracy", "val_loss", "accuracy", "loss"),
}

# (low, high, low_inclusive, high_inclusive); None = unbounded
RANGES = {
    "tune.restart_every": (0, None, True, None),
    "train.epochs": (1, None, True, None),
    "train.batch_size": (1, None, True, None),
    "train.lr": (0, None, False, None),
    "train.momentum": (0, 1, True, False),
    "train.decay": (0, 1, False, True),
    "train.decay_epochs": (0, None, False, None),
    "train.label_smoothing": (0, 1, True, False),
    "train.steps_per_execution": (1, 2**31 - 1, True, True),  # Keras counts steps in int32
    "train.patience": (0, None, True, None),
    "train.min_lr": (0, None, True, None),
    "train.warmup_epochs": (0, None, True, None),
    "data.val_split": (0, 1, True, False),
    "data.crop": (0, 1024, True, True),  # pixels of padding: more makes every image gigabytes
    "eval.shift": (0, 1024, True, True),
    "eval.precise_bn": (0, None, True, None),
    "data.pca_colour": (0, None, True, None),
    "data.cutout": (0, 1024, True, True),
    "data.limit": (0, None, True, None),
    "model.dropout": (0, 1, True, False),
    "model.weight_decay": (0, None, True, None),
    "model.width": (0, None, False, None),
    "tune.max_trials": (0, None, True, None),
    "tune.epochs": (1, None, True, None),
    "tune.factor": (2, None, True, None),
    "tune.hyperband_iterations": (1, None, True, None),
    "tune.max_failures": (1, None, True, None),
    "tune.seed": (0, 2**32 - 1, True, True),
    "train.seed": (0, 2**32 - 1, True, True),  # NumPy's and TensorFlow's seeds
    "data.split_seed": (0, 2**32 - 1, True, True),
}


AUTO_INTS = ("train.steps_per_execution",)  # integer settings that also take "auto"
INT64_MAX, FLOAT32_MAX = 2**63 - 1, 3.4028234663852886e38  # the largest integer and number a setting can hold


def parse_value(text):
    """A `--set` value as TOML (numbers, booleans, lists, quoted strings); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def experiment_dirs(sub=""):
    """[(origin, folder)] in lookup order: the working directory's experiments/ (the user's own) before the
    shipped ones, so a user's recipe of the same name wins. sub: a sub-folder of both (e.g. "studies")."""
    own = pathlib.Path("experiments")
    if own.is_dir() and own.resolve() != EXPERIMENTS:
        return [("yours", own / sub), ("shipped", EXPERIMENTS / sub)]
    return [("shipped", EXPERIMENTS / sub)]


def find_experiment(name, sub="", what="experiment"):
    """Path of experiment `name` (a file path, or a stem in experiments/ or its `sub` folder), or None."""
    p = pathlib.Path(name)
    if p.suffix == ".toml":
        if not p.is_file():
            raise UserError(f"{what} file {name} does not exist; check the path")
        return p
    found = experiments(sub).get(name)
    return found and found[1]


def experiments(sub=""):
    """{name: (origin, path)} of every experiment (or file in `sub`) by name; the first of experiment_dirs() wins."""
    found = {}
    for origin, folder in reversed(experiment_dirs(sub)):
        for p in folder.glob("*.toml"):
            found[p.stem] = (origin, p)
    return dict(sorted(found.items()))


def list_experiments():
    return list(experiments())


def paper_figure(ref, data):
    """' (paper: 91.25% on cifar10)' for an experiment's reference accuracy, '' without one (run's summary, list)."""
    if not isinstance(ref, (int, float)) or ref <= 0:
        return ""
    return f" (paper: {ref:.2%} on {data or 'its data'})"


def read_toml(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"experiment file {path} is not valid TOML ({e}); fix the file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"experiment file {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                        "UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read experiment file {path} ({e.strerror})") from None


def resolve(target, overrides=(), extra=None, origin="command line"):
    """The fully resolved config for `target` (experiment or network name).

    overrides: iterable of "section.key=value" strings; extra: {"section.key": value} from flags.
    Precedence: defaults ← network builder ← experiment file ← extra ← overrides.
    """
    layers_ = []  # (origin, {section: {key: value}})
    path = find_experiment(target)
    if path is not None:
        layers_.append((str(path), read_toml(path)))
        exp_name = path.stem
    else:
        if target not in registry.list_models():
            known = sorted(set(registry.list_models()) | set(list_experiments()))
            raise UserError(f"unknown network {target!r}{did_you_mean(target, known)}, and no experiment "
                            f"experiments/{target}.toml either; run `python -m suite list` to see them all")
        layers_.append(("network", {"model": {"name": target}}))
        exp_name = target
    flat = {}
    for key, value in (extra or {}).items():
        flat[key] = value
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r} needs the form section.key=value, e.g. --set train.lr=0.1")
        key, value = item.split("=", 1)
        flat[key.strip()] = parse_value(value.strip())
    nested = {}
    for key, value in flat.items():
        if key.count(".") != 1:
            raise UserError(f"setting {key!r} must be section.key (sections: {', '.join(DEFAULTS)})")
        sec, k = key.split(".")
        nested.setdefault(sec, {})[k] = value
    layers_.append((origin, nested))

    # The model's name decides which model keys exist, so find it first.
    model_name = ""
    for _, layer in layers_:
        if isinstance(layer.get("model"), dict):
            model_name = layer["model"].get("name", model_name)
    if not model_name:
        raise UserError(f"experiment {target} names no network; add [model] name = \"...\"")
    if not isinstance(model_name, str):
        raise UserError("model.name must be a string naming a network; run `python -m suite list`")
    entry = registry.get(model_name)

    cfg = copy.deepcopy(DEFAULTS)
    cfg["model"] = {"name": model_name, **copy.deepcopy(entry.defaults())}
    cfg["experiment"]["name"] = exp_name
    for origin, layer in layers_:
        merge(cfg, layer, origin)
    validate(cfg)
    return cfg


def merge(cfg, layer, origin):
    for sec, table in layer.items():
        if sec not in cfg:
            raise UserError(f"unknown section [{sec}] in {origin}{did_you_mean(sec, cfg)}; "
                            f"sections are {', '.join(cfg)}")
        if not isinstance(table, dict):
            raise UserError(f"[{sec}] in {origin} must be a table of settings")
        for key, value in table.items():
            if key not in cfg[sec]:
                raise UserError(f"unknown setting {sec}.{key} in {origin}{did_you_mean(key, cfg[sec])}; "
                                f"run `python -m suite show {cfg['model']['name']} --config` for valid keys")
            cfg[sec][key] = check_type(f"{sec}.{key}", value, cfg[sec][key], origin)


def check_type(key, value, default, origin="config"):
    """`value` converted to the type of `default`, or a UserError saying what was expected."""
    def bad(expected):
        return UserError(f"{key} = {value!r} in {origin} has the wrong type: expected {expected}")

    def too_big(limit, given=value):  # TOML integers are 64-bit, TensorFlow's floats 32-bit: beyond, NumPy/TF fail
        return UserError(f"{key} = {given!r} in {origin} is out of range: it must be within ±{limit}")

    if not isinstance(default, (bool, int, float, str)) and _dated(value):  # no setting takes a TOML date or time
        raise bad("a number, a string, true/false or a list (not a TOML date or time)")
    if default is None or key in ("train.jit_compile", "data.autotune"):
        return value
    if key in AUTO_INTS:  # "auto" or a number
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad('an integer or "auto"')
        if abs(value) > INT64_MAX:
            raise too_big(INT64_MAX)
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and not isinstance(default, bool):
                value = int(value)
            else:
                raise bad("an integer")
        if abs(value) > INT64_MAX:
            raise too_big(INT64_MAX)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad("a finite number")
        if abs(value) > FLOAT32_MAX:
            raise too_big(f"{FLOAT32_MAX:.4g}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise bad("a list, e.g. [1, 2]")
        kinds = {type(d) for d in default}
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:  # a list of one kind: check its items too
            kind = kinds.pop()
            try:
                return [check_type(f"{key}[{i}]", v, default[0], origin) for i, v in enumerate(value)]
            except UserError:
                names = {bool: "true/false", int: "integers", float: "numbers", str: "strings"}
                raise bad(f"a list of {names[kind]}, e.g. {list(default)}") from None
        return list(value)
    return value


def _dated(value):
    if isinstance(value, (datetime.date, datetime.time)):  # datetime.datetime is a date
        return True
    if isinstance(value, (list, tuple, dict)):
        return any(_dated(v) for v in (value.values() if isinstance(value, dict) else value))
    return False


def check_range(key, v, what=None):
    """A UserError when number `v` is outside RANGES[key]; `what` names it in the message (default "key = v")."""
    lo, hi, lo_inc, hi_inc = RANGES[key]
    what = what or f"{key} = {v}"
    if lo is not None and (v < lo or (v == lo and not lo_inc)):
        raise UserError(f"{what} is out of range: it must be {'≥' if lo_inc else '>'} {lo}")
    if hi is not None and (v > hi or (v == hi and not hi_inc)):
        raise UserError(f"{what} is out of range: it must be {'≤' if hi_inc else '<'} {hi}")


def validate(cfg):
    name = cfg["experiment"]["name"]
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise UserError(f"experiment.name = {name!r} must be a plain folder name (no /, \\, NUL, not . or ..): "
                        "runs go to <log.dir>/<experiment.name>/")
    if "\0" in cfg["log"]["dir"]:
        raise UserError(f"log.dir = {cfg['log']['dir']!r} contains a NUL character; pick another with --logdir PATH")
    for key, choices in CHOICES.items():
        sec, k = key.split(".")
        if k in cfg[sec] and cfg[sec][k] not in choices:
            raise UserError(f"{key} = {cfg[sec][k]!r} is not one of: {', '.join(map(str, choices))}")
    for key in RANGES:
        sec, k = key.split(".")
        if k in cfg[sec] and isinstance(cfg[sec][k], (int, float)):
            check_range(key, cfg[sec][k])
    size = cfg["data"]["image_size"]
    if size and (len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)):
        raise UserError(f"data.image_size = {size} must be [height, width] in pixels, or [] to keep the size")
    ms = cfg["train"]["milestones"]
    if not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m < 2**31 for m in ms):
        raise UserError(f"train.milestones = {ms} must be a list of positive epoch numbers (below 2**31), "
                        "e.g. [30, 60]")
    t = cfg["train"]
    if t["warmup_epochs"] and t["schedule"] not in ("cosine", "linear", "step"):
        raise UserError(f"train.warmup_epochs = {t['warmup_epochs']} works with train.schedule = 'cosine', "
                        "'linear' or 'step' only; set --set train.schedule=linear (or cosine, step) or leave "
                        "warmup_epochs at 0")
    if t["warmup_epochs"] >= t["epochs"]:
        raise UserError(f"train.warmup_epochs = {t['warmup_epochs']} leaves nothing of the {t['epochs']} epochs "
                        "to decay over; use fewer warm-up epochs")
    if t.get("plateau_monitor", "auto").startswith("val_") and not cfg["data"]["val_split"]:
        raise UserError(f"train.plateau_monitor = {t['plateau_monitor']!r} needs a validation set, but "
                        "data.val_split = 0; watch 'loss' or 'accuracy', or hold out data with data.val_split")
    if cfg["train"]["schedule"] == "step" and not cfg["train"]["milestones"]:
        raise UserError("train.schedule = 'step' needs train.milestones, e.g. --set train.milestones=[30,60]")
    if "backup_every" in cfg["log"]:
        try:
            parse_every(cfg["log"]["backup_every"])
        except ValueError:
            raise UserError(f"log.backup_every = {cfg['log']['backup_every']!r} is not a time, a step count or "
                            "'epoch'; e.g. \"2min\", \"90s\", \"500 steps\" or \"epoch\"") from None
    ci = cfg["log"].get("commit_interval", "auto")
    if ci != "auto":
        try:
            every = parse_every(ci)
        except ValueError:
            every = ("invalid", ci)
        if every is not None and every[0] != "seconds":
            raise UserError(f"log.commit_interval = {ci!r} is not a time, 'epoch' or 'auto'; e.g. \"30s\", "
                            "\"5min\", \"epoch\" (every epoch end) or \"auto\"")
    return cfg


def commit_spacing(value):
    """log.commit_interval as decided (hardware.effective: never "auto") → seconds between epoch-end commits,
    or None: every epoch end."""
    every = parse_every(value)
    return every[1] if every else None


def parse_every(value):
    """log.backup_every → ("steps", n) | ("seconds", s) | None (epoch ends only). Accepts "epoch", a number of
    steps ("500 steps", or an integer), or a time ("90s", "5min", "1h"). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return ("steps", value) if value else None
    text = str(value).strip().lower().replace(" ", "")
    if text in ("epoch", "0", "off"):
        return None
    for unit, scale in (("steps", None), ("step", None), ("min", 60), ("s", 1), ("h", 3600)):
        if text.endswith(unit):
            try:
                n = float(text[:-len(unit)])
            except ValueError:
                break
            if not (n > 0 and math.isfinite(n)) or (scale is None and n != int(n)):
                break
            return ("steps", int(n)) if scale is None else ("seconds", n * scale)
    raise ValueError(value)


def flatten(cfg):
    """{"section.key": value} — for HParams and tables."""
    return {f"{s}.{k}": v for s, t in cfg.items() for k, v in t.items()}
