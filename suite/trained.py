"""A trained run, loaded for use: `suite eval`, `predict` and `viz` read run directories through `load()`.

The network comes from the run's `best.keras` (Keras' safe mode) and the preprocessing from the run's own
resolved config.json: pictures go through `suite.pipeline.make` in evaluation mode — the code path training
fed — and a run trained with augmentation on the device has its `Augment` layer split off, so every caller
gets the same thing: `net`, taking normalised images, with one softmax output.
"""

import dataclasses
import pathlib

import numpy as np

from . import data as data_mod
from .errors import UserError, one_line

CHECKPOINTS = ("best", "last")


@dataclasses.dataclass
class Trained:
    run_dir: pathlib.Path
    cfg: dict
    results: dict  # results.json, or {} for a run still training or killed
    net: object  # keras.Model: normalised [B, H, W, C] in, class probabilities out
    shape: tuple  # (H, W, C) the network takes
    mean: np.ndarray
    std: np.ndarray
    class_names: list
    # the BatchNorm statistics `net` holds: "none" (no BatchNorm), "as saved" (recomputed when the run saved them:
    # eval.precise_bn), "moving averages" (the run predates eval.precise_bn or turned it off), "recomputed"
    bn: str = "none"

    @property
    def num_classes(self):
        return int(self.net.outputs[0].shape[-1])

    def batches(self, x, y=None, batch_size=256, raw=False):
        """tf.data batches of images `x` (any size and channels: converted and resized as in training) for the
        network: normalised, or raw pixels (uint8 where exact, see pipeline.raw_format) when `raw`."""
        from . import pipeline

        y = np.zeros(len(x), np.int64) if y is None else y
        return pipeline.make(x, y, shape=self.shape, batch_size=batch_size, training=False,  # no crop/flip/shuffle
                             data_cfg=self.cfg["data"], seed=0, mean=self.mean, std=self.std, raw=raw)

    def recompute_bn(self, images):
        """`--precise-bn N` of eval, predict and viz: the network's BatchNorm statistics recomputed in memory as a
        run with eval.precise_bn = `images` does before its test (runner.precise_bn: the same training images, drawn
        with the run's train.seed, in its batch size, through its augmentation), for runs trained without it. The
        augmentation runs on the host here, as `net` takes normalised images: for a run that augmented on the
        device, the same kinds of crops, flips and colour noise (tests/test_augment.py), drawn with other random
        numbers. The run's files are not touched. Returns the number of images used (0: no BatchNorm)."""
        from . import pipeline, runner

        cfg = {**self.cfg, "eval": {**self.cfg.get("eval", {}), "precise_bn": images}}
        dc = cfg["data"]
        d = data_mod.load(dc["name"])
        xtr, ytr = data_mod.splits(d, dc)[:2]
        pca = pipeline.colour_pca(xtr, self.shape[2]) if dc.get("pca_colour", 0.0) > 0 else None
        parts = dict(train=(xtr, ytr), shape=self.shape, data=d, model=self.net)
        precise = runner.precise_bn(cfg, parts, dict(mean=self.mean, std=self.std, raw=False, pca=pca), self.net)
        self.bn = "recomputed" if precise else self.bn
        return precise() if precise else 0

    def data(self, name=None):
        """The data set `name` (default: the run's own) after checking it fits the network's classes."""
        name = name or self.cfg["data"]["name"]
        d = data_mod.load(name)
        top = int(max(d.y_test.max(initial=0), d.y_train.max(initial=0)))
        if top >= self.num_classes:
            raise UserError(f"{name} has labels up to {top} but the run's network has {self.num_classes} classes; "
                            "evaluate on a data set with the run's classes")
        return d


def read_json(path, what):
    """runner.read_json, but a missing or unreadable file is the user's one-line error."""
    from .runner import read_json as read

    found = read(path)
    if found is None:
        raise UserError(f"cannot read {what} {path} (missing or damaged); is it a run directory?")
    return found


