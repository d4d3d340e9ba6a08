"""A study's report: per arm the metric's mean ± std over seeds and the other figures, the verdict with the test
it used, all written to report.md (printed), study.json (machine-readable) and study.png (each arm's validation
curve: mean over seeds with a min–max band)."""

import json
import math
import statistics
import warnings

from .. import report as run_report
from .. import runner
from ..table import render
from . import spec, verdict
from . import study as study_runs

COLUMNS = [("test_accuracy", "test acc", "pct"), ("best_val_accuracy", "best val acc", "pct"),
           ("final_train_loss", "final train loss", "num"), ("generalisation_gap", "train−test gap", "pct"),
           ("epochs_to_target", "epochs to target", "num"), ("params", "params", "int"),
           ("peak_rss_mb", "peak memory MB", "num"), ("grad_norm_ratio", "grad first/last", "num"),
           ("wall_time_s", "time/run", "dur")]


def _values(records, arm, key):
    return [r["figures"].get(key) for r in records if r["arm"] == arm]


def summary(values):
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}


def fmt(s, kind):
    if s is None:
        return "–"
    m, sd, n = s["mean"], s["std"], s["n"]
    if kind == "pct":
        text = f"{100 * m:.2f} ± {100 * sd:.2f} %"
    elif kind == "int":
        return f"{m:,.0f}" if sd == 0 else f"{m:,.0f} ± {sd:,.0f}"
    elif kind == "dur":
        return run_report._duration(m)
    else:
        text = f"{m:.4g} ± {sd:.2g}"
    return text if n > 1 else text.split(" ±")[0]


def build(study, records, seeds, full, wall):
    arms = list(study.arms)
    values = {a: _values(records, a, study.metric) for a in arms}
    overall, parts = verdict.judge(study.claim, values, study.alpha, study.margin)
    table = {a: {k: summary(_values(records, a, k)) for k, _, _ in COLUMNS + [(study.metric, "", "")]} for a in arms}
    diverged = {a: sum(r["figures"]["diverged"] for r in records if r["arm"] == a) for a in arms}
    return {"study": study.name, "question": study.question, "claim": study.claim_text, "source": study.source,
            "base": study.base, "metric": study.metric, "higher_is_better": study.higher_is_better,
            "seeds": seeds, "full": full, "verdict": overall, "comparisons": parts, "arms": table,
            "diverged": diverged, "values": values, "wall_time_s": round(wall, 1),
            "runs": [str(r["dir"]) for r in records]}


