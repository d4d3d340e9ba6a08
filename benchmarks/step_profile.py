"""Where one training step's time goes on the device: a profiler trace of a few steps, summarised.

    python benchmarks/step_profile.py resnet20 --data cifar10 [--steps 64] [--run] [--out DIR] [--json PATH]
        [--events PATH.json.gz] [--set k=v ...]

Profiles `--steps` steps of the model step alone (one batch held in memory, as `suite bench`'s row and
benchmarks/step_variants.py), or with `--run` one epoch of `--steps` batches of `suite run` itself (pipeline, step,
callbacks, the epoch end), under JAX's profiler (the Python tracer off: it would slow the host it measures). The trace
(DIR/plugins/profile/*/perfetto_trace.json.gz, Chrome's JSON, opens in ui.perfetto.dev) is then summarised per step:
- the step's wall time (the profiled epoch's, over its steps) and the host's dispatch of it (JAX's
  `PjitFunction(train_step)` events: how long Python takes to hand a step to the device, and their spacing);
- on a GPU, from the stream lanes of the device's process (CUPTI): kernels a step, time the device is busy (the union
  of their intervals), the idle gaps between them, and the kernels taking the most time;
and says which of these bounds the step: the host's dispatch, the device's idle gaps (launches), or its kernels.
--events writes the trace cut to the dispatches and the kernels (a Chrome trace still, small enough to come back
from a device call) for a closer look than the summary's.
For the GPU session (benchmarks/gpu_session.sh prof). On an H200, ResNet-20's step took ~3.1–3.3 ms at batch 128
and at 256 alike (step_variants.py, 2026-12-04): latency, not arithmetic. This says whose.
On a CPU the step runs on the host: there are no device lanes and only the host's figures are printed.
Written here, not taken from a library: TensorBoard's profile plugin (XProf) reads the same trace, but it is not on
the GPU machine (nor is the network), and what a device call returns must be small; so the figures are computed
there, from the trace's JSON, and the whole trace stays behind (--events keeps a cut of it).
"""

import argparse
import gzip
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

DISPATCH = "PjitFunction(train_step)"
EVENTS_MAX = 4 * 2**20  # --events: a device call's results.tgz may hold 15 MiB
# lanes the trace derives from the kernels' annotations (per XLA op and module): counting them would count twice
DERIVED = ("XLA Modules", "XLA Ops", "XLA TraceMe", "Steps", "Framework Ops", "Framework Name Scope", "Source code",
           "Launch Stats", "TensorFlow Ops", "TensorFlow Name Scope")


