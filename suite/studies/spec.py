"""A study file: `experiments/studies/<name>.toml` (yours in ./experiments/studies/ win over the shipped ones).

    [study]
    question = "Does shuffling the training data change what the network learns?"
    claim = "shuffled > sorted"   # comparisons of the metric's arm means, comma-separated: a > b, a < b, a ~ b
    source = "notes 000: dataloader shuffle; Bottou 2012 §4.2"
    base = "lenet5_modern"        # experiment or network
    seeds = [0, 1, 2]
    metric = "test_accuracy"      # see METRICS
    margin = 0.01                 # "~": the largest difference that still counts as none (metric units)
    alpha = 0.05                  # the tests' significance level
    target = 0.9                  # optional: validation accuracy for the "epochs to target" column
    [study.set]                   # settings every arm shares (as --set: section.key = value)
    "train.epochs" = 4
    [study.full]                  # --full: the real data set and the paper-scale recipe
    "data.name" = "mnist"
    [arms.shuffled]               # one table of settings per arm
    "data.shuffle" = true
"""

import dataclasses
import pathlib
import re
import tomllib

from .. import config
from ..errors import UserError, did_you_mean

# metric → (what it is, higher is better)
METRICS = {
    "test_accuracy": ("test accuracy", True),
    "test_loss": ("test loss", False),
    "best_val_accuracy": ("best validation accuracy", True),
    "final_train_loss": ("training loss in the last epoch", False),
    "final_train_accuracy": ("training accuracy in the last epoch", True),
    "generalisation_gap": ("last-epoch training accuracy − test accuracy", False),
    "epochs_to_target": ("epochs until validation accuracy ≥ target", False),
    "params": ("parameters", False),
    "wall_time_s": ("wall time of a run (s)", False),
    "peak_rss_mb": ("peak memory of training above the process's start (MB)", False),
    "grad_norm_ratio": ("gradient norm, first layer / last layer, last epoch", True),
}
STUDY_KEYS = {"question", "claim", "source", "base", "seeds", "metric", "margin", "alpha", "target", "set", "full"}
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
COMPARISON = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*([<>~])\s*([A-Za-z0-9_.-]+)\s*$")


@dataclasses.dataclass
class Study:
    name: str
    path: pathlib.Path
    question: str
    claim: list  # [(arm a, op, arm b)]
    claim_text: str
    source: str
    base: str
    seeds: list
    metric: str
    margin: float
    alpha: float
    target: float
    common: dict  # {"section.key": value}
    full: dict
    arms: dict  # {arm: {"section.key": value}}

    @property
    def higher_is_better(self):
        return METRICS[self.metric][1]


def studies():
    """{name: (origin, path)}: experiments/studies/ in the working directory (yours) and shipped, yours winning."""
    return config.experiments("studies")


def find(target):
    path = config.find_experiment(target, "studies", what="study")
    if path is None:
        raise UserError(f"unknown study {target!r}{did_you_mean(target, studies())}; `python -m suite study --list` "
                        "lists them")
    return path


