"""Fault injection: a run killed at many points (SIGKILL between steps, inside a commit's write, just before
results.json; SIGTERM, Ctrl-C) and resumed with the same command ends with exactly the history and test metrics
of an uninterrupted run (--deterministic, CPU). Damaged backups fall back to the commit before, or stop with one
line and leave the directory as it was. The faults come from SUITE_FAULT (suite/callbacks.py `_fault`), so each
lands at a known point; one test also sends SIGTERM from outside, as a preempting scheduler does."""

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli

# 8×8 digits, 20 steps an epoch (8 per call on a CPU: calls of 8, 8, 4), a commit at every call; crop, flip and
# dropout put the shuffle, augmentation and dropout random streams to the test; batch norm, its statistics
# recomputed before each validation (eval.precise_bn), the moving averages and the recomputation's own stream.
EXPERIMENT = """
[model]
name = "lenet5_modern"
dropout = 0.3
batch_norm = true
[data]
limit = 640
crop = 1
flip = true
[train]
epochs = 3
batch_size = 32
schedule = "cosine"
deterministic = true
verbose = 0
[log]
backup_every = "1 steps"
"""
TIMING = ("epoch_time", "images_per_sec")  # wall-clock figures: never equal between two runs


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "faults.toml"
    path.write_text(EXPERIMENT)
    return path


@pytest.fixture(scope="module")
def reference(exp, tmp_path_factory):
    """The uninterrupted run's results.json (run in this process: no TensorFlow start-up of its own; the resumes
    below, in processes of their own and in this one, must match it either way)."""
    logs = tmp_path_factory.mktemp("reference")
    code, _, err = _main(["run", str(exp), "--logdir", str(logs)])
    assert code == 0, err[-3000:]
    return _results(logs)


def _main(argv):
    """`python -m suite <argv>` in this process: (exit status, stdout, stderr). Switches TensorFlow's op
    determinism (which train.deterministic turns on for the rest of the process) off again afterwards."""
    from suite import cli

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    return code, out.getvalue(), err.getvalue()


def _results(logs):
    (path,) = list(logs.glob("faults/*/results.json"))
    return json.loads(path.read_text())


def _same_as(res, ref):
    assert res["status"] == "complete" and res["epochs_completed"] == ref["epochs_completed"]
    for k, v in ref["history"].items():
        if k not in TIMING:
            assert res["history"][k] == v, (k, res["history"][k], v)
    assert set(res["history"]) == set(ref["history"])
    assert res["test"] == ref["test"]


def _run(exp, logs, fault=None):
    return run_cli("run", exp, "--logdir", logs, env={"SUITE_FAULT": fault or ""})


def _commits(logs):
    return sorted(p.name for p in logs.glob("faults/*/backup/epoch-*"))


# (fault, the (epoch, batch) the next start resumes from). Calls are 8, 8, 4 steps and a commit follows each, so a
# kill loses at most the call it interrupts: after call 2; in the 4th commit's write (epoch 2's end: back to its
# batch 16); after 2 more calls; in the epoch's last call (again from batch 16); before results.json (all committed)
KILLS = [("step:2", (0, 16)), ("commit:4", (1, 16)), ("step:3", (2, 16)), ("step:1", (2, 16)), ("results:1", (3, 0))]


