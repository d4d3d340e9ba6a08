"""Training on several devices and processes (suite/distribute.py), on a 2-core machine without accelerators:
the CPU split into 2 devices (SUITE_CPU_DEVICES) for JAX's DataParallel and TensorFlow's MirroredStrategy, and two
processes on 127.0.0.1 joined by JAX's distributed runtime (CPU collectives)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from suite import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
# 512 digits at a global batch of 64: 8 full batches an epoch, so every mode trains the same batches
ARGS = ["lenet5", "--set", "data.limit=512", "--batch-size", "64", "--set", "train.verbose=2"]
# On JAX with batch norm: the sharded step normalises over the global batch, so the curve is one device's; the
# statistics for validation and the test are recomputed (eval.precise_bn) on each process's own copy and written
# back into the training network, and come out as one device's. (Under TensorFlow's MirroredStrategy, Keras'
# BatchNormalization normalises each replica's half on its own unless synchronized=True: that test trains without.)
JAX_ARGS = [*ARGS, "--set", "model.batch_norm=true"]


def suite_run(args, logdir, backend="tensorflow", devices=0, fault=None, wait=True):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("SUITE_FAULT", None)
    if devices:
        env["SUITE_CPU_DEVICES"] = str(devices)
    if fault:
        env["SUITE_FAULT"] = fault
    cmd = [sys.executable, "-m", "suite", "run", *args, "--logdir", str(logdir)]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return p
    out, _ = p.communicate(timeout=600)
    return p.returncode, out


def results(logdir):
    found = sorted(pathlib.Path(logdir).glob("*/*/results.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_curve(a, b):
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert a["history"][key] == pytest.approx(b["history"][key], rel=1e-4, abs=1e-5), key
    assert a["test"]["accuracy"] == pytest.approx(b["test"]["accuracy"], abs=1e-6)


@pytest.fixture(scope="module")
def jax_reference(tmp_path_factory):
    """One device, the same global batch: the curve every JAX mode must reproduce. It is also the suite's run on the
    JAX backend through the host pipeline (test_augment trains on JAX with device augmentation)."""
    pytest.importorskip("jax")
    logs = tmp_path_factory.mktemp("ref")
    rc, out = suite_run([*JAX_ARGS, "--epochs", "3", "--distribute", "none"], logs, backend="jax")
    assert rc == 0, out[-2000:]
    r = results(logs)
    assert r["distribution"]["strategy"] == "none" and r["distribution"]["device_count"] == 1
    assert r["backend"] == "jax" and r["status"] == "complete"
    return r


def test_jax_data_parallel_on_two_devices_trains_the_one_device_curve(jax_reference, tmp_path):
    rc, out = suite_run([*JAX_ARGS, "--epochs", "3", "--distribute", "data_parallel"], tmp_path, backend="jax",
                        devices=2)
    assert rc == 0, out[-2000:]
    r = results(tmp_path)
    d = r["distribution"]
    assert d["strategy"] == "keras.distribution.DataParallel" and d["device_count"] == 2, d
    assert (d["processes"], d["global_batch"], d["per_device_batch"], d["backend"]) == (1, 64, 32, "jax")
    same_curve(r, jax_reference)


def test_tensorflow_mirrored_strategy_on_two_devices_trains_the_one_device_curve(tmp_path):
    """... and resumes exactly: the 2-device run is killed (kill -9) in epoch 2 after a mid-epoch commit."""
    runs = {}
    every = ["--set", "log.backup_every=3 steps"]
    rc, out = suite_run([*ARGS, *every, "--epochs", "2", "--distribute", "data_parallel"], tmp_path / "dp",
                        devices=2, fault="step:11:kill")  # one step per call here: batch 3 of epoch 2
    assert rc == -signal.SIGKILL, out[-2000:]
    for mode, devices, logs in (("none", 0, "one"), ("data_parallel", 2, "dp")):
        rc, out = suite_run([*ARGS, *every, "--epochs", "2", "--distribute", mode], tmp_path / logs, devices=devices)
        assert rc == 0, out[-2000:]
        runs[mode] = results(tmp_path / logs)
    assert (runs["data_parallel"]["resumed_from_epoch"], runs["data_parallel"]["resumed_from_batch"]) == (1, 3)
    d = runs["data_parallel"]["distribution"]
    assert d["strategy"] == "tf.distribute.MirroredStrategy" and d["device_count"] == 2, d
    assert d["per_device_batch"] == 32 and d["partial_batch"] == "kept"
    assert runs["data_parallel"]["runtime"]["steps_per_execution"] == 1  # keras-team/keras#19246
    same_curve(runs["data_parallel"], runs["none"])


def _two_processes(logs, fault=None):
    """The chief (process 0) and process 1 of a 2-process run on loopback, started."""
    port = free_port()
    cmd = [*JAX_ARGS, "--epochs", "3", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    chief = suite_run([*cmd, "--process-id", "0"], logs, backend="jax", wait=False)
    worker = suite_run([*cmd, "--process-id", "1"], logs, backend="jax", fault=fault, wait=False)
    return chief, worker


def _both_finish(logs, jax_reference, resumed):
    """Both processes run to the end: one run directory, written by the chief alone, on the one-device curve."""
    chief, worker = _two_processes(logs)
    w_out, _ = worker.communicate(timeout=600)
    c_out, _ = chief.communicate(timeout=600)
    assert chief.returncode == 0, c_out[-3000:]
    assert worker.returncode == 0, w_out[-3000:]
    assert "process 1 of 2: training with process 0" in w_out, w_out[-3000:]
    assert ("resuming" in c_out) == resumed, c_out[-3000:]
    r = results(logs)  # one run directory, one results.json
    assert r["resumed"] == resumed
    d = r["distribution"]
    assert (d["processes"], d["device_count"], d["global_batch"], d["per_device_batch"]) == (2, 2, 64, 32)
    assert (logs / "lenet5").is_dir() and len(list(logs.iterdir())) == 1
    (run,) = (logs / "lenet5").iterdir()
    for name in ("best.keras", "last.keras", "config.json"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    same_curve(r, jax_reference)
    return r


def test_two_processes_train_the_one_device_curve(jax_reference, tmp_path):
    _both_finish(tmp_path / "logs", jax_reference, resumed=False)


# slow: ~2 min on 2 cores (4 process starts); the default run has the two processes without the kill (above) and
# a kill and exact resume of a data-parallel run (test_tensorflow_mirrored_strategy_...)
@pytest.mark.slow
def test_two_processes_kill_9_of_one_then_both_resume(jax_reference, tmp_path):
    """Two processes on loopback: process 1 is killed (kill -9) in epoch 2; process 0, stuck waiting for it, is
    killed too (JAX would end it after its heartbeat timeout). The same two commands then resume from the
    chief's backup and finish with one run directory, written by the chief alone, on the one-device curve."""
    logs = tmp_path / "logs"
    chief, worker = _two_processes(logs, fault="step:2:kill")  # steps_per_execution 8 = one call per epoch: epoch 2
    worker.communicate(timeout=600)
    assert worker.returncode == -signal.SIGKILL
    time.sleep(1)
    chief.kill()
    chief_out, _ = chief.communicate(timeout=60)
    runs = [p for p in logs.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    assert not (runs[0] / "results.json").exists()
    assert list((runs[0] / "backup").glob("epoch-*")), chief_out[-2000:]  # the chief committed epoch 1
    r = _both_finish(logs, jax_reference, resumed=True)
    assert r["resumed_from_epoch"] >= 1


@pytest.mark.parametrize("args, env, needle", [
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], {}, "must be HOST:PORT"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "2"], {}, "--process-id 2 must be 0"),
    (["--coordinator", "127.0.0.1:9", "--process-id", "0"], {}, "needs --num-processes"),
    (["--num-processes", "2", "--process-id", "0"], {}, "needs --coordinator HOST:PORT"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2"], {}, "needs --process-id I"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "0"], {}, "need the JAX backend"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "1", "--distribute", "none"], {},
     "cannot train as one of 2 processes"),
    ([], {"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"}, "not a whole number"),
    (["--distribute", "everywhere"], {}, "invalid choice"),
])
def test_bad_cluster_settings_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, env, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = cli.main(["run", "lenet5", "--epochs", "1", "--logdir", str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_batch_that_does_not_divide_over_the_devices_is_refused(tmp_path):
    rc, out = suite_run([*ARGS, "--batch-size", "63", "--distribute", "data_parallel"], tmp_path, devices=2)
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert rc == 2 and lines == [lines[0]] and "use 62 or 64" in lines[0], out[-2000:]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_search_workers_get_disjoint_gpus(monkeypatch):
    from suite import distribute
    from suite.errors import UserError

    g = ["0", "1", "2", "3"]
    assert distribute.device_groups(4, None, g) == [["0"], ["1"], ["2"], ["3"]]  # one trial per device
    assert distribute.device_groups(2, None, g) == [["0", "1"], ["2", "3"]]  # an even share: data parallel trials
    assert distribute.device_groups(2, 1, g) == [["0"], ["1"]]
    assert distribute.device_groups(3, None, ["0"]) == [None] * 3  # fewer GPUs than workers: not pinned
    assert distribute.device_groups(2, None, []) == [None, None]  # a CPU machine
    assert distribute.device_groups(0, None) == []  # no --workers: nothing to hand out, nvidia-smi not asked
    for workers, k, gpus, needle in ((3, 2, g, "needs 6 GPUs"), (2, 1, [], "none is visible"), (2, 0, g, "at least 1")):
        with pytest.raises(UserError, match=needle):
            distribute.device_groups(workers, k, gpus)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert distribute.visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert distribute.visible_gpus() == []


@pytest.mark.parametrize("command", [["tune", "lenet5"], ["study", "padding"]])
def test_devices_per_trial_needs_workers(tmp_path, capsys, command):
    code = cli.main([*command, "--devices-per-trial", "1", "--logdir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--devices-per-trial shares the GPUs" in err[0], err
    assert not any(tmp_path.iterdir())
