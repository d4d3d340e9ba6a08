"""One row of benchmarks/RESULTS.md, computed from run directories' results.json — never typed by hand.

    python benchmarks/results_row.py RUN_DIR [RUN_DIR ...] --command "python -m suite run resnet20"

Several run directories (seeds of the same experiment) give the test accuracy as mean ± std (n). Wall time is the
runs' own `wall_time_s` (median when several). "reached" is the first epoch whose validation accuracy was at or
above the paper's figure and the training time up to it (the sum of epoch times; "—" without a validation set or
a figure for the same data); the test set is only used once, at the end. A run whose experiment sets `[eval] tta`
says which views its test figure averages, and gives the image-alone figure beside it. A resumed run's wall time
is the sum of its epoch times (its `wall_time_s` is the last process's).
"""

import argparse
import json
import pathlib
import statistics


def mean_std(xs):
    if not xs:
        return "—"
    return f"{statistics.mean(xs):.2%}" + (f" ± {statistics.stdev(xs):.2%} (n={len(xs)})" if len(xs) > 1 else "")


def load(run_dirs):
    return [json.loads((pathlib.Path(d) / "results.json").read_text()) for d in run_dirs]


def row(run_dirs, command, device=None):
    runs = load(run_dirs)
    r0 = runs[0]
    if len({(r["experiment"], r["data"]) for r in runs}) != 1:
        raise SystemExit("error: the run directories are not all the same experiment on the same data")
    accs = [r["test"]["accuracy"] for r in runs if r["status"] == "complete"]
    acc = mean_std(accs)
    ttas = {r["test"].get("tta") for r in runs if r["status"] == "complete"} - {None}
    if ttas:  # the figure averages several views of each image: say so, and give the image alone beside it
        alone = [r["test"]["single_view"]["accuracy"] for r in runs if r["status"] == "complete"]
        acc += f" ({'/'.join(sorted(ttas))} TTA; single view {mean_std(alone)})"
    ref = r0.get("reference_accuracy")
    ref_data = r0.get("reference_data") or ""
    other = ref and ref_data not in ("", r0["data"])  # e.g. GoogLeNet's ImageNet figure beside a CIFAR run
    ref_cell = (f"{ref:.2%}" + (f" ({ref_data}: not comparable)" if other else "")) if ref else "—"
    if other:
        ref = None  # no "reached" against another data set's figure
    reached = []
    for r in runs:
        h = r.get("history", {})
        val, times = h.get("val_accuracy", []), h.get("epoch_time", [])
        if not ref or not val:  # no figure to reach, or no validation set (val_split = 0)
            reached.append("—")
            continue
        hit = next((i for i, v in enumerate(val) if v >= ref), None)
        reached.append(f"epoch {hit + 1} ({sum(times[:hit + 1]):.0f} s)" if hit is not None else "no")
    rt = r0.get("runtime", {})
    device = rt.get("device") or device or "?"  # runs made before results.json recorded it: --device
    wall = statistics.median(sum(r["history"]["epoch_time"]) if r.get("resumed") else r["wall_time_s"] for r in runs)
    resumed = sum(bool(r.get("resumed")) for r in runs)
    note = f" ({resumed} resumed: epoch times summed)" if resumed else ""
    cells = [r0["experiment"], r0["data"], device, r0.get("backend", "?"), rt.get("precision", "float32"),
             str(r0["epochs_completed"]), f"{wall / 60:.1f} min{note}", "; ".join(sorted(set(reached))), acc,
             ref_cell, f"`{command}`"]
    return "| " + " | ".join(cells) + " |"


AIRBENCH94_H100_S = 2.56  # issue 10: airbench94 (Jordan 2024) measured 94.12 % in 2.56 s on an H100


def epoch_ends(run_dir):
    """Wall-clock times at which TensorBoard recorded each epoch's training loss (Keras writes them at the epoch's
    end, before best.keras and the backup commit), by epoch; [] without event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    at = {}
    for f in sorted((pathlib.Path(run_dir) / "train").glob("events.out.tfevents.*")):
        for ev in EventFileLoader(str(f)).Load():
            if any(v.tag == "epoch_loss" for v in ev.summary.value):
                at[ev.step] = ev.wall_time
    return [at[k] for k in sorted(at)]


def speed(run_dirs):
    """The speed run's line: training time after compilation per seed, its mean, and the ratio to airbench94.
    The first epoch holds the compilation, so it is counted at the median time of the later epochs
    (an estimate, said so in the line); the rest are the runs' own epoch times (no validation in a speed run).
    `epoch_time` ends before the epoch-end callbacks (best.keras, the backup commit), so the line also gives the
    loop's wall time from TensorBoard's epoch timestamps: the span from epoch 1's end to the last epoch's, plus
    one median period for epoch 1 (not for a resumed run, whose span would hold the time it was stopped)."""
    runs = load(run_dirs)
    times, loops = [], []
    for d, r in zip(run_dirs, runs):
        ep = r.get("history", {}).get("epoch_time", [])
        if len(ep) < 2:
            raise SystemExit("error: a speed time needs at least 2 epochs in every run")
        later = ep[1:]
        times.append(sum(later) + statistics.median(later))
        ends = epoch_ends(d) if not r.get("resumed") else []
        if len(ends) == len(ep):
            loops.append(ends[-1] - ends[0] + statistics.median(b - a for a, b in zip(ends, ends[1:])))
    mean = statistics.mean(times)
    resumed = sum(bool(r.get("resumed")) for r in runs)  # a resumed process compiled again in its first epoch
    line = (f"training time after compilation: mean {mean:.2f} s over {len(times)} runs "
            f"({', '.join(f'{t:.2f}' for t in times)} s; epoch 1 counted at the median later epoch, "
            f"its compilation left out); {mean / AIRBENCH94_H100_S:.1f}× airbench94's {AIRBENCH94_H100_S} s "
            "on an H100" + (f"; {resumed} run(s) resumed, so their times also hold a later compilation"
                            if resumed else ""))
    if len(loops) == len(runs):
        m = statistics.mean(loops)
        line += (f". With the epoch-end work (best.keras, commits; TensorBoard's epoch timestamps): mean {m:.2f} s "
                 f"({', '.join(f'{t:.2f}' for t in loops)} s), {m / AIRBENCH94_H100_S:.1f}× airbench94")
    return line


HEADER = ("| experiment | data | device | backend | precision | epochs | wall time | val ≥ paper at | test accuracy "
          "| paper | command |\n|---|---|---|---|---|---|---|---|---|---|---|")

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--command", required=True, help="the exact command that made the runs")
    ap.add_argument("--device", help="the device, for runs whose results.json predates its `runtime` record")
    ap.add_argument("--header", action="store_true", help="print the table header first")
    ap.add_argument("--speed", action="store_true", help="also print the speed run's time line (issue 10 part 4)")
    a = ap.parse_args()
    if a.header:
        print(HEADER)
    print(row(a.run_dirs, a.command, a.device))
    if a.speed:
        print(speed(a.run_dirs))