def load(run_dir, checkpoint="best"):
    """The run in `run_dir` (a directory written by `suite run`), ready to use. One-line errors for a missing
    directory, a folder that is not a run, a run without the checkpoint, or a damaged model file."""
    d = pathlib.Path(run_dir)
    if not d.is_dir():
        raise UserError(f"run directory {d} does not exist; `python -m suite list --runs` lists the runs")
    if not (d / "config.json").is_file():
        raise UserError(f"{d} is not a run directory (no config.json); pass logs/<experiment>/<run-id> "
                        "(see `python -m suite list --runs`)")
    cfg = read_json(d / "config.json", "the run's config")
    results = read_json(d / "results.json", "the run's results") if (d / "results.json").is_file() else {}
    path = d / f"{checkpoint}.keras"
    if not path.is_file():
        why = ("it was trained with log.checkpoints = false" if not cfg.get("log", {}).get("checkpoints", True)
               else "it stopped before its first epoch ended" if checkpoint == "best"
               else "last.keras is written when a run completes")
        raise UserError(f"{d} has no {path.name}: {why}; train it (`python -m suite run ...`) first")
    from .quiet import import_tensorflow

    import_tensorflow()  # only now: a wrong path is said at once, not after TensorFlow's start (quietly, first)
    import keras

    from . import augment, pipeline
    from .nets import custom_layers

    custom_layers()  # the suite's own layers, so safe mode can rebuild them
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # a truncated, foreign or hand-edited file: Keras raises many kinds
        raise UserError(f"cannot load {path} ({one_line(e, 160)}); "
                        "the file is damaged: train the run again") from None
    on_device = any(layer.name == "augment" and isinstance(layer, augment.Augment) for layer in model.layers)
    if on_device:  # pixels → Augment → the network: keep the network (inputs are normalised by the caller)
        net = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    else:
        net = model
    if len(net.outputs) > 1:  # GoogLeNet's auxiliary heads exist only for training
        net = keras.Model(net.inputs, net.outputs[0], name=net.name)
    shape = tuple(int(s) for s in net.input_shape[1:])

    norm = results.get("normalization")
    if norm:
        mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    else:  # a run still training: the statistics training computed, the same way
        dc = cfg["data"]
        xtr = data_mod.splits(data_mod.load(dc["name"]), dc)[0]
        mean, std = pipeline.channel_stats(xtr, shape[2])
    n = int(net.outputs[0].shape[-1])
    names = results.get("class_names")
    if not names or len(names) != n:
        try:
            names = data_mod.load(cfg["data"]["name"]).class_names
        except UserError:
            names = []
        if len(names) != n:
            names = [str(i) for i in range(n)]
    from .precise_bn import bn_layers

    bn = "none" if not bn_layers(net) else "as saved" if cfg.get("eval", {}).get("precise_bn") else "moving averages"
    return Trained(d, cfg, results, net, shape, mean, std, list(names), bn)


def check_precise_bn(images):
    """`--precise-bn N`: a number of training images, as eval.precise_bn (0: the statistics saved with the run)."""
    from .config import check_range

    check_range("eval.precise_bn", images, f"--precise-bn {images} (training images, as eval.precise_bn)")


def bn_note(t, requested, used):
    """What eval, predict and viz say of `t`'s BatchNorm statistics after `--precise-bn requested` recomputed them
    over `used` images: "" when they are the run's own recomputed ones."""
    if used:
        return f"BatchNorm statistics recomputed over {used} training images (in memory; the run's files are unchanged)"
    if requested and t.bn == "none":
        return "no BatchNorm layers: nothing to recompute"
    if t.bn == "moving averages":
        return ("BatchNorm statistics: the training's moving averages (the run predates eval.precise_bn or turned it "
                "off; --precise-bn 8192 recomputes them)")
    return ""


def note_bn(t, images, note=None):
    """predict and viz: recompute `t`'s BatchNorm statistics when `images` (--precise-bn) is not 0, and say what
    they are on stderr (`note`), as bn_note puts it."""
    import sys

    said = bn_note(t, images, t.recompute_bn(images) if images else 0)
    if said:
        (note or (lambda msg: print(msg, file=sys.stderr)))(said)