def lanes(events):
    """{pid: process name}, {(pid, tid): thread name} from the trace's metadata events."""
    procs = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    threads = {(e["pid"], e["tid"]): e.get("args", {}).get("name", "") for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return procs, threads


def union(intervals):
    """Merged (start, end) intervals, sorted."""
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def split(events):
    """(the host's step dispatches, outermost only; the kernels: the device's stream lanes; their lane names)."""
    procs, threads = lanes(events)
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    disp = []
    for e in sorted((e for e in spans if e.get("name") == DISPATCH), key=lambda e: e["ts"]):
        if not (disp and e["tid"] == disp[-1]["tid"] and e["ts"] < disp[-1]["ts"] + disp[-1]["dur"]):
            disp.append(e)  # JAX nests two events of this name in each call: the outer one counts
    device = {p for p, name in procs.items() if name.startswith("/device:")}
    dev_threads = {k: v for k, v in threads.items() if k[0] in device}
    streams = {k for k, v in dev_threads.items() if v.startswith("Stream")}
    kernel_lanes = streams or {k for k, v in dev_threads.items() if v not in DERIVED}
    kernels = [e for e in spans if (e["pid"], e["tid"]) in kernel_lanes]
    return disp, kernels, sorted({dev_threads[k] for k in kernel_lanes})


def trimmed(events):
    """The trace cut to what the summary reads (the dispatches, the kernels, their lanes' names): a Chrome trace
    that still opens in ui.perfetto.dev, a small part of the whole (which records every host thread too)."""
    disp, kernels, _ = split(events)
    keep = {(e["pid"], e["tid"]) for e in disp + kernels}
    pids = {pid for pid, _ in keep}
    meta = [e for e in events if e.get("ph") == "M" and ((e.get("name") == "process_name" and e.get("pid") in pids)
                                                         or (e.get("pid"), e.get("tid")) in keep)]
    return {"traceEvents": meta + disp + kernels}


def summarise(events, steps, wall_s):
    """Per-step figures of a Chrome/Perfetto trace (times in µs) of `steps` training steps that took `wall_s`."""
    disp, kernels, lane_names = split(events)
    out = {"steps": steps, "wall_ms_per_step": 1e3 * wall_s / steps, "dispatches": len(disp)}
    if disp:
        out["dispatch_ms"] = statistics.median(e["dur"] for e in disp) / 1e3
        gaps = [b["ts"] - a["ts"] for a, b in zip(disp, disp[1:])]
        out["dispatch_spacing_ms"] = statistics.median(gaps) / 1e3 if gaps else None
    if not kernels:
        out["device"] = None
        return out
    # the profiled steps: from the first dispatch (or kernel) to the last kernel's end
    t0 = disp[0]["ts"] if disp else min(e["ts"] for e in kernels)
    kernels = [e for e in kernels if e["ts"] >= t0]
    busy = union((e["ts"], e["ts"] + e["dur"]) for e in kernels)
    window = busy[-1][1] - t0
    idle = [b[0] - a[1] for a, b in zip(busy, busy[1:])]
    total = {}
    for e in kernels:
        n, t = total.get(e["name"], (0, 0.0))
        total[e["name"]] = (n + 1, t + e["dur"])
    top = sorted(total.items(), key=lambda kv: -kv[1][1])[:15]
    busy_us = sum(e - s for s, e in busy)
    out["device"] = {
        "lanes": lane_names,
        "kernels_per_step": len(kernels) / steps,
        "busy_ms_per_step": busy_us / 1e3 / steps,
        "window_ms_per_step": window / 1e3 / steps,
        "busy_fraction": busy_us / window if window else None,
        "gaps_per_step": len(idle) / steps,
        "gap_median_us": statistics.median(idle) if idle else 0.0,
        "gap_ms_per_step": sum(idle) / 1e3 / steps,
        "largest_gaps_ms": [round(g / 1e3, 3) for g in sorted(idle)[-5:][::-1]],
        "top_kernels": [{"name": k[:100], "per_step": n / steps, "ms_per_step": t / 1e3 / steps,
                         "mean_us": t / n} for k, (n, t) in top],
    }
    return out


def verdict(s):
    """Which of host dispatch, device idle gaps and kernel time bounds the step, from the summary's figures."""
    wall, d = s["wall_ms_per_step"], s.get("device")
    host = s.get("dispatch_ms")
    if d is None and s.get("platform", "cpu") != "cpu":
        return (f"no device lanes in the trace, though JAX runs on {s['platform']}: the profiler could not trace the "
                "device (on a GPU it needs CUPTI, libcupti); only the host's figures above")
    if d is None:
        return "no device lanes in the trace: the step runs on the host" + (
            f"; dispatching it takes {host:.3f} ms of its {wall:.3f} ms" if host is not None else "")
    share = {"kernels (device busy)": d["busy_ms_per_step"], "idle gaps between kernels": d["gap_ms_per_step"]}
    if host is not None:
        share["host dispatch"] = host
    top = max(share, key=share.get)
    if top == "host dispatch" or (host is not None and host >= 0.8 * wall):
        return (f"host-bound: dispatching a step takes {host:.3f} ms of its {wall:.3f} ms; the device is busy "
                f"{d['busy_fraction']:.0%} of the time")
    if top == "idle gaps between kernels":
        return (f"launch-bound: the device idles {d['gap_ms_per_step']:.3f} ms a step in {d['gaps_per_step']:.0f} "
                f"gaps between its {d['kernels_per_step']:.0f} kernels, busy {d['busy_ms_per_step']:.3f} ms")
    return (f"kernel-bound: the device is busy {d['busy_fraction']:.0%} of the time, {d['busy_ms_per_step']:.3f} ms a "
            f"step in {d['kernels_per_step']:.0f} kernels")


def report(s, title, echo=print):
    echo(title)
    echo(f"  wall {s['wall_ms_per_step']:.3f} ms a step over {s['steps']} steps · {s['dispatches']} dispatches"
         + (f", each {s['dispatch_ms']:.3f} ms of host time (median), {s['dispatch_spacing_ms'] or 0:.3f} ms apart"
            if s["dispatches"] else ""))
    d = s.get("device")
    if d:
        echo(f"  device ({', '.join(d['lanes'])}): {d['kernels_per_step']:.1f} kernels a step, busy "
             f"{d['busy_ms_per_step']:.3f} ms ({d['busy_fraction']:.0%} of {d['window_ms_per_step']:.3f} ms), "
             f"{d['gaps_per_step']:.1f} idle gaps a step (median {d['gap_median_us']:.1f} µs, "
             f"{d['gap_ms_per_step']:.3f} ms in all; largest {d['largest_gaps_ms']} ms)")
        echo("  kernels by time a step:")
        for k in d["top_kernels"]:
            echo(f"    {k['ms_per_step']:8.3f} ms  {k['per_step']:6.1f}×  {k['mean_us']:8.1f} µs  {k['name']}")
    echo(f"  → {verdict(s)}")


def start(folder):
    """JAX's profiler on, into `folder`, its Python tracer off: it records every Python call, and the host it
    measures would crawl."""
    import jax

    opts = jax.profiler.ProfileOptions()
    opts.python_tracer_level = 0
    jax.profiler.start_trace(str(folder), create_perfetto_trace=True, profiler_options=opts)


def read(folder):
    """(events, path) of the newest trace under `folder`."""
    path = max(pathlib.Path(folder).glob("plugins/profile/*/perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    with gzip.open(path) as f:
        trace = json.load(f)
    return (trace["traceEvents"] if isinstance(trace, dict) else trace), path


def profile_step(a, out):
    """--steps steps of the model step alone (compiled first), traced. Returns (wall s, steps, batch, settings)."""
    import jax

    from step_variants import compiled
    from suite.bench import timer

    model, one, cfg, parts = compiled(a.target, a.set, a.data, a.steps)
    tm = timer()
    start(out)
    try:
        model.fit(one, epochs=1, verbose=0, callbacks=[tm])
    finally:
        jax.profiler.stop_trace()
    return tm.times()[0], a.steps, cfg["train"]["batch_size"], parts["effective"]


def profile_run(a, out):
    """`suite run` for 3 epochs of --steps batches, the second traced from its start to the third's: its steps, its
    data iterator's start and the whole epoch end, the run's callbacks after ours included (the first epoch
    compiles). Returns (wall s, steps, batch, settings)."""
    import jax
    import keras

    from suite import bench, config, runner
    from suite.errors import UserError

    # as `suite bench` runs it: no validation, --steps batches an epoch, 3 epochs (compiling, traced, the run's end)
    cfg = bench.bench_config(config.resolve(a.target, a.set, {"data.name": a.data} if a.data else {}),
                             a.steps, 1, out / "logs")
    bs = cfg["train"]["batch_size"]

    class TraceEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                start(out)
                self.t = time.perf_counter()
            elif epoch == 2:
                self.wall = time.perf_counter() - self.t
                jax.profiler.stop_trace()

    tr = TraceEpoch()
    res = runner.run(cfg, fresh=True, callbacks=[tr], echo=lambda *x: None)
    if not hasattr(tr, "wall"):  # it stopped before the third epoch began (a NaN stop): no whole epoch was traced
        if hasattr(tr, "t"):
            jax.profiler.stop_trace()
        d = res.get("diverged_at")
        why = f" (its loss diverged at epoch {d['epoch']}, batch {d['batch']})" if d else ""
        raise UserError(f"the profiled run stopped after {res['epochs_run_now']} of its 3 epochs{why}, so its second "
                        "epoch was not traced whole: profile a setting that trains, or the step alone (without --run)")
    return tr.wall, -(-res["train_examples"] // bs), bs, res.get("runtime", {})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="resnet20")
    ap.add_argument("--data", default=None)
    ap.add_argument("--set", action="append", default=[], help="section.key=value")
    ap.add_argument("--steps", type=int, default=64, help="steps profiled")
    ap.add_argument("--run", action="store_true", help="profile an epoch of `suite run` instead of the step alone")
    ap.add_argument("--out", default=None, help="folder for the trace (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the summary there too (default: OUT/summary.json)")
    ap.add_argument("--events", default=None,
                    help="write the trace cut to the dispatches and kernels there (.json.gz), if under 4 MiB")
    a = ap.parse_args()
    import keras

    from suite import runner
    from suite.errors import UserError

    if keras.backend.backend() != "jax":
        sys.exit("error: step_profile.py traces with JAX's profiler; set KERAS_BACKEND=jax")
    out = pathlib.Path(a.out or tempfile.mkdtemp(prefix="step-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    what = "suite run, one epoch" if a.run else "model step alone"
    try:
        wall, steps, bs, eff = (profile_run if a.run else profile_step)(a, out)
    except UserError as e:
        sys.exit(f"error: {e}")
    events, path = read(out)
    import jax

    s = summarise(events, steps, wall)
    s.update(platform=jax.default_backend(), target=a.target, what=what, batch_size=bs, effective=eff,
             trace=str(path), versions=runner.versions())
    report(s, f"{a.target} · {what} · batch {bs} · {steps} steps profiled · {eff} · {runner.versions()}")
    runner.write_json(a.json or out / "summary.json", s)
    if a.events:  # small enough to come back from a device call (the whole trace stays in OUT)
        blob = gzip.compress(json.dumps(trimmed(events)).encode())
        if len(blob) > EVENTS_MAX:
            print(f"  the trimmed trace is {len(blob) / 2**20:.1f} MiB, over {EVENTS_MAX / 2**20:.0f}: not written")
        else:
            pathlib.Path(a.events).write_bytes(blob)


if __name__ == "__main__":
    main()
