"""The end of a study: the results table, summary.json, and the best configuration as an experiment file."""

import json
import math
import pathlib

from ..errors import EXIT_DIVERGED, EXIT_OK
from . import space as tune

SECTIONS = ("experiment", "model", "data", "train", "log")


def rows(oracle, sdir, params):
    """One dict per trial (trial order): its record (tune.json), or keras-tuner's view if it has none."""
    from ..runner import read_json
    from .tuner import RECORD

    out = []
    for tid in sorted(oracle.trials):
        trial = oracle.trials[tid]
        rec = read_json(pathlib.Path(sdir) / f"trial_{tid}" / RECORD)
        if rec is None:
            status = str(trial.status).lower()
            rec = {"trial": tid, "status": "interrupted" if status == "running" else status,
                   "reason": (trial.message or "").strip().splitlines()[-1:] or [""],
                   "values": {p.name: trial.hyperparameters.values.get(p.name) for p in params},
                   "epochs": trial.hyperparameters.values.get("tuner/epochs"), "objective": None,
                   "wall_time_s": None}
            rec["reason"] = rec["reason"][0]
        out.append(rec)
    return out


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(recs, params, objective):
    from ..table import render

    head = ["trial", "status"] + [p.name for p in params] + ["epochs", objective, "time s"]
    body = []
    for r in recs:
        status = r["status"] if r["status"] == "complete" else f"{r['status']}: {r.get('reason', '')}"[:48]
        obj = f"{r['objective']:.4f}" if r.get("objective") is not None else "-"
        body.append([str(r["trial"]), status] + [fmt(r["values"].get(p.name)) for p in params]
                    + [fmt(r.get("epochs")), obj, fmt(r.get("wall_time_s"))])
    return render(head, body, markdown=False)


def best_of(recs, objective):
    done = [r for r in recs if r["status"] == "complete" and r.get("objective") is not None]
    if not done:
        return None
    sign = 1 if tune.OBJECTIVES[objective] == "max" else -1
    return max(done, key=lambda r: (sign * r["objective"], -int(r["trial"])))


def report(oracle, cfg, params, sdir, echo=print):
    t = cfg["tune"]
    recs = rows(oracle, sdir, params)
    echo("")
    echo(table(recs, params, t["objective"]))
    best = best_of(recs, t["objective"])
    summary = {"study": str(sdir), "tuner": t["tuner"], "objective": t["objective"],
               "space": [p.describe() for p in params],
               "trials": [{k: v for k, v in r.items() if k != "config"} for r in recs],
               "best": None}
    if best is None:
        (pathlib.Path(sdir) / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        echo(f"no trial finished; see {sdir}")
        return EXIT_DIVERGED
    path = pathlib.Path(sdir) / "best.toml"
    write_best(path, best, cfg, sdir)
    summary["best"] = {"trial": best["trial"], "objective": best["objective"], "values": best["values"],
                       "epochs": best["epochs"], "file": str(path)}
    (pathlib.Path(sdir) / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    n_ok = sum(r["status"] == "complete" for r in recs)
    echo(f"\nbest: trial {best['trial']} · {tune.format_values(best['values'], params)} · {best['epochs']} epochs · "
         f"{t['objective']} {best['objective']:.4f} ({n_ok} of {len(recs)} trials finished)")
    echo(f"best configuration: {path}  (python -m suite run {path})")
    echo(f"TensorBoard HParams: tensorboard --logdir {sdir}")
    return EXIT_OK


def write_best(path, rec, cfg, sdir):
    """The best trial's configuration as a complete experiment file (every section spelled out)."""
    run_cfg = json.loads(json.dumps(rec["config"]))
    run_cfg["train"]["epochs"] = rec["epochs"]  # the whole budget (a hyperband trial may have started warm)
    run_cfg["experiment"]["name"] = cfg["experiment"]["name"]
    run_cfg["log"] = dict(cfg["log"])  # the trial's checkpoints setting was the search's
    run_cfg["train"]["verbose"] = cfg["train"]["verbose"]
    desc = run_cfg["experiment"].get("description") or cfg["model"]["name"]
    run_cfg["experiment"]["description"] = f"{desc} · tuned ({sdir.name}, trial {rec['trial']})"
    lines = [f"# Best of the study {sdir} ({cfg['tune']['tuner']}): trial {rec['trial']},",
             f"# {rec['objective_name']} {rec['objective']:.4f}; tuned: "
             + ", ".join(f"{k} = {toml_value(v)}" for k, v in rec["values"].items()) + ".",
             "# Run it with: python -m suite run <this file>", ""]
    for sec in SECTIONS:
        lines.append(f"[{sec}]")
        for k, v in run_cfg.get(sec, {}).items():
            if v is not None:
                lines.append(f"{k} = {toml_value(v)}")
        lines.append("")
    text = "\n".join(lines)
    pathlib.Path(path).write_text(text)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{v} cannot be written to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
