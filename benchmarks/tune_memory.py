"""Does memory stay flat across tuning trials? Runs `python -m suite tune` on a random search of many tiny
trials (LeNet-5, 160 digits, 1 epoch each) and prints the process's resident memory after every trial, read
from each trial's tune.json (suite.tune.tuner records VmRSS when a trial ends).

    python benchmarks/tune_memory.py [--trials 32] [--restart-every 20] [--no-clear]

--restart-every 0 keeps one process for the whole search (to see the growth that restarting caps);
--no-clear also skips keras.backend.clear_session() between trials (runs the search in this process).
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--restart-every", type=int, default=20, help="tune.restart_every (0 = one process)")
    ap.add_argument("--no-clear", action="store_true", help="do not clear the Keras session between trials")
    a = ap.parse_args()

    from suite.quiet import import_tensorflow

    import_tensorflow()
    import keras

    from suite.tune import search as tune_search

    if a.no_clear:  # in this process, which must not re-execute itself
        keras.backend.clear_session = lambda *args, **kw: None
        a.restart_every = 0
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tune_memory-"))
    exp = tmp / "mem.toml"
    exp.write_text(f"""
[model]
name = "lenet5"
[data]
limit = 160
[train]
optimizer = "sgd"
verbose = 0
[log]
dir = "{tmp / 'logs'}"
[tune]
tuner = "random"
max_trials = {a.trials}
epochs = 1
lr = [1e-3, 0.1]
batch_size = [32, 64, 128]
restart_every = {a.restart_every}
""")
    t0 = time.time()
    if a.no_clear:
        tune_search.search(str(exp), echo=lambda s: None)
    else:
        import os
        import subprocess

        root = pathlib.Path(__file__).resolve().parent.parent
        subprocess.run([sys.executable, "-m", "suite", "tune", str(exp)], cwd=root, check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(root)})
    wall = time.time() - t0
    sdir = next((tmp / "logs" / "mem").glob("tune-*"))
    recs = sorted((json.loads(p.read_text()) for p in sdir.glob("trial_*/tune.json")), key=lambda r: r["trial"])
    rss = [r["rss_mb"] for r in recs]
    print(f"{len(rss)} trials in {wall:.0f} s ({wall / max(len(rss), 1):.1f} s/trial), "
          f"clear_session {'off' if a.no_clear else 'on'}, restart every {a.restart_every or 'never'}")
    print("RSS after each trial (MB): " + " ".join(f"{v:.0f}" for v in rss))
    k = min(5, len(rss) // 2)
    first, last = sum(rss[:k]) / k, sum(rss[-k:]) / k
    n = len(rss) - k  # slope after the first k trials (warm-up: imports, first graphs)
    xs, ys = list(range(n)), rss[k:]
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(f"first {k} trials: {first:.0f} MB · last {k}: {last:.0f} MB · max {max(rss):.0f} MB · "
          f"growth after warm-up: {slope:+.2f} MB/trial")


if __name__ == "__main__":
    main()
