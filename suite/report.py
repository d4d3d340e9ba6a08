"""`python -m suite report [paths…]`: one table across runs, and training-curve plots.

A run is a directory holding config.json (written when it starts) and, once finished, results.json. Paths may be
run directories or any folder above them (default: logs/). The table has a row per run: experiment, network,
data, parameters, epochs, best validation accuracy, test accuracy, what `suite eval` measured on the run's own test
split (eval.json: each test-time augmentation, and "+precise_bn" for recomputed BatchNorm statistics), the paper's
reference accuracy (from the experiment file's `reference_accuracy` / `reference_data`), wall time and status:
complete | diverged | failed (from results.json) | running (no results.json yet, and a live process holds the run's
lock, as `list --runs` decides) | interrupted (no results.json, and no process holds it: the same command resumes it).

Curves come from the run's TensorBoard events (train/ and validation/, so a resumed run's curves are whole), or
from results.json's history when the events are gone. Plots: `curves.png` in every run directory, plus one
combined plot of the runs compared.
"""

import csv
import importlib.util
import io
import json
import math
import os
import pathlib
import sys
import time

from .errors import UserError
from .runner import read_json

STALE_S = 600  # without file locks (Windows): a run written this recently counts as running
PLOT_NAME = "curves.png"
COMBINED_NAME = "report.png"
COLUMNS = ("experiment", "network", "data", "params", "epochs", "best val acc", "test acc", "suite eval", "paper",
           "wall time", "status", "run")


# --------------------------------------------------------------------------------------------- finding runs

def is_run(d):
    return (d / "config.json").is_file() or (d / "results.json").is_file()


def find_runs(paths):
    """Run directories under `paths` (each a run directory or a folder above some), in path order."""
    found = []
    for p in map(pathlib.Path, paths):
        if not p.exists():
            raise UserError(f"{p} does not exist: give run directories or folders holding them (default logs)")
        if p.is_dir() and is_run(p):
            found.append(p)
        elif p.is_dir():
            found += sorted({f.parent for pat in ("config.json", "results.json") for f in p.rglob(pat)})
        else:
            raise UserError(f"{p} is not a directory: give run directories or folders holding them")
    seen, out = set(), []
    for d in found:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def events_history(run_dir):
    """{metric: [value per epoch]} from the Keras TensorBoard events: train/epoch_x → x, validation/epoch_x →
    val_x. Epochs written twice (a resumed run redoing one) keep the last value. {} when there are none."""
    hist = {}
    for sub, prefix in (("train", ""), ("validation", "val_")):
        d = pathlib.Path(run_dir) / sub
        if not d.is_dir() or not any(d.glob("events.out.tfevents.*")):
            continue
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.util import tensor_util

        acc = EventAccumulator(str(d), size_guidance={"tensors": 0, "scalars": 0})
        try:
            acc.Reload()
        except Exception:  # a half-written file: use what the others have
            continue
        tags = acc.Tags()
        for tag in tags.get("tensors", []) + tags.get("scalars", []):
            if not tag.startswith("epoch_"):
                continue
            try:
                points = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            except (KeyError, ValueError, TypeError):
                points = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
            by_step = dict(points)
            if by_step:
                n = max(by_step) + 1
                hist[prefix + tag[len("epoch_"):]] = [by_step.get(i, math.nan) for i in range(n)]
    return hist


def accuracy_key(hist):
    for k in ("accuracy", "predictions_accuracy"):
        if k in hist or f"val_{k}" in hist:
            return k
    return next((k for k in hist if k.endswith("accuracy") and not k.startswith("val_")), "accuracy")


def _finite_max(values):
    v = [x for x in values or [] if x is not None and math.isfinite(x)]
    return max(v) if v else None


def _held(d, now=None):
    """Whether a live process trains into run directory d. Its lock (suite.runner.lock) says so exactly: the OS
    releases it when the process ends, kill -9 included, so a run stopped a minute ago is not "running"."""
    if importlib.util.find_spec("fcntl") is None:  # no locks to ask (Windows): a recent write is the best sign
        now = time.time() if now is None else now
        return now - max((f.stat().st_mtime for f in d.rglob("*") if f.is_file()), default=0) < STALE_S
    from .runner import is_locked

    return is_locked(d)


