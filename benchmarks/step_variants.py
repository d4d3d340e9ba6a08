"""Where a training step's time goes: the model step alone (one batch held in memory, as `suite bench`'s "model
step alone" row) for the run's settings and variants of them, side by side in one process. Every variant is
compiled once, then all are timed in turn (A, B, C, A, B, C, …), so a slow spell of the machine hits each alike.

    python benchmarks/step_variants.py resnet20 --data cifar10 [--steps 256] [--repeat 3]
        [--variant "float32:train.precision=float32" --variant "no_l2:model.weight_decay=0" ...]

Without --variant: float32, no weight decay (its L2 terms in the loss), 128 steps per call, batch 256. Prints
img/s per variant (median of the turns) and its ratio to the run's own settings. For the GPU session
(benchmarks/gpu_session.sh steps). On an H200 (2026-12-04) the step cost ~3.1–3.3 ms at batch 128 and 256 alike,
whatever the precision, weight decay or steps per call: bound by its per-step latency, not its arithmetic.

    python benchmarks/step_variants.py resnet20 --data cifar10 --xla [--xla-variant "NAME:FLAGS" ...]

compares XLA_FLAGS variants of the run's settings instead, each turn's each variant in a process of its own (XLA
reads its flags once, as it starts; the processes alternate, A, B, C, A, …). Default: XLA's CUDA graphs (command
buffers) off, and convolutions captured in them too (off by default: a step of ResNet-20 is ~60 convolutions, each of
which splits the graphs). A process that fails (say, a flag this XLA does not know) is reported with its last line.
For the GPU session (benchmarks/gpu_session.sh xla): can fewer launches cut the step's latency?"""

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

DEFAULT = ["float32:train.precision=float32", "no_l2:model.weight_decay=0", "spe128:train.steps_per_execution=128",
           "batch256:train.batch_size=256"]
XLA = ["no_graphs:--xla_gpu_enable_command_buffer=", "conv_graphs:--xla_gpu_enable_command_buffer=+CONVOLUTION"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="resnet20")
    ap.add_argument("--data", default=None)
    ap.add_argument("--set", action="append", default=[], help="section.key=value for every variant")
    ap.add_argument("--variant", action="append", default=None, help="NAME:key=value,key=value")
    ap.add_argument("--steps", type=int, default=256,
                    help="steps per timed epoch")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--xla", action="store_true", help="compare XLA_FLAGS variants, a process each")
    ap.add_argument("--xla-variant", action="append", default=None, help="NAME:FLAGS (with --xla)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one --xla process: the run, one turn
    a = ap.parse_args()
    if a.xla:
        return xla_variants(a)

    from suite import runner
    from suite.errors import UserError

    variants = [("run", [])] + ([] if a.child else
                                [(v.split(":", 1)[0], v.split(":", 1)[1].split(",")) for v in a.variant or DEFAULT])
    models = []
    for name, sets in variants:
        try:
            model, one, cfg, parts = compiled(a.target, a.set + sets, a.data, a.steps)
        except UserError as e:
            sys.exit(f"error: variant {name}: {e}")
        models.append((name, model, one, cfg["train"]["batch_size"]))
        if not a.child:
            print(f"{name}: compiled · {parts['effective']}", flush=True)
    from suite.bench import timer

    rates = {name: [] for name, *_ in models}
    for _ in range(a.repeat):
        for name, model, one, bs in models:
            tm = timer()  # epoch 2 of 3: fit's own start and end stay out of the figure
            model.fit(one, epochs=3, verbose=0, callbacks=[tm])
            rates[name].append(tm.rate(a.steps * bs))
    if a.child:
        print(f"RATE {rates['run'][0]}")
        return
    report(f"{a.target} · {a.steps} steps a turn · median of {a.repeat} turns · {runner.versions()}", rates, {})


def compiled(target, sets, data=None, steps=256):
    """The model step alone, as `suite bench`'s row: target's network compiled as `run` compiles it (with `sets`,
    no validation), fed one host-augmented batch held in memory, fit for one epoch of `steps` (compiling).
    Returns (model, an epoch: the batch `steps` times as a tf.data.Dataset, resolved config, runner.prepare's parts).
    A finite epoch, not an endless repeat with steps_per_epoch: Keras would run whole calls of steps_per_execution."""
    from suite import config, runner

    import tensorflow as tf

    cfg = config.resolve(target, sets + ["data.val_split=0", "eval.precise_bn=0"], {"data.name": data} if data else {})
    parts = runner.prepare(cfg)
    ds = runner.datasets(cfg, parts, raw=False)  # host feed: the Augment layer stays out, as in bench's row
    model = runner.compile_model(runner.on_device(cfg, parts, ds), cfg, parts)
    one = tf.data.Dataset.from_tensors(next(iter(ds["train"]))).repeat(steps)
    model.fit(one, epochs=1, verbose=0)  # compiles
    return model, one, cfg, parts


def report(title, rates, failed):
    base = statistics.median(rates["run"]) if rates.get("run") else float("nan")
    print(title)
    for name, r in rates.items():
        if not r:
            print(f"  {name:<12} failed: {failed.get(name, '?')}")
            continue
        med = statistics.median(r)
        print(f"  {name:<12} {med:>10,.0f} img/s  ({min(r):,.0f}–{max(r):,.0f})  ×{med / base:.2f}")


def xla_variants(a):
    """The run's settings under each XLA_FLAGS variant, one process per variant and turn, in turn."""
    import os
    import subprocess

    variants = [("run", "")] + [tuple(v.split(":", 1)) for v in a.xla_variant or XLA]
    # one turn a process: the turns alternate between processes (A, B, A, B), not within one
    args = [sys.executable, __file__, a.target, "--child", "--steps", str(a.steps), "--repeat", "1"]
    args += (["--data", a.data] if a.data else []) + [x for kv in a.set for x in ("--set", kv)]
    rates, failed = {name: [] for name, _ in variants}, {}
    for _ in range(a.repeat):
        for name, flags in variants:
            env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip())
            p = subprocess.run(args, env=env, capture_output=True, text=True)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RATE ")), None)
            if p.returncode == 0 and line:
                rates[name].append(float(line.split()[1]))
                print(f"{name}: {rates[name][-1]:,.0f} img/s", flush=True)
            else:
                failed[name] = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:200]
                print(f"{name}: failed", flush=True)
    title = f"{a.target} · {a.steps} steps a turn · median of {a.repeat} turns · XLA_FLAGS variants, a process each"
    report(title, rates, failed)
    for name, flags in variants[1:]:
        print(f"  {name}: XLA_FLAGS += {flags!r}")


if __name__ == "__main__":
    main()