def markdown(study, s, root, cfg):
    """report.md; cfg: the first run's resolved config (for the settings every arm shares)."""
    what, up = spec.METRICS[study.metric]
    kind = next((k for m, _, k in COLUMNS if m == study.metric), "num")
    shown = [c for c in COLUMNS if c[0] != study.metric and any(s["arms"][a][c[0]] for a in s["arms"])]
    head = ["arm", f"{study.metric} (mean ± std)"] + [h for _, h, _ in shown] + ["diverged"]
    rows = [[a, fmt(s["arms"][a][study.metric], kind)] + [fmt(s["arms"][a][k], kd) for k, _, kd in shown]
            + [f"{s['diverged'][a]}/{len(s['seeds'])}"] for a in s["arms"]]
    # Only what every arm shares: a value an arm overrides is the first arm's and would mislabel the others
    # (batch_size's arms differ in batch), and the arms' own values follow in "Arms differ only in".
    varied = {k for t in study.arms.values() for k in t}
    setting = "".join(text for key, text in (("data.name", f" on {cfg['data']['name']}"),
                                             ("train.epochs", f", {cfg['train']['epochs']} epochs"),
                                             ("train.batch_size", f", batch {cfg['train']['batch_size']}"))
                      if key not in varied)
    out = [f"# Study `{study.name}`" + (" (--full)" if s["full"] else ""), "",
           f"**Question.** {study.question}", "",
           f"**Claim.** `{study.claim_text}` — {study.source or 'no source given'}", "",
           f"**Setting.** base `{study.base}`{setting}; seeds {', '.join(map(str, s['seeds']))}; metric "
           f"`{study.metric}` ({what}, {'higher' if up else 'lower'} is better). Arms differ only in: "
           + "; ".join(f"**{a}** " + (", ".join(f"`{k} = {json.dumps(v)}`" for k, v in t.items()) or "(the base)")
                       for a, t in study.arms.items()) + ".", "",
           render(head, rows, numeric=set(range(1, len(head))))]
    if s.get("coverage"):
        out += ["", "Receptive-field coverage of one output unit of the last dilated conv (`suite viz`; holes = "
                "gridding): " + "; ".join(f"**{a}** {100 * f:.1f} % (`coverage-{a}.png`)"
                                           for a, f in s["coverage"].items()) + "."]
    out += ["", f"## Verdict: {s['verdict'].upper()}", ""]
    for p in s["comparisons"]:
        ci = "" if not p.get("ci") else f", {100 * (1 - study.alpha):g} % CI [{p['ci'][0]:+.4g}, {p['ci'][1]:+.4g}]"
        out.append(f"- `{p['comparison']}`: **{p['verdict']}** — {p['why']}{ci}; test: {p['test'] or '–'}; "
                   f"n = {p['n'][0]}, {p['n'][1]}.")
    out += ["", f"The verdict is computed from the runs above ({verdict.__name__}: Welch's t-test, TOST for `~`, "
            "exact comparison when an arm does not vary over seeds); identical arms can only come out "
            "inconclusive or equal.", "",
            f"Runs: `{root}/<arm>/seed-*` ({len(s['runs'])} runs, {run_report._duration(s['wall_time_s'])} this "
            f"time) · curves: `{root}/study.png` · TensorBoard: `python -m suite board --logdir {root}`"]
    return "\n".join(out) + "\n"


def plot(study, records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm in study.arms:
        for ax, key in zip(axes, ("val_accuracy", "loss")):
            curves = [study_runs.main_loss(r["history"]) if key == "loss" else
                      r["history"].get(key) or r["history"].get(key.replace("accuracy", "predictions_accuracy"))
                      for r in records if r["arm"] == arm]
            curves = [np.array([np.nan if v is None else v for v in c], float) for c in curves if c]
            if not curves:
                continue
            n = max(len(c) for c in curves)
            m = np.full((len(curves), n), np.nan)
            for i, c in enumerate(curves):
                m[i, :len(c)] = c
            x = np.arange(1, n + 1)
            with warnings.catch_warnings():  # an epoch where every seed diverged is a gap, not a warning
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(m, 0), np.nanmin(m, 0), np.nanmax(m, 0)
            (ln,) = ax.plot(x, mean, marker="o", ms=3, label=f"{arm} (n={len(curves)})")
            ax.fill_between(x, lo, hi, color=ln.get_color(), alpha=0.2)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set(title="validation accuracy (mean, min–max band over seeds)", xlabel="epoch")
    axes[1].set(title="training loss", xlabel="epoch", yscale="log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"study {study.name}: {study.question}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def coverage(study, records, root):
    """{arm: covered fraction} for arms whose network has dilated convolutions, with each arm's coverage map
    (suite viz's picture, on its first run with a checkpoint) in root/coverage-<arm>.png — the gridding effect."""
    from .. import trained, viz

    found = {}
    for arm in study.arms:
        rec = next((r for r in records if r["arm"] == arm and (r["dir"] / "best.keras").is_file()), None)
        if rec is None:
            continue
        t = trained.load(rec["dir"])
        if viz.dilated_stack(t.net) is None:
            continue
        x = viz.test_images(t)
        cov = viz.coverage_maps(t.net, x)
        fig = viz.draw_coverage(cov, len(x))
        fig.savefig(root / f"coverage-{arm}.png", facecolor="white")
        found[arm] = cov["fraction"]
    return found


def write(study, records, seeds, full, wall, root, echo=print):
    s = build(study, records, seeds, full, wall)
    root.mkdir(parents=True, exist_ok=True)
    s["coverage"] = coverage(study, records, root)
    text = markdown(study, s, root, records[0]["config"])
    (root / "report.md").write_text(text)
    runner.write_json(root / "study.json", s)
    plot(study, records, root / "study.png")
    echo(text)
    return s
