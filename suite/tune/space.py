"""The search space: [tune] → keras-tuner hyperparameters → each trial's suite config."""

import copy
import math

from .. import config as config_mod
from .. import registry
from ..errors import UserError, one_line

# [tune] name → (config key, how a two-number list is read). "depth" is the network's depth knob.
SPACE = {
    "lr": ("train.lr", "log"),
    "batch_size": ("train.batch_size", None),
    "depth": ("model.depth", None),
    "optimizer": ("train.optimizer", None),
    "momentum": ("train.momentum", "linear"),
    "dropout": ("model.dropout", "linear"),
    "weight_decay": ("model.weight_decay", "log"),
    "padding": ("model.padding", None),
    "activation": ("model.activation", None),
}
# The builder keyword that "depth" tunes: the first of these the network has (VGG, ResNet, DenseNet: depth;
# a LeNet-like net would offer a number of conv blocks).
DEPTH_KNOBS = ("depth", "conv_blocks", "num_blocks")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


class Param:
    """One tuned knob: name in [tune], config key, and either a range (lo, hi, sampling) or a list of values."""

    def __init__(self, name, key, values=None, lo=None, hi=None, sampling=None):
        self.name, self.key, self.values, self.lo, self.hi, self.sampling = name, key, values, lo, hi, sampling

    def describe(self):
        if self.values is not None:
            return f"{self.name} ∈ {{{', '.join(map(str, self.values))}}}"
        return f"{self.name} ∈ [{self.lo:g}, {self.hi:g}] ({self.sampling})"

    def grid(self):
        """Values for grid search: the listed ones, or a few points of the range (decades on a log scale)."""
        if self.values is not None:
            return list(self.values)
        if self.sampling == "log":
            pts, v = [], self.lo
            while v <= self.hi * (1 + 1e-9):
                pts.append(float(f"{v:.6g}"))
                v *= 10
            if not math.isclose(pts[-1], self.hi, rel_tol=1e-6):
                pts.append(self.hi)
            return pts
        return [self.lo, (self.lo + self.hi) / 2, self.hi]


def depth_knob(model_name):
    """The builder keyword that `depth` in [tune] changes, or a UserError naming the network."""
    defaults = registry.get(model_name).defaults()
    for k in DEPTH_KNOBS:
        if k in defaults and isinstance(defaults[k], int) and not isinstance(defaults[k], bool):
            return k
    raise UserError(f"network {model_name} has no depth knob ({' or '.join(DEPTH_KNOBS)}), so [tune] depth cannot "
                    f"be searched; remove depth from [tune] (its knobs: {', '.join(defaults) or 'none'})")


def space(cfg):
    """The search space of `cfg['tune']` as a list of Param, every value checked against the config schema."""
    params = []
    for name, (key, sampling) in SPACE.items():
        values = cfg["tune"][name]
        if not values:
            continue
        sec, k = key.split(".")
        if name == "depth":
            k = depth_knob(cfg["model"]["name"])
            key = f"model.{k}"
        elif k not in cfg[sec]:
            raise UserError(f"network {cfg['model']['name']} has no {k} knob, so [tune] {name} cannot be searched; "
                            f"remove it from [tune]")
        checked = [_check_value(cfg, key, v, name) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise UserError(f"tune.{name} = {values} lists a value twice")
        if sampling and len(checked) == 2:
            lo, hi = checked
            if not lo < hi:
                raise UserError(f"tune.{name} = {values} is a range [low, high]: low must be below high")
            if sampling == "log" and lo <= 0:
                sampling = "linear"  # e.g. weight_decay = [0, 1e-3]
            params.append(Param(name, key, lo=lo, hi=hi, sampling=sampling))
        else:
            params.append(Param(name, key, values=checked))
    return params


def _check_value(cfg, key, value, name):
    sec, k = key.split(".")
    v = config_mod.check_type(key, value, cfg[sec][k], f"[tune] {name}")
    probe = copy.deepcopy(cfg)
    probe[sec][k] = v
    try:
        config_mod.validate(probe)
    except UserError as e:
        raise UserError(f"tune.{name} value {value!r} is not allowed: {e}") from None
    return v


def hyperparameters(params, grid=False):
    """A keras_tuner.HyperParameters declaring the space (for a grid, ranges become a few points)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for p in params:
        if p.values is not None or grid:
            vals = p.grid()
            if len(vals) == 1:
                hp.Fixed(p.name, vals[0])
            else:
                hp.Choice(p.name, vals, ordered=not isinstance(vals[0], str))
        else:
            hp.Float(p.name, p.lo, p.hi, sampling=p.sampling)
    return hp


def trial_config(base, params, values, epochs):
    """The run config of one trial: `base` (no [tune]) with the trial's values and epoch count."""
    cfg = copy.deepcopy(base)
    for p in params:
        if p.name in values:
            sec, k = p.key.split(".")
            cfg[sec][k] = config_mod.check_type(p.key, values[p.name], cfg[sec][k], "tune")
    cfg["train"]["epochs"] = int(epochs)
    config_mod.validate(cfg)
    cfg.pop("tune")  # a trial is a plain run
    return cfg


def objective_value(results, objective):
    """The trial's objective: the best epoch of the history (max for accuracy, min for loss)."""
    hist = results.get("history", {}).get(objective) or []
    vals = [v for v in hist if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return max(vals) if OBJECTIVES[objective] == "max" else min(vals)


def check_input(cfg, params):
    """Problems the whole search would hit, found before any trial: an objective with no validation split,
    and depth values the network cannot build on these images (each built once, quickly)."""
    import keras

    from .. import data as data_mod

    t = cfg["tune"]
    if t["objective"].startswith("val_") and not cfg["data"]["val_split"]:
        raise UserError(f"tune.objective = {t['objective']} needs a validation split: set data.val_split > 0 "
                        "or use --objective accuracy")
    depth = next((p for p in params if p.name == "depth"), None)
    if depth is None:
        return
    d = cfg["data"]
    data = data_mod.load(d["name"])
    h, w = d["image_size"] or data.shape[:2]
    shape = (h, w, d["channels"] or data.shape[2])
    kw = {k: v for k, v in cfg["model"].items() if k != "name"}
    knob = depth.key.split(".")[1]
    for v in depth.grid():
        try:
            registry.build(cfg["model"]["name"], shape, data.num_classes, **{**kw, knob: v})
        except ValueError as e:
            msg = one_line(e, 300, kind=False)
            raise UserError(f"tune.depth value {v} does not work for {cfg['model']['name']} on "
                            f"{shape[0]}×{shape[1]}×{shape[2]} images: {msg}") from None
        finally:
            keras.backend.clear_session()


def format_values(values, params):
    out = []
    for p in params:
        if p.name in values:
            v = values[p.name]
            out.append(f"{p.name}={v:.3g}" if isinstance(v, float) else f"{p.name}={v}")
    return " ".join(out)