def load_run(run_dir, now=None):
    """Everything the table and the plots need about one run."""
    from .runner import status_of

    d = pathlib.Path(run_dir)
    cfg = read_json(d / "config.json") or {}
    res = read_json(d / "results.json")
    exp, model, data, train = (cfg.get(k, {}) for k in ("experiment", "model", "data", "train"))
    hist = events_history(d) or (res or {}).get("history") or {}
    acc_key = accuracy_key(hist)
    status = status_of(d)
    if status == "incomplete":
        status = "running" if _held(d, now) else "interrupted"
    res = res or {}
    planned = res.get("epochs") or train.get("epochs")
    done = len(hist["loss"]) if hist.get("loss") else (res or {}).get("epochs_run_now", 0)
    wall = res.get("wall_time_s")
    if wall is None and hist.get("epoch_time"):
        wall = sum(x for x in hist["epoch_time"] if math.isfinite(x))
    ref = res.get("reference_accuracy", exp.get("reference_accuracy")) or None
    name = res.get("data") or data.get("name") or "?"
    return {
        "dir": d,
        "experiment": res.get("experiment") or exp.get("name") or d.parent.name,
        "network": res.get("model") or model.get("name") or "?",
        "data": name,
        "params": res.get("params"),
        "epochs_planned": planned,
        "epochs_done": done,
        "best_val_accuracy": res.get("best_val_accuracy") if "best_val_accuracy" in res and not res.get("resumed")
        else _finite_max(hist.get(f"val_{acc_key}")),
        "test_accuracy": (res.get("test") or {}).get("accuracy"),
        "eval": eval_figures(d, name),
        "reference_accuracy": ref,
        "reference_data": res.get("reference_data", exp.get("reference_data")) or "",
        "wall_time_s": wall,
        "status": status,
        "history": hist,
        "acc_key": acc_key,
    }


def eval_figures(run_dir, data):
    """What `suite eval` measured on data set `data` (eval.json): {"none", "flip", "10crop", "none+precise_bn", …:
    accuracy}; {} when it never ran or its file is damaged."""
    saved = read_json(pathlib.Path(run_dir) / "eval.json")
    found = saved.get(data) if isinstance(saved, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v["accuracy"] for k, v in sorted(found.items()) if isinstance(v, dict) and "accuracy" in v}


# --------------------------------------------------------------------------------------------- the table

def _pct(x):
    return "–" if x is None else f"{100 * x:.2f} %"


