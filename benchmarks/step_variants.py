"""Where a training step's time goes: the model step alone (one batch held in memory, as `suite bench`'s "model
step alone" row) for the run's settings and variants of them, side by side in one process. Every variant is
compiled once, then all are timed in turn (A, B, C, A, B, C, …), so a slow spell of the machine hits each alike.

    python benchmarks/step_variants.py resnet20 --data cifar10 [--steps 256] [--repeat 3]
        [--variant "float32:train.precision=float32" --variant "no_l2:model.weight_decay=0" ...]

Without --variant: float32, no weight decay (its L2 terms in the loss), 128 steps per call, batch 256. Prints
img/s per variant (median of the turns) and its ratio to the run's own settings. For the GPU session
(benchmarks/gpu_session.sh steps), where ResNet-20's step at batch 128 ran at ~30k img/s on an H200 against the
~44.5k that ../shared/device/README.md measured for a plainer ResNet-20 on an H100."""

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

DEFAULT = ["float32:train.precision=float32", "no_l2:model.weight_decay=0", "spe128:train.steps_per_execution=128",
           "batch256:train.batch_size=256"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="resnet20")
    ap.add_argument("--data", default=None)
    ap.add_argument("--set", action="append", default=[], help="section.key=value for every variant")
    ap.add_argument("--variant", action="append", default=None, help="NAME:key=value,key=value")
    ap.add_argument("--steps", type=int, default=256,
                    help="steps per timed epoch (a multiple of every variant's steps per call)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from suite import config, runner
    from suite.errors import UserError

    import tensorflow as tf

    extra = {"data.name": a.data} if a.data else {}
    variants = [("run", [])] + [(v.split(":", 1)[0], v.split(":", 1)[1].split(",")) for v in a.variant or DEFAULT]
    models = []
    for name, sets in variants:
        try:
            cfg = config.resolve(a.target, a.set + sets + ["data.val_split=0", "eval.precise_bn=0"], extra)
        except UserError as e:
            sys.exit(f"error: variant {name}: {e}")
        parts = runner.prepare(cfg)
        ds = runner.datasets(cfg, parts, raw=False)  # host feed: the Augment layer stays out, as in bench's row
        model = runner.compile_model(runner.on_device(cfg, parts, ds), cfg, parts)
        batch = next(iter(ds["train"]))
        one = tf.data.Dataset.from_tensors(batch).repeat()
        model.fit(one, steps_per_epoch=a.steps, epochs=1, verbose=0)  # compiles
        models.append((name, model, one, cfg["train"]["batch_size"]))
        print(f"{name}: compiled · {parts['effective']}", flush=True)
    from suite.bench import timer

    rates = {name: [] for name, *_ in models}
    for _ in range(a.repeat):
        for name, model, one, bs in models:
            tm = timer()  # epoch 2 of 3: fit's own start and end stay out of the figure
            model.fit(one, steps_per_epoch=a.steps, epochs=3, verbose=0, callbacks=[tm])
            rates[name].append(tm.rate(a.steps * bs))
    base = statistics.median(rates["run"])
    print(f"{a.target} · {a.steps} steps a turn · median of {a.repeat} turns · {runner.versions()}")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"  {name:<12} {med:>10,.0f} img/s  ({min(r):,.0f}–{max(r):,.0f})  ×{med / base:.2f}")


if __name__ == "__main__":
    main()
