"""tf.data's autotuner on a CPU: the run's epochs under model.fit with data.autotune on and off, interleaved
(on, off, on, off, …, one process each, so each setting meets the same spells of the machine).

    SUITE_DATA_DIR=../shared/data python benchmarks/autotune_cost.py [lenet5] [--data mnist] [--epochs 8]
        [--repeat 2] [--set ...]

Prints every epoch's wall time per process; the first epoch (tracing, cache fill) is left out of the medians."""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from suite import config, runner
import keras
a = json.loads(sys.argv[2])
cfg = config.resolve(a["target"], a["set"] + ["train.verbose=0", "data.val_split=0", "eval.precise_bn=0",
                                              "data.autotune=" + a["autotune"]], {"data.name": a["data"]})
parts = runner.prepare(cfg)
feed = runner.datasets(cfg, parts)
model = runner.compile_model(runner.on_device(cfg, parts, feed), cfg, parts)
times = []
class T(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
model.fit(feed["train"], epochs=a["epochs"], verbose=0, callbacks=[T()])
print("EPOCHS " + json.dumps(times))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="lenet5")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    got = {"true": [], "false": []}
    for _ in range(a.repeat):
        for setting in got:
            arg = json.dumps({"target": a.target, "data": a.data, "epochs": a.epochs, "set": a.set,
                              "autotune": setting})
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), arg], capture_output=True, text=True,
                                 check=True).stdout
            times = json.loads(out.split("EPOCHS ", 1)[1])
            got[setting] += times[1:]
            print(f"autotune {setting:<5} " + " ".join(f"{t:.2f}" for t in times), flush=True)
    for setting, times in got.items():
        slow = sum(t > 1.25 * min(times) for t in times)
        print(f"autotune {setting}: median {statistics.median(times):.2f} s, mean {statistics.mean(times):.2f} s, "
              f"{slow} of {len(times)} epochs over 1.25× the fastest")


if __name__ == "__main__":
    main()