def _duration(s):
    if s is None:
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m}m {s:02d}s" if m < 60 else f"{m // 60}h {m % 60:02d}m"


def _epochs(r):
    done, planned = r["epochs_done"], r["epochs_planned"]
    if planned is None:
        return "–" if done is None else str(done)
    if done is None or (done >= planned and r["status"] == "complete"):
        return str(planned)
    return f"{done}/{planned}"


def _short(d):
    try:
        return str(d.relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(d)


def _evals(evals):
    return ", ".join(f"{_pct(a)} ({k})" for k, a in evals.items()) or "–"


def display_row(r):
    ref = _pct(r["reference_accuracy"])
    if r["reference_accuracy"] and r["reference_data"]:
        ref += f" ({r['reference_data']})"
    return [r["experiment"], r["network"], r["data"], "–" if r["params"] is None else f"{r['params']:,}",
            _epochs(r), _pct(r["best_val_accuracy"]), _pct(r["test_accuracy"]), _evals(r["eval"]), ref,
            _duration(r["wall_time_s"]), r["status"], _short(r["dir"])]


def markdown(rows):
    """A Markdown table, padded so it also reads as plain text on a terminal."""
    from .table import render

    return render(COLUMNS, [display_row(r) for r in rows], numeric={3, 4, 5, 6, 9})


CSV_FIELDS = ("experiment", "network", "data", "params", "epochs_done", "epochs_planned", "best_val_accuracy",
              "test_accuracy", "eval", "reference_accuracy", "reference_data", "wall_time_s", "status", "run_dir")


def to_csv(rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in rows:
        raw = {**r, "eval": json.dumps(r["eval"]) if r["eval"] else None}  # {TTA: accuracy} as JSON
        w.writerow(["" if raw.get(k) is None else raw[k] for k in CSV_FIELDS[:-1]] + [str(r["dir"])])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- the plots

def _figure(*args, **kw):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(*args, **kw)


def _epochs_axis(values):
    return list(range(1, len(values) + 1))


def _reference_applies(r):
    return bool(r["reference_accuracy"]) and r["reference_data"] in ("", r["data"])


def plot_run(r, path=None):
    """Loss, accuracy and learning rate against epochs for one run; returns the PNG's path (None: no epochs)."""
    h, k = r["history"], r["acc_key"]
    if not h.get("loss"):
        return None
    has_lr = bool(h.get("learning_rate"))
    fig = _figure(figsize=(13 if has_lr else 9, 3.8), dpi=100)
    axes = fig.subplots(1, 3 if has_lr else 2)
    ax = axes[0]
    ax.plot(_epochs_axis(h["loss"]), h["loss"], label="train", marker=".")
    if h.get("val_loss"):
        ax.plot(_epochs_axis(h["val_loss"]), h["val_loss"], label="validation", marker=".")
    ax.set_title("loss")
    ax = axes[1]
    if h.get(k):
        ax.plot(_epochs_axis(h[k]), h[k], label="train", marker=".")
    if h.get(f"val_{k}"):
        ax.plot(_epochs_axis(h[f"val_{k}"]), h[f"val_{k}"], label="validation", marker=".")
    if r["test_accuracy"] is not None:
        ax.plot([len(h["loss"])], [r["test_accuracy"]], "k*", markersize=11,
                label=f"test {r['test_accuracy']:.2%}")
    if _reference_applies(r):
        ax.axhline(r["reference_accuracy"], color="grey", linestyle="--",
                   label=f"paper {r['reference_accuracy']:.2%}")
    ax.set_title("accuracy")
    if has_lr:
        ax = axes[2]
        lr = h["learning_rate"]
        ax.plot(_epochs_axis(lr), lr, color="tab:green", marker=".")
        if all(x > 0 for x in lr if math.isfinite(x)) and max(lr) / max(min(lr), 1e-30) > 20:
            ax.set_yscale("log")
        ax.set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    name = r["experiment"] if r["experiment"] == r["network"] else f"{r['experiment']} ({r['network']})"
    fig.suptitle(f"{name} · {r['data']} · {r['dir'].name} · {r['status']}", fontsize=10)
    fig.tight_layout()
    path = pathlib.Path(path or r["dir"] / PLOT_NAME)
    fig.savefig(path)
    return path


def _label(r, rows):
    names = [x["experiment"] for x in rows]
    return r["experiment"] if names.count(r["experiment"]) == 1 else f"{r['experiment']} {r['dir'].name}"


def plot_combined(rows, path):
    """Validation accuracy (training accuracy where a run has no validation split) and training loss of every
    run on shared axes; dashed lines: the papers' reference accuracies measured on the same data."""
    rows = [r for r in rows if r["history"].get("loss")]
    if not rows:
        return None
    fig = _figure(figsize=(12, 4.5), dpi=100)
    acc_ax, loss_ax = fig.subplots(1, 2)
    for i, r in enumerate(rows):
        h, k = r["history"], r["acc_key"]
        color = f"C{i % 10}"
        label = _label(r, rows)
        acc = h.get(f"val_{k}") or h.get(k)
        if acc:
            acc_ax.plot(_epochs_axis(acc), acc, color=color, label=label)
        if _reference_applies(r):
            acc_ax.axhline(r["reference_accuracy"], color=color, linestyle="--", linewidth=0.8)
        loss_ax.plot(_epochs_axis(h["loss"]), h["loss"], color=color, label=label)
    paper = any(_reference_applies(r) for r in rows)
    acc_ax.set_title("validation accuracy" + (" (dashed: paper)" if paper else ""))
    loss_ax.set_title("training loss")
    if all(x > 0 for r in rows for x in r["history"]["loss"] if math.isfinite(x)):
        loss_ax.set_yscale("log")
    for ax in (acc_ax, loss_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def combined_path(rows):
    """report.png in the deepest folder holding all the runs (logs/ for runs of several experiments)."""
    parents = [r["dir"].resolve().parent for r in rows]
    common = pathlib.Path(os.path.commonpath([str(p) for p in parents]))
    return common / COMBINED_NAME


# --------------------------------------------------------------------------------------------- the command

def report(paths, csv_path=None, plots=True, combined=None, echo=print):
    """Print the table (Markdown), write CSV and plots; returns the rows."""
    dirs = find_runs(paths)
    if not dirs:
        raise UserError(f"no runs under {', '.join(map(str, paths))}: train one with `python -m suite run lenet5`")
    rows = [load_run(d) for d in dirs]
    if csv_path == "-":
        sys.stdout.write(to_csv(rows))
        out = sys.stderr  # keep stdout pure CSV
    else:
        echo(markdown(rows))
        out = None
        if csv_path:
            pathlib.Path(csv_path).write_text(to_csv(rows))

    def note(msg):
        (echo(msg) if out is None else print(msg, file=out))

    if csv_path and csv_path != "-":
        note(f"CSV: {csv_path}")
    if plots:
        written = [p for p in (plot_run(r) for r in rows) if p]
        if written:
            note(f"curves: {PLOT_NAME} in {len(written)} run director{'ies' if len(written) != 1 else 'y'}"
                 + (f" ({_short(written[0])})" if len(written) == 1 else ""))
        if combined or len(written) > 1:
            p = plot_combined(rows, combined or combined_path(rows))
            if p:
                note(f"combined plot: {_short(p)}")
    return rows
