"""Running a study: every arm × seed is an ordinary run of the one runner, in
logs/studies/<study>[-full]/<arm>/seed-<s>-<config hash>/, so re-running the command trains only what is
missing (a finished run is read back, an interrupted one resumes) and a changed setting makes new runs."""

import math
import pathlib
import time

from .. import runner


def run_dir(root, arm, seed, cfg):
    return pathlib.Path(root) / arm / f"seed-{seed}-{runner.config_hash(cfg)}"


def plan(study, seeds, full=False, overrides=(), logdir="logs"):
    """[(arm, seed, cfg, run_dir)] — every config resolved and checked before anything trains."""
    from . import spec

    root = pathlib.Path(logdir) / "studies" / (study.name + ("-full" if full else ""))
    out = []
    for arm in study.arms:
        for seed in seeds:
            cfg = spec.arm_config(study, arm, seed, full, overrides)
            out.append((arm, seed, cfg, run_dir(root, arm, seed, cfg)))
    return root, out


def main_loss(hist):
    """The training loss per epoch without the auxiliary classifiers' (GoogLeNet): Keras' "loss" adds them, weighted,
    to the main classifier's and the weight penalty, so an arm with them would not compare with one without."""
    from ..nets.googlenet import AUX_LOSS_WEIGHT

    loss = hist.get("loss") or []
    aux = [hist[k] for k in sorted(hist) if k.startswith("aux") and k.endswith("_loss")]
    if not aux:
        return loss
    parts = zip(loss, *aux)
    return [None if None in p else p[0] - AUX_LOSS_WEIGHT * sum(p[1:]) for p in parts]


def figures(results, hist, target=0.0):
    """One run's figures, under the study metrics' names (suite.studies.spec.METRICS)."""
    test = results.get("test") or {}
    loss, acc = main_loss(hist), hist.get("accuracy") or hist.get("predictions_accuracy") or []
    val = hist.get("val_accuracy") or hist.get("val_predictions_accuracy") or []
    ok = results.get("status") == "complete"

    def last(xs):
        xs = [x for x in xs if x is not None]
        return float(xs[-1]) if xs else None

    f = {
        "test_accuracy": test.get("accuracy") if ok else None,
        "test_loss": test.get("loss") if ok else None,
        "best_val_accuracy": results.get("best_val_accuracy") if ok else None,
        "final_train_loss": last(loss) if ok else None,
        "final_train_accuracy": last(acc) if ok else None,
        "params": results.get("params"),
        "wall_time_s": results.get("wall_time_s"),
        "peak_rss_mb": results.get("peak_rss_mb"),
        "grad_norm_ratio": last(hist.get("grad_norm_ratio") or []) if ok else None,
        "epochs_to_target": None,
        "diverged": results.get("status") == "diverged",
    }
    if f["final_train_accuracy"] is not None and f["test_accuracy"] is not None:
        f["generalisation_gap"] = f["final_train_accuracy"] - f["test_accuracy"]
    else:
        f["generalisation_gap"] = None
    if target and ok:
        f["epochs_to_target"] = next((i + 1 for i, v in enumerate(val) if v is not None and v >= target), None)
    for k, v in f.items():
        if isinstance(v, float) and not math.isfinite(v):
            f[k] = None
    return f


def run(study, runs, echo=print):
    """Train what is missing of plan()'s runs; returns ([run records] with each run's config, figures and history,
    wall time)."""
    import keras

    from ..quiet import hide_retracing_warning

    hide_retracing_warning()  # every run builds its model anew
    records = []
    t0 = time.time()
    for i, (arm, seed, cfg, d) in enumerate(runs, 1):
        status = runner.status_of(d) if d.is_dir() else "new"
        if status in ("complete", "diverged"):
            res = runner.read_json(d / runner.RESULTS) or {}
            what = "done earlier"
        else:
            keras.backend.clear_session()  # one process trains them all: keep each run's graph state apart
            res = runner.run(cfg, run_dir=d, echo=lambda *a: None)
            what = "resumed" if status == "incomplete" else "trained"
        f = figures(res, res.get("history") or {}, study.target)
        records.append({"arm": arm, "seed": seed, "dir": d, "config": cfg, "results": res, "figures": f,
                        "history": res.get("history") or {}})
        val = f.get(study.metric)
        shown = "diverged" if f["diverged"] else ("–" if val is None else f"{val:.4g}")
        echo(f"[{i}/{len(runs)}] {arm} seed {seed}: {study.metric} {shown} · {what} "
             f"({res.get('wall_time_s', 0):.1f} s) · {d}")
    return records, time.time() - t0


def run_workers(argv, groups, echo=print):
    """--workers N: N processes (`suite study … --shard i/N`) each train every N-th run of the plan, on the GPUs of
    `groups` (distribute.device_groups': one run per device, or K each; None: all visible); this process waits for
    them. Their runs then read back as "done earlier". Returns the first failed worker's exit status, or 0."""
    import os
    import subprocess
    import sys

    workers = len(groups)
    procs = []
    for i, g in enumerate(groups):
        env = dict(os.environ)
        if g is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(g)
        echo(f"worker {i}: runs {i + 1}, {i + 1 + workers}, … of the plan" + (f" · GPU {','.join(g)}" if g else ""))
        procs.append(subprocess.Popen([sys.executable, "-m", "suite", "study", *argv, "--shard", f"{i}/{workers}"],
                                      env=env))
    codes = [p.wait() for p in procs]
    bad = [(i, c) for i, c in enumerate(codes) if c]
    for i, c in bad:
        echo(f"worker {i} exited with status {c}; run the same command again to finish its runs")
    return bad[0][1] if bad else 0
