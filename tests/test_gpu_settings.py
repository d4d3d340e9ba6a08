"""The GPU session's runs rehearsed on this CPU, before device time is spent on them (issue 10).

On the lent H100/H200 the suite runs Keras on JAX and its "auto" settings pick mixed_bfloat16, augmentation on the
device, 32 steps per call and jit (suite/hardware.py). CI never has that machine, and on a CPU "auto" picks float32
and tf.data augmentation, so nothing else runs these paths with the experiment files the GPU session trains. Here
every file of benchmarks/gpu_session.sh's plan trains 2 epochs on JAX with the settings `hardware.effective` gives
a GPU, on a small CIFAR-shaped set, and ResNet-20 learns as well under them as under the CPU's settings. The
plan's last part, `benchmarks/studies.py --full`, gets its check too: every arm of every study's full recipe builds.

Slow (29 minutes with test_gpu_carry's two on 2 cores in 2 processes: XLA compiles each network, and bfloat16 is
emulated on a CPU): run it before a GPU session with `python -m pytest -m slow tests/test_gpu_settings.py
tests/test_gpu_carry.py -n 2 --dist load` (with benchmarks/gpu_session.sh's own rehearsals, tests/test_gpu_carry.py's
slow ones; one test per process at a time; the project's default, a file per process, would run them one after
another)."""

import importlib.util
import json
import math

import numpy as np
import pytest

from conftest import run_cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")]

# benchmarks/gpu_session.sh's parts r20, r56, plain, speed and the exp: parts its header and issue 10 name
PLAN = ["resnet20", "resnet56", "plain20", "plain56", "cifar10_speedrun", "vgg16_bn", "nin", "allcnn_c",
        "densenet_bc100", "googlenet", "resnet110"]
EPOCHS = 2  # an epoch's end (validation, a commit) and a second epoch after it
GPU = {"kind": "gpu", "name": "NVIDIA H200", "count": 1, "bf16": True, "backend": "jax"}


def gpu_sets(target):
    """--set arguments fixing what `auto` would pick on the GPU machine for this run."""
    from suite import config, hardware

    cfg = config.resolve(target)
    eff = hardware.effective(cfg, 352, GPU)  # CIFAR-10's 45,000 training images at batch 128
    sets = [f"train.precision={eff['precision']}", f"train.steps_per_execution={eff['steps_per_execution']}",
            f"train.jit_compile={str(eff['jit_compile']).lower()}", f"data.augment_on={eff['augment_on']}",
            f"log.commit_interval={eff['commit_interval']}"]
    if cfg["train"]["warmup_epochs"] >= EPOCHS:  # the speed run warms up for 5: leave a decay to schedule
        sets.append("train.warmup_epochs=1")
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory):
    """CIFAR-10's shapes and dtypes, 384 training and 128 test images: whether a run goes through, not what it
    reaches (the learning check below uses real digits)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "cifar_shaped.npz"
    np.savez(path, x_train=rng.integers(0, 256, (384, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 10, 384),
             x_test=rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 10, 128))
    return path


def jax_run(*args):
    return run_cli("run", *args, env={"KERAS_BACKEND": "jax"}, timeout=1800)


def results(logs):
    (found,) = logs.glob("*/*/results.json")
    return json.loads(found.read_text())


@pytest.mark.parametrize("name", PLAN)
def test_each_planned_experiment_trains_under_the_gpu_settings(name, small_cifar, tmp_path):
    p = jax_run(name, "--data", small_cifar, "--epochs", EPOCHS, "--logdir", tmp_path, "--set", "train.verbose=0",
                *gpu_sets(name))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    r = results(tmp_path)
    assert r["status"] == "complete" and r["backend"] == "jax"
    rt = r["runtime"]
    assert (rt["precision"], rt["augment_on"]) == ("mixed_bfloat16", "device"), rt
    assert rt["jit_compile"] is not False, rt
    assert len(r["history"]["loss"]) == EPOCHS and all(math.isfinite(v) for v in r["history"]["loss"])
    assert math.isfinite(r["test"]["loss"]) and 0 <= r["test"]["accuracy"] <= 1
    assert r["params"] > 0


def test_resnet20_learns_as_well_under_the_gpu_settings(tmp_path):
    """ResNet-20 on the real 8×8 digits, 15 epochs: bfloat16 with augmentation on the device (JAX) against
    float32 with tf.data augmentation (TensorFlow, the CPU's defaults). Measured here with BatchNorm's momentum 0.9:
    98.9 % and 98.6 % (98.3 % and 98.6 % with Keras' 0.99); with eval.precise_bn too, 98.9 % and 98.9 %."""
    exp = tmp_path / "r20digits.toml"
    exp.write_text("""
[model]
name = "resnet20"
[data]
name = "digits"
crop = 1
[train]
epochs = 15
batch_size = 64
optimizer = "sgd"
lr = 0.05
momentum = 0.9
schedule = "cosine"
verbose = 0
""")
    acc = {}
    for backend, sets in (("jax", gpu_sets(str(exp))),
                          ("tensorflow", ["--set", "train.precision=float32", "--set", "data.augment_on=host"])):
        logs = tmp_path / backend
        p = run_cli("run", exp, "--logdir", logs, *sets, env={"KERAS_BACKEND": backend}, timeout=1800)
        assert p.returncode == 0, p.stderr[-3000:]
        r = results(logs)
        assert r["backend"] == backend
        acc[backend] = r["test"]["accuracy"]
    assert min(acc.values()) >= 0.95, acc
    assert abs(acc["jax"] - acc["tensorflow"]) <= 0.03, acc


def test_bench_resnet20_under_the_gpu_settings(small_cifar, tmp_path):
    """The session's first part (`suite bench resnet20`): every rate, both augmentation places, in bfloat16."""
    out = tmp_path / "bench.json"
    p = run_cli("bench", "resnet20", "--data", small_cifar, "--steps", "2", "--epochs", "1", "--json", out,
                "--set", "train.verbose=0", *gpu_sets("resnet20"), cwd=tmp_path, env={"KERAS_BACKEND": "jax"},
                timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["backend"] == "jax" and r["effective"]["precision"] == "mixed_bfloat16", r["effective"]
    assert {"end_to_end_host", "end_to_end_device", "end_to_end_waiting", "model"} <= set(r["rates_img_per_s"])
    assert all(v > 0 for v in r["rates_img_per_s"].values()), r["rates_img_per_s"]
    # 32 steps a call over 2-step epochs: each fit row trains the 2 steps its rate counts (an endless feed ran 32)
    assert r["effective"]["steps_per_execution"] == 32
    assert r["steps_trained_per_epoch"] == {k: [2] for k in ("model", "plain_keras", "pipeline_fit")}, r


def test_every_studys_full_recipe_builds_for_its_data():
    """`benchmarks/studies.py --full` trains each study's [study.full] recipe on a GPU: every arm's network builds
    for its data set's images (the default recipes are built in the default run, tests/test_study.py)."""
    from test_study import build_every_arm

    build_every_arm(full=True)
