"""Crash safety: a `python -m suite run` really killed with SIGKILL mid-training, then run again with the same
command, finishes with the right number of epochs, continuous TensorBoard steps (no duplicated or rewound
points), and the optimizer state and learning-rate schedule going on where they were."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

EPOCHS = 6
LR, DECAY = 0.05, 0.8  # exponential decay per epoch: lr after epoch e (0-based) is LR * DECAY**(e+1)

EXPERIMENT = """
[model]
name = "lenet5_modern"
[data]
name = "digits"
image_size = [32, 32]   # slower epochs than 8×8: room to kill the process mid-training
limit = 640
[train]
epochs = {epochs}
batch_size = 32
optimizer = "sgd"
lr = {lr}
momentum = 0.9
schedule = "exponential"
decay = {decay}
decay_epochs = 1.0
verbose = 2
"""


def _start(exp, logdir):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "suite", "run", str(exp), "--logdir", str(logdir)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc, condition, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed: {proc.stderr.read()[-2000:]}")
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail("timed out waiting for the moment to kill")


def _committed(run_dir):
    eps = [int(p.name.split("-")[1]) for p in (run_dir / "backup").glob("epoch-*") if (p / "state.json").exists()]
    return max(eps, default=0)


def _steps(run_dir, sub, tag):
    """Steps of `tag` in file order across every event file of run_dir/sub (what TensorBoard replays)."""
    import tensorflow as tf

    steps = []
    for f in sorted((run_dir / sub).glob("events.out.tfevents.*")):
        for ev in tf.compat.v1.train.summary_iterator(str(f)):
            steps += [ev.step for v in ev.summary.value if v.tag == tag]
    return steps


def _cli_here(capsys, *args):
    """`python -m suite ...` in this process (TensorFlow is already loaded: no start-up of its own); the kills
    above need a process of their own, the commands after them do not. Returns (exit status, stdout, stderr)."""
    from suite import cli

    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _experiment(path, epochs=EPOCHS):
    path.write_text(EXPERIMENT.format(epochs=epochs, lr=LR, decay=DECAY))
    return path


def _all_steps(run_dir):
    """{folder: {tag: [steps]}} over every event file of the run (TensorBoard's runs are folders)."""
    import tensorflow as tf

    out = {}
    for f in sorted(run_dir.rglob("events.out.tfevents.*")):
        tags = out.setdefault(str(f.parent.relative_to(run_dir)), {})
        for ev in tf.compat.v1.train.summary_iterator(str(f)):
            for v in ev.summary.value:
                tags.setdefault(v.tag, []).append(ev.step)
    return out


def _check_finished(run_dir, resumed_from, epochs=EPOCHS):
    res = json.loads((run_dir / "results.json").read_text())
    assert res["status"] == "complete"
    assert res["epochs_completed"] == epochs and len(res["history"]["loss"]) == epochs
    assert res["epochs_run_now"] == epochs - resumed_from
    # the learning-rate schedule continued from the restored iteration count (it would jump back otherwise)
    lrs = res["history"]["learning_rate"]
    assert all(math.isclose(lr, LR * DECAY ** (e + 1), rel_tol=1e-4) for e, lr in enumerate(lrs)), lrs
    # TensorBoard: every epoch exactly once, in order; iteration-stepped points strictly increasing
    for sub in ("train", "validation"):
        assert _steps(run_dir, sub, "epoch_loss") == list(range(epochs)), sub
    it = _steps(run_dir, "validation", "evaluation_loss_vs_iterations")
    assert len(it) == epochs and all(a < b for a, b in zip(it, it[1:])), it
    assert _steps(run_dir, "train", "epoch_learning_rate") == list(range(epochs))
    assert len(_steps(run_dir, "train", "keras")) == 1  # the model graph once, not once per start
    for sub, tags in _all_steps(run_dir).items():  # whatever else is logged: no point twice
        for tag, steps in tags.items():
            assert len(steps) == len(set(steps)), (sub, tag, steps)
    # bounded disk: the backup is gone, best + last remain
    assert not (run_dir / "backup").exists()
    assert {p.name for p in run_dir.glob("*.keras")} == {"best.keras", "last.keras"}
    assert not list(run_dir.rglob(".*tmp*"))
    return res


def test_sigkill_mid_training_then_resume(tmp_path, capsys):
    exp = _experiment(tmp_path / "resume.toml")
    logs = tmp_path / "logs"
    p = _start(exp, logs)
    runs = lambda: list((logs / "resume").glob("*"))  # noqa: E731
    _kill_when(p, lambda: runs() and _committed(runs()[0]) >= 2)
    (run_dir,) = runs()
    before = _committed(run_dir)
    assert 2 <= before < EPOCHS and not (run_dir / "results.json").exists()

    # What a kill during the other writes leaves behind: a half-written backup commit, a half-written
    # best.keras temp file and a torn last record in an event file. The resume must cope with all three.
    junk = run_dir / "backup" / f".tmp-{before + 1}-99999"
    junk.mkdir()
    (junk / "backup.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    (run_dir / ".best.tmp99999.keras").write_bytes(b"PK\x03\x04 torn")
    ev = sorted((run_dir / "train").glob("events.out.tfevents.*"))[-1]
    with open(ev, "ab") as f:
        f.write(b"\x20\x00\x00\x00\x00\x00\x00\x00torn")

    # `suite list --runs` tells it is unfinished
    code, out, _ = _cli_here(capsys, "list", "--runs", "--logdir", logs)
    assert code == 0 and "incomplete" in out and f"{before}/{EPOCHS}" in out, out

    code, out, err = _cli_here(capsys, "run", exp, "--logdir", logs)
    assert code == 0, err[-3000:]
    assert f"resuming {run_dir} after epoch {before} of {EPOCHS}" in out
    assert runs() == [run_dir], "the rerun must continue the same run directory"
    res = _check_finished(run_dir, before)
    assert res["resumed"] and res["resumed_from_epoch"] == before
    code, out, _ = _cli_here(capsys, "list", "--runs", "--logdir", logs)
    assert code == 0 and "complete" in out and "incomplete" not in out, out
    print(f"killed after epoch {before}/{EPOCHS}; resumed run trained {res['epochs_run_now']} more; "
          f"TensorBoard steps {_steps(run_dir, 'train', 'epoch_loss')}")


def test_sigkill_before_first_epoch_then_restart(tmp_path, capsys):
    exp = _experiment(tmp_path / "resume.toml", epochs=3)
    logs = tmp_path / "logs"
    p = _start(exp, logs)
    # training has started (the event file exists) but no epoch is committed yet
    _kill_when(p, lambda: list(logs.glob("resume/*/train/events.out.tfevents.*")))
    (run_dir,) = list((logs / "resume").glob("*"))
    assert _committed(run_dir) == 0
    code, out, err = _cli_here(capsys, "run", exp, "--logdir", logs)
    assert code == 0, err[-3000:]
    assert f"restarting {run_dir}: it stopped before its first commit" in out, out
    assert list((logs / "resume").glob("*")) == [run_dir]
    _check_finished(run_dir, 0, epochs=3)


def test_backup_restores_optimizer_slots_and_callback_state(tmp_path):
    """In-process: a commit restores weights, momentum slots, iterations, history and callback state."""
    import keras
    import numpy as np

    from suite import callbacks as cb
    from suite import commits

    def model():
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        m.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
        return m

    x, y = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.arange(64) % 3
    m1, best1 = model(), cb.BestCheckpoint(tmp_path / "best.keras", "loss")
    best1.best = 0.5
    b1 = cb.Backup(tmp_path / "backup", steps=4, stateful={"best": (best1, ["best"])})
    m1.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[b1])
    state = commits.committed(tmp_path / "backup")
    assert state["epoch"] == 2 and state["iterations"] == 8 and len(state["history"]["loss"]) == 2

    m2, best2 = model(), cb.BestCheckpoint(tmp_path / "best.keras", "loss")
    b2 = cb.Backup(tmp_path / "backup", steps=4, restore=state, stateful={"best": (best2, ["best"])})
    h = m2.fit(x, y, epochs=2, initial_epoch=state["epoch"], batch_size=16, verbose=0, callbacks=[b2])  # nothing left
    assert h.history == {} or not h.history.get("loss")
    assert best2.best == best1.best and b2.history["loss"] == b1.history["loss"]
    for v1, v2 in zip(m1.optimizer.variables, m2.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v1), keras.ops.convert_to_numpy(v2), err_msg=v1.path)
    for v1, v2 in zip(m1.weights, m2.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v1), keras.ops.convert_to_numpy(v2))
    assert len(list((tmp_path / "backup").glob("epoch-*"))) == 2  # the newest commit and the one before


