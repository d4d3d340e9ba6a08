"""What an epoch's end costs a run, by log.commit_interval: the time each callback's on_epoch_end takes (the backup
commit, best.keras, TensorBoard, …) and the whole epoch (begin to end, every callback included), through the runner
as `suite run` trains, the settings interleaved in one process (A B A B …).

    SUITE_DATA_DIR=../shared/data python benchmarks/epoch_end_cost.py cifar10_speedrun --set data.limit=2048
        [--interval epoch 30s] [--epochs 4] [--repeat 2]

Rows as `suite bench` trains them (no validation split: best.keras follows the training accuracy, which improves
most epochs). Steady state: the epochs after the first of each run; figures are medians over them and the repeats.
Why: on an H200 the end-to-end rate of ResNet-20 was 0.65× its model step's, ~0.39 s of each 2 s epoch going to the
work after the training (benchmarks/RESULTS.md)."""

import argparse
import collections
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="cifar10_speedrun")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--interval", nargs="+", default=["epoch", "30s"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()

    from suite.quiet import import_tensorflow

    import_tensorflow()
    from keras.src.callbacks import callback_list

    from suite import bench, config, runner

    # each callback's on_epoch_end timed on its own (Keras' CallbackList calls them in order; patched here only)
    spent = collections.defaultdict(list)

    def on_epoch_end(self, epoch, logs=None):
        for c in self.callbacks:
            t = time.perf_counter()
            c.on_epoch_end(epoch, logs)
            spent[type(c).__name__].append(time.perf_counter() - t)

    callback_list.CallbackList.on_epoch_end = on_epoch_end
    logs = pathlib.Path(tempfile.mkdtemp(prefix="epoch-end-"))
    rows = {i: {"epoch": [], "callbacks": collections.defaultdict(list)} for i in a.interval}
    for _ in range(a.repeat):
        for interval in a.interval:
            cfg = config.resolve(a.target, [*a.set, f"log.commit_interval={interval!r}", "train.verbose=0"])
            c = bench.bench_config(cfg, 0, a.epochs, logs)
            tm = bench.timer()
            spent.clear()
            runner.run(c, fresh=True, timer=tm, echo=lambda *x: None)
            rows[interval]["epoch"] += [e - b for b, e in zip(tm.begins, tm.ends)][1:]
            for name, times in spent.items():
                rows[interval]["callbacks"][name] += times[1:]
    print(f"{a.target} {' '.join(a.set)}: {a.epochs} epochs × {a.repeat} runs per setting, steady-state epochs")
    for interval, r in rows.items():
        cbs = {n: statistics.median(t) for n, t in r["callbacks"].items()}
        top = ", ".join(f"{n} {v * 1000:.0f} ms" for n, v in sorted(cbs.items(), key=lambda kv: -kv[1])[:3])
        print(f"  commit_interval={interval!r:8} epoch {statistics.median(r['epoch']):.3f} s; epoch end "
              f"{sum(cbs.values()) * 1000:.0f} ms ({top})")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)")