def flat(table, where):
    """{"section.key": value} from a table written either with quoted dotted keys or as nested tables."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = v2
        else:
            out[k] = v
    for k in out:
        if k.count(".") != 1:
            hint = " (an arm name holding '.' must be quoted: [arms.\"lr_0.1\"])" if "[arms." in where else ""
            raise UserError(f"{where}: setting {k!r} must be section.key, e.g. \"train.epochs\" = 4{hint}")
    return out


def load(target):
    """The study `target` (a name or a .toml path), checked; every arm's config resolves (nothing is written)."""
    path = find(target)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"study file {path} is not valid TOML ({e}); fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read study file {path} ({type(e).__name__}); check the file") from None
    unknown = set(doc) - {"study", "arms"}
    if unknown:
        raise UserError(f"{path}: unknown table [{sorted(unknown)[0]}]; a study has [study], [study.set], "
                        "[study.full] and [arms.<name>] tables")
    s, arms = doc.get("study"), doc.get("arms")
    if not isinstance(s, dict) or not isinstance(arms, dict) or len(arms) < 2:
        raise UserError(f"{path}: a study needs a [study] table and at least two [arms.<name>] tables")
    bad = set(s) - STUDY_KEYS
    if bad:
        k = sorted(bad)[0]
        raise UserError(f"{path}: unknown key study.{k}{did_you_mean(k, STUDY_KEYS)}; keys are "
                        f"{', '.join(sorted(STUDY_KEYS))}")
    for key in ("question", "claim", "base"):
        if not isinstance(s.get(key), str) or not s[key].strip():
            raise UserError(f"{path}: study.{key} must be a non-empty string")
    metric = s.get("metric", "test_accuracy")
    if metric not in METRICS:
        raise UserError(f"{path}: study.metric = {metric!r} is not one of: {', '.join(METRICS)}")
    seeds = s.get("seeds", [0, 1, 2])
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)):
        raise UserError(f"{path}: study.seeds = {seeds!r} must be a list of different non-negative integers")
    nums = {}
    for key, default, lo in (("margin", 0.01, 0.0), ("alpha", 0.05, 0.0), ("target", 0.0, 0.0)):
        v = s.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or (key == "alpha" and not 0 < v < 1):
            raise UserError(f"{path}: study.{key} = {v!r} must be a number" + (" in (0, 1)" if key == "alpha" else
                                                                             " ≥ 0"))
        nums[key] = float(v)
    for name, table in arms.items():
        if not NAME.match(name):
            raise UserError(f"{path}: arm name {name!r} may hold only letters, digits, '_', '-' and '.'")
        if not isinstance(table, dict):
            raise UserError(f"{path}: [arms.{name}] must be a table of settings")
    claim = []
    for part in s["claim"].split(","):
        m = COMPARISON.match(part)
        if not m:
            raise UserError(f"{path}: study.claim part {part.strip()!r} must compare two arms: a > b, a < b or a ~ b")
        a, op, b = m.groups()
        for arm in (a, b):
            if arm not in arms:
                raise UserError(f"{path}: study.claim names arm {arm!r}, which is not an [arms.*] table"
                                f"{did_you_mean(arm, arms)}; arms are {', '.join(arms)}")
        if a == b:
            raise UserError(f"{path}: study.claim compares arm {a!r} with itself")
        claim.append((a, op, b))
    study = Study(path.stem, path, s["question"].strip(), claim, s["claim"].strip(), str(s.get("source", "")),
                  s["base"], seeds, metric, nums["margin"], nums["alpha"], nums["target"],
                  flat(s.get("set", {}), f"{path} [study.set]"), flat(s.get("full", {}), f"{path} [study.full]"),
                  {a: flat(t, f"{path} [arms.{a}]") for a, t in arms.items()})
    if metric == "epochs_to_target" and not study.target:
        raise UserError(f"{path}: study.metric = 'epochs_to_target' needs study.target, e.g. target = 0.9")
    return study


def arm_config(study, arm, seed, full=False, overrides=()):
    """The resolved config of one run: base ← study.set ← study.full (--full) ← the arm ← --set."""
    extra = {"train.verbose": 0, **study.common, **(study.full if full else {}), **study.arms[arm],
             "train.seed": seed}
    try:
        return config.resolve(study.base, overrides, extra, origin=f"{study.path} or --set")
    except UserError as e:
        raise UserError(f"study {study.name}, arm {arm}: {e}") from None


def scale(study, full=False):
    """'digits, 5 ep': the data set and epochs of the study's runs (with --full: the paper-scale recipe's), so
    `study --list` shows what a study costs before it is run. Arms may differ in epochs: 'cifar10, 10–30 ep'."""
    cfgs = [arm_config(study, arm, study.seeds[0], full) for arm in study.arms]
    data = "/".join(sorted({c["data"]["name"] for c in cfgs}))
    epochs = sorted({c["train"]["epochs"] for c in cfgs})
    return f"{data}, {epochs[0]}" + (f"–{epochs[-1]}" if len(epochs) > 1 else "") + " ep"


def networks(study):
    """'resnet20/densenet_bc100': the networks the arms train, in arm order, so `study --list` shows how big a
    study's runs are (the exercise-2 CNN's fit a CPU even under --full; GoogLeNet's do not). Where arms of one
    network differ in model.depth, the depths follow its name ('vgg11_bn depth 11/19'): there the name alone
    would hide the deeper arm."""
    depths = {}
    for arm in study.arms:
        model = arm_config(study, arm, study.seeds[0])["model"]
        depths.setdefault(model["name"], []).append(model.get("depth"))
    return "/".join(name + (" depth " + "/".join(str(d) for d in dict.fromkeys(ds)) if len(set(ds)) > 1 else "")
                    for name, ds in depths.items())