def test_fresh_starts_a_new_directory(tmp_path):
    from suite import config, runner

    cfg = config.resolve("lenet5_modern", [f"log.dir={json.dumps(str(tmp_path))}"])
    d, resumed = runner.run_dir_for(cfg)
    assert not resumed
    d.mkdir(parents=True)
    runner.write_json(d / "config.json", cfg)
    assert runner.run_dir_for(cfg) == (d, True)  # unfinished, same config: resumed
    assert runner.run_dir_for(cfg, fresh=True)[0] != d
    fd = runner.lock(d)  # another process training it: left alone
    try:
        assert runner.run_dir_for(cfg)[0] != d
    finally:
        runner.unlock(fd)
    runner.write_json(d / "results.json", {"status": "complete"})
    assert runner.run_dir_for(cfg)[0] != d  # finished runs are never resumed


def test_trim_events_drops_uncommitted_points_and_torn_records(tmp_path):
    import tensorflow as tf

    from suite import callbacks as cb

    w = tf.summary.create_file_writer(str(tmp_path / "train"))
    with w.as_default():
        tf.summary.text("keras", "model graph", step=0)
        for e in range(5):
            tf.summary.scalar("epoch_loss", 1.0 / (e + 1), step=e)
            tf.summary.scalar("evaluation_loss_vs_iterations", 1.0, step=10 * (e + 1))
    w.close()
    (f,) = (tmp_path / "train").glob("events.out.tfevents.*")
    with open(f, "ab") as fh:
        fh.write(b"\x10\x00\x00\x00torn record")
    (tmp_path / "train" / ".trim.tmp").write_bytes(b"left by a kill")
    dropped = cb.trim_events(tmp_path, 3, 30)  # epochs 0..2 committed, after 30 iterations
    assert dropped == 2 + 2 + 1  # epochs 3, 4; iterations 40, 50; the model summary
    assert _steps(tmp_path, "train", "epoch_loss") == [0, 1, 2]
    assert _steps(tmp_path, "train", "evaluation_loss_vs_iterations") == [10, 20, 30]
    assert _steps(tmp_path, "train", "keras") == []
    assert not (tmp_path / "train" / ".trim.tmp").exists()
    assert cb.trim_events(tmp_path, 0, 0) == 1 and not list((tmp_path / "train").iterdir())  # restart: all go
