"""Soak test of exact resume: one run killed (SIGKILL) at random moments over and over, resumed with the same
command each time, until it finishes; its history and test metrics must equal an uninterrupted run's.

    python benchmarks/soak_resume.py [--kills 50] [--seed 0] [--epochs 6]

Kills land anywhere in the training (a uniform time after it began, up to 1.1× its length): between steps,
inside a commit, in validation, in the final test. A commit
follows every training call (log.backup_every = "1 steps"; 8 steps a call on a CPU), so a kill loses at most the
call in progress. Prints the newest commit before and after each kill (it must never go backwards), then the
figures: kills, resumes, whether history and test metrics equal the uninterrupted run's, and the wall times.
Exit status 1 if anything differs."""

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT = """
[model]
name = "lenet5_modern"
dropout = 0.3
[data]
limit = 640
crop = 1
flip = true
[train]
epochs = {epochs}
batch_size = 32
schedule = "cosine"
deterministic = true
verbose = 2
[log]
backup_every = "1 steps"
"""
TIMING = ("epoch_time", "images_per_sec")


def run(exp, logs, kill_after=None):
    """Runs the command; kill_after: SIGKILL it this many seconds after its training began (Keras' "Epoch k/N"
    line), unless it ends first. Returns the exit status, or None when killed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "SUITE_FAULT": ""}
    out = logs.parent / f"{logs.name}.out"
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "suite", "run", str(exp), "--logdir", str(logs)], cwd=ROOT,
                             env=env, stdout=f, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return p.wait()
    while p.poll() is None and "Epoch " not in out.read_text():
        time.sleep(0.02)
    try:
        return p.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


def position(logs):
    """(epoch, batch) of the newest commit, or None."""
    best = None
    for p in logs.glob("soak/*/backup/epoch-*/state.json"):
        try:
            s = json.loads(p.read_text())
        except ValueError:
            continue
        pos = (s["epoch"], s.get("step", 0))
        best = pos if best is None or pos > best else best
    return best


def results(logs):
    (p,) = list(logs.glob("soak/*/results.json"))
    return json.loads(p.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=6)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    exp = tmp / "soak.toml"
    exp.write_text(EXPERIMENT.format(epochs=a.epochs))
    t0 = time.time()
    assert run(exp, tmp / "reference") == 0, "the uninterrupted run failed"
    t_ref = time.time() - t0
    ref = results(tmp / "reference")
    t_train = sum(ref["history"]["epoch_time"])  # the training alone, without start-up and the final test
    kills, resumes, rounds, back, failures = 0, 0, 0, [], []
    t1 = time.time()
    while kills < a.kills:  # rounds: a run killed until it finishes, then a fresh one, until enough kills
        rounds += 1
        logs = tmp / f"killed-{rounds}"
        while True:
            before = position(logs)
            rc = run(exp, logs, rng.uniform(0.0, 1.1) * t_train)
            after = position(logs)
            if rc is None:
                kills += 1
                print(f"round {rounds} kill {kills:3d}: newest commit {before} → {after}", flush=True)
                if after is not None and before is not None and after < before:
                    back.append((before, after))
                if list(logs.glob("soak/*/results.json")):
                    break  # killed after results.json was written: the run is finished, nothing lost
                resumes += 1
                continue
            assert rc == 0, f"the run failed with status {rc}"
            break
        res = results(logs)
        bad = [k for k in ref["history"] if k not in TIMING and ref["history"][k] != res["history"].get(k)]
        if bad or ref["test"] != res["test"]:
            failures.append((rounds, bad))
        print(f"round {rounds}: finished after {res['resumed_from_epoch']} epochs + {res['resumed_from_batch']} "
              f"batches committed; equal to the uninterrupted run: {not bad and ref['test'] == res['test']}")
    print(f"\nkills {kills} · resumes {resumes} · runs {rounds} · runs equal to the uninterrupted one "
          f"(history and test metrics): {rounds - len(failures)}/{rounds} · commits that went backwards: "
          f"{len(back)} · uninterrupted run {t_ref:.0f} s, soak {time.time() - t1:.0f} s · {tmp}")
    if failures:
        print("differs:", failures)
    sys.exit(0 if not failures and not back else 1)


if __name__ == "__main__":
    main()
