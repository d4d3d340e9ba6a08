"""`--seed S --deterministic` gives identical metrics run after run on CPU: the same initial weights, split,
shuffling and augmentation (Keras seeding, seeded tf.data) and TensorFlow op determinism."""

import json

from conftest import run_cli

TIMING = ("epoch_time", "images_per_sec")  # wall-clock figures differ by nature


def _run(logdir, *extra):
    p = run_cli("run", "lenet5_modern", "--data", "digits", "--epochs", "2", "--batch-size", "32", "--seed", "7",
                "--set", "data.limit=320", "--set", "data.crop=1", "--set", "data.flip=true",
                "--set", "train.optimizer=adam", "--set", "train.lr=0.003", "--set", "train.schedule=constant",
                "--set", "train.verbose=0", "--logdir", logdir, *extra)
    assert p.returncode == 0, p.stderr[-2000:]
    (res,) = [json.loads(f.read_text()) for f in logdir.glob("*/*/results.json")]
    return res


def test_seed_and_deterministic_give_identical_metrics(tmp_path):
    a = _run(tmp_path / "a", "--deterministic")
    b = _run(tmp_path / "b", "--deterministic")
    assert a["deterministic"] and b["deterministic"] and a["seed"] == b["seed"] == 7
    assert a["test"] == b["test"]
    for k, v in a["history"].items():
        if k not in TIMING:
            assert v == b["history"][k], k
    assert a["history"]["loss"][0] != a["history"]["loss"][1]  # it did train