@pytest.mark.parametrize("kills", [
    # a process start costs ~12-20 s of TensorFlow import here: the default run kills three times, at the three kinds
    # of point (between steps, inside a commit's write, before results.json), each resume starting from the last
    [KILLS[0], KILLS[1], KILLS[4]],
    pytest.param(KILLS, marks=pytest.mark.slow),  # slow: two more kills in the last epoch, one in its last call
], ids=["3-kills", "5-kills"])
def test_killed_at_many_points_resumes_exactly(exp, reference, tmp_path, kills):
    """One run, killed several times — after training calls in epochs 1 and 2, inside a commit's write (written, not
    yet renamed), during the last epoch, just before results.json — and resumed after each: the history and the
    test metrics equal the uninterrupted run's, and no more than one call (8 steps) was lost to any kill."""
    logs = tmp_path / "logs"
    resumed_at = []
    for fault, _ in kills:
        r = _run(exp, logs, fault)
        assert r.returncode == -signal.SIGKILL, (fault, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        (run_dir,) = list(logs.glob("faults/*"))
        assert not (run_dir / "results.json").exists()
        assert len(_commits(logs)) <= 2  # the newest commit and the one before
        state = json.loads((run_dir / "backup" / _commits(logs)[-1] / "state.json").read_text())
        resumed_at.append((state["epoch"], state["step"]))
    code, _, err = _main(["run", str(exp), "--logdir", str(logs)])  # the same command, in this process
    assert code == 0, err[-3000:]
    res = _results(logs)
    _same_as(res, reference)
    assert res["resumed_from_epoch"] == 3  # the last kill came after all epochs were committed
    assert not (run_dir / "backup").exists() and not list(run_dir.rglob(".*tmp*"))
    # TensorBoard: every epoch once, in order, across the six processes' event files
    import tensorflow as tf

    for sub in ("train", "validation"):
        steps = [ev.step for f in sorted((run_dir / sub).glob("events.out.tfevents.*"))
                 for ev in tf.compat.v1.train.summary_iterator(str(f)) for v in ev.summary.value
                 if v.tag == "epoch_loss"]
        assert steps == [0, 1, 2], (sub, steps)
    assert resumed_at == [at for _, at in kills], resumed_at  # (epoch, batch) each resume started from


@pytest.mark.parametrize("action, code, name", [("term", 143, "SIGTERM"), ("int", 130, "SIGINT")])
def test_signal_commits_at_the_next_step_and_exits(exp, reference, tmp_path, action, code, name):
    """Mid-epoch commits off (epoch ends only): the signal during epoch 2's first call makes the next call's end
    commit and stop; the same command resumes there exactly."""
    logs = tmp_path / "logs"
    epoch_only = ("--set", "log.backup_every=epoch")  # not part of the config hash: the same run either way
    r = run_cli("run", exp, "--logdir", logs, *epoch_only, env={"SUITE_FAULT": f"step:4:{action}"})
    assert r.returncode == code, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if name in ln]
    assert any("saving at the next step boundary" in ln for ln in lines), r.stderr[-2000:]
    stop = [ln for ln in lines if ln.startswith(f"stopped by {name}")]
    assert len(stop) == 1 and "run the same command to resume" in stop[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert _commits(logs) == ["epoch-00001", "epoch-00001-step-0000016"]  # the call after the signal
    if action == "int":
        return  # resuming is the same as after SIGTERM
    code, out, err = _main(["run", str(exp), "--logdir", str(logs), *epoch_only])  # the same command, in here
    assert code == 0, err[-3000:]
    assert "after batch 16 of epoch 2" in out, out
    _same_as(_results(logs), reference)


# epoch ends committed at most once an hour, no mid-epoch commits (neither setting is in the config hash)
SPACED = ("--set", "log.backup_every=epoch", "--set", "log.commit_interval=1h")


def test_spaced_commits_skip_epoch_ends_and_resume_exactly(exp, reference, tmp_path):
    """log.commit_interval (a GPU's "auto" is 30 s, where a commit costs about a short epoch): an epoch end commits
    only when that long has passed since the last commit, the last epoch always, and best.keras waits for the next
    commit. Here 1 h: a kill in epoch 3 finds no commit (the rerun starts over); a kill just before results.json
    finds the last epoch's commit alone, with best.keras written before it; the resume ends as the uninterrupted
    run."""
    logs = tmp_path / "logs"
    r = run_cli("run", exp, "--logdir", logs, *SPACED, env={"SUITE_FAULT": "step:7"})  # epoch 3's first call
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    (run_dir,) = list(logs.glob("faults/*"))
    assert _commits(logs) == [] and not (run_dir / "best.keras").exists()  # epochs 1–2 ended uncommitted
    r = run_cli("run", exp, "--logdir", logs, *SPACED, env={"SUITE_FAULT": "results:1"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert _commits(logs) == ["epoch-00003"] and (run_dir / "best.keras").exists()
    code, out, err = _main(["run", str(exp), "--logdir", str(logs), *SPACED])
    assert code == 0, err[-3000:]
    _same_as(_results(logs), reference)


def test_signal_with_spaced_commits_commits_the_held_best_too(exp, reference, tmp_path):
    """With epoch ends left uncommitted (1 h interval), SIGTERM in epoch 3 still commits at the next step, and the
    best model held since an earlier epoch is written before that commit; the same command resumes exactly."""
    logs = tmp_path / "logs"
    r = run_cli("run", exp, "--logdir", logs, *SPACED, env={"SUITE_FAULT": "step:7:term"})  # epoch 3's first call
    assert r.returncode == 143, r.stderr[-3000:]
    (run_dir,) = list(logs.glob("faults/*"))
    assert _commits(logs) == ["epoch-00002-step-0000016"]  # the call after the signal; epochs 1–2 uncommitted
    state = json.loads((run_dir / "backup" / _commits(logs)[0] / "state.json").read_text())
    assert (run_dir / "best.keras").exists() and state["callbacks"]["best_checkpoint"]["best"] > 0
    code, out, err = _main(["run", str(exp), "--logdir", str(logs), *SPACED])
    assert code == 0, err[-3000:]
    _same_as(_results(logs), reference)


def test_held_best_model_is_written_with_its_own_weights(tmp_path):
    """BestCheckpoint(defer=True) keeps a new best in memory; flush() writes that model (its weights and optimizer
    slots), not the network's current one, and leaves the network as it was."""
    import keras
    import numpy as np

    from suite import callbacks as cb

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    best = cb.BestCheckpoint(tmp_path / "best.keras", "val_accuracy", defer=True)
    best.set_model(model)
    best.on_epoch_end(0, {"val_accuracy": 0.5})
    held = [w.copy() for w in model.get_weights()]
    held_slots = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    assert not (tmp_path / "best.keras").exists()
    model.fit(x, y, epochs=2, verbose=0)  # the network moves on
    best.on_epoch_end(1, {"val_accuracy": 0.4})  # worse: still the held one
    now = [w.copy() for w in model.get_weights()]
    assert not all(np.array_equal(a, b) for a, b in zip(held, now))
    best.flush()
    saved = keras.models.load_model(tmp_path / "best.keras")
    for a, b in zip(saved.get_weights(), held):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(saved.optimizer.variables, held_slots):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)
    for a, b in zip(model.get_weights(), now):
        np.testing.assert_array_equal(a, b)
    assert best.pending is None and best.best == 0.5


def test_second_signal_stops_at_once(exp, tmp_path):
    logs = tmp_path / "logs"
    r = _run(exp, logs, "step:4:term2")
    assert r.returncode == 143, r.stderr[-3000:]
    assert "stopping now; the run keeps its last commit" in r.stderr and "Traceback" not in r.stderr
    assert _commits(logs)  # the commits before the signals are intact
    assert not list(logs.glob("faults/*/results.json"))


def test_sigterm_from_outside(exp, tmp_path):
    """What a preemptible machine does: SIGTERM at a moment of its choosing; the run exits 143 within seconds."""
    logs = tmp_path / "logs"
    slow = tmp_path / "faults.toml"
    slow.write_text(EXPERIMENT.replace("epochs = 3", "epochs = 50"))  # long enough to be caught training
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_FAULT": ""}
    p = subprocess.Popen([sys.executable, "-m", "suite", "run", str(slow), "--logdir", str(logs)], cwd=ROOT,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list(logs.glob("faults/*/backup/epoch-00001*")):
        assert p.poll() is None, p.stderr.read()[-2000:]
        assert time.time() - t0 < 120, "no commit within 120 s"
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    t1 = time.time()
    assert p.wait(timeout=60) == 143, p.stderr.read()[-2000:]
    assert time.time() - t1 < 10, "it took more than 10 s to stop"
    err = p.stderr.read()
    assert "stopped by SIGTERM" in err and "Traceback" not in err, err[-2000:]
    assert not list(logs.glob("faults/*/results.json"))


# --- damaged backups -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interrupted(exp, tmp_path_factory):
    """A run killed in epoch 2: its backup holds two commits, the newest mid-epoch. Copied by each test."""
    here = tmp_path_factory.mktemp("interrupted")
    logs = here / "logs"  # given as the relative "logs": log.dir is part of the config hash, copies must match
    r = run_cli("run", exp, "--logdir", "logs", cwd=here, env={"SUITE_FAULT": "step:5"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert _commits(logs) == ["epoch-00001-step-0000008", "epoch-00001-step-0000016"]
    return logs


def _copy(interrupted, tmp_path):
    import shutil

    logs = tmp_path / "logs"
    shutil.copytree(interrupted, logs)
    (run_dir,) = list(logs.glob("faults/*"))
    return logs, run_dir, [run_dir / "backup" / n for n in _commits(logs)]


def _run_here(exp, logs, capsys, monkeypatch):
    """The same command, from the folder holding `logs`, in this process (no TensorFlow start-up):
    (exit status, stdout, stderr)."""
    from suite import cli

    monkeypatch.chdir(logs.parent)
    code = cli.main(["run", str(exp), "--logdir", "logs"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _tree(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(d.rglob("*"))}


def _damage(how, commit):
    if how == "truncated weights":
        w = commit / "backup.weights.h5"
        w.write_bytes(w.read_bytes()[:1000])
    elif how == "edited state":
        s = json.loads((commit / "state.json").read_text())
        s["iterations"] += 1  # still valid JSON: only the checksum tells
        (commit / "state.json").write_text(json.dumps(s))
    elif how == "torn state":
        s = (commit / "state.json").read_bytes()
        (commit / "state.json").write_bytes(s[:len(s) // 2])
    elif how == "missing file":
        (commit / "arrays.npz").unlink()


DAMAGES = ["truncated weights", "edited state", "torn state", "missing file"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_newest_commit_is_set_aside_for_the_one_before(interrupted, tmp_path, how):
    """What the resume below starts from, for every kind of damage: the commit before, with one warning line."""
    from suite import commits

    logs, run_dir, (older, newest) = _copy(interrupted, tmp_path)
    _damage(how, newest)
    said = []
    state = commits.restore_point(run_dir / "backup", echo=said.append)
    assert state["path"] == str(older) and (state["epoch"], state["step"]) == (1, 8), state
    assert len(said) == 1 and newest.name in said[0] and f"resuming from {older.name}" in said[0], said
    assert _commits(logs) == [older.name] and (run_dir / "backup" / f"damaged-{newest.name}").is_dir()  # kept


# a resume costs ~15 s: the default run resumes after one kind of damage; the restore point is the same for every
# kind (above), so the other three are the slow variants
@pytest.mark.parametrize("how", [DAMAGES[0], *(pytest.param(h, marks=pytest.mark.slow) for h in DAMAGES[1:])])
def test_damaged_latest_backup_falls_back(exp, reference, interrupted, tmp_path, capsys, monkeypatch, how):
    logs, run_dir, (older, newest) = _copy(interrupted, tmp_path)
    _damage(how, newest)
    code, out, err = _run_here(exp, logs, capsys, monkeypatch)
    assert code == 0, err[-3000:]
    warn = [ln for ln in out.splitlines() if ln.startswith("warning: backup")]
    assert len(warn) == 1 and newest.name in warn[0] and f"resuming from {older.name}" in warn[0], out
    assert f"{run_dir.name} after batch 8 of epoch 2" in out, out
    _same_as(_results(logs), reference)  # the older commit resumes exactly too


def test_every_backup_damaged_stops_with_one_line(exp, interrupted, tmp_path, capsys, monkeypatch):
    logs, run_dir, commits = _copy(interrupted, tmp_path)
    _damage("truncated weights", commits[0])
    _damage("edited state", commits[1])
    before = _tree(run_dir)
    code, out, err = _run_here(exp, logs, capsys, monkeypatch)
    assert code == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "every backup is damaged" in lines[0] and "--fresh" in lines[0], err
    assert _tree(run_dir) == before  # left as it was, for inspection
