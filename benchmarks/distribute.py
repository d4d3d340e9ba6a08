"""Steps/s of one training run on 1 device and on D devices (suite/distribute.py), each backend's way, measured side
by side in one invocation (runs interleaved: none, data_parallel, none, data_parallel, …), through `suite run`.

    python benchmarks/distribute.py [--net lenet5] [--data digits] [--devices 2] [--batch 128] [--limit 1280]
        [--epochs 4] [--repeat 2] [--backends jax tensorflow]

On a machine without accelerators the D devices are the CPU split by SUITE_CPU_DEVICES (expect little gain on 2
cores: the point there is that it runs and trains the same curve); on a GPU machine pass --devices 0 to use every
visible GPU as it is. Steady state: the epochs after the first (compilation) of each run; the figure per mode is the
median of those epochs' images_per_sec over the repeats, divided by the global batch for steps/s."""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def one(backend, mode, a, logdir):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if a.devices:
        env["SUITE_CPU_DEVICES"] = str(a.devices)
    cmd = [sys.executable, "-m", "suite", "run", a.net, "--data", a.data, "--epochs", str(a.epochs), "--batch-size",
           str(a.batch), "--distribute", mode, "--fresh", "--logdir", str(logdir), "--set", "train.verbose=0",
           "--set", f"data.limit={a.limit}"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-1500:]}{p.stderr[-1500:]}")
    res = json.loads(sorted(pathlib.Path(logdir).glob("*/*/results.json"), key=os.path.getmtime)[-1].read_text())
    return res["history"]["images_per_sec"][1:], res["distribution"], res["history"]["loss"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="lenet5")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--devices", type=int, default=2, help="SUITE_CPU_DEVICES (0: the machine's devices as they are)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--limit", type=int, default=1280, help="training examples: a multiple of --batch (digits has "
                    "1294 after its test and validation splits), so both modes train the same batches")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["jax", "tensorflow"])
    a = ap.parse_args()
    print(f"{a.net} · {a.data} · global batch {a.batch} · {a.limit} images · {a.epochs} epochs (the first left out) "
          f"· {a.repeat} repeat(s) · SUITE_CPU_DEVICES={a.devices or 'unset'}")
    print("backend     mode           strategy                          devices  img/s    steps/s  ratio  final loss")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in a.backends:
            rates, info = {}, {}
            for r in range(a.repeat):
                for mode in ("none", "data_parallel"):
                    ips, dist, loss = one(backend, mode, a, pathlib.Path(tmp) / f"{backend}-{mode}-{r}")
                    rates.setdefault(mode, []).extend(ips)
                    info[mode] = (dist, loss[-1])
            base = statistics.median(rates["none"])
            for mode in ("none", "data_parallel"):
                med = statistics.median(rates[mode])
                dist, loss = info[mode]
                print(f"{backend:<11} {mode:<14} {dist['strategy']:<33} {dist['device_count']:<8} {med:<8.0f} "
                      f"{med / a.batch:<8.2f} {med / base:<6.2f} {loss:.5f}")


if __name__ == "__main__":
    main()
