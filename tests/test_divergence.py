"""A NaN/inf loss stops the run at once: results.json says "diverged" with the epoch and batch, the process
exits with its own code (3, suite.errors.EXIT_DIVERGED), and the run is never resumed as if unfinished."""

import json
import math

from conftest import cli_here


def test_huge_learning_rate_diverges(tmp_path):
    code, out, err = cli_here("run", "lenet5_modern", "--data", "digits", "--epochs", "3", "--lr", "1e4",
                              "--batch-size", "32", "--set", "train.optimizer=sgd", "--set", "train.schedule=constant",
                              "--set", "data.limit=320", "--set", "train.verbose=0", "--logdir", tmp_path)
    from suite.errors import EXIT_DIVERGED

    assert code == EXIT_DIVERGED == 3, err[-2000:]
    (run_dir,) = list((tmp_path / "lenet5_modern").iterdir())
    res = json.loads((run_dir / "results.json").read_text())
    assert res["status"] == "diverged"
    w = res["diverged_at"]
    assert w["epoch"] == 1 and w["batch"] >= 1 and not math.isfinite(float(w["loss"]))
    # stopped at once: the first epoch did not go on, no further epochs ran
    assert res["epochs_run_now"] == 1 and res["epochs_completed"] == 0 and res["test"] == {}
    assert f"DIVERGED at epoch 1 batch {w['batch']}" in out
    assert not (run_dir / "backup").exists() and not (run_dir / "last.keras").exists()
    code, out, _ = cli_here("list", "--runs", "--logdir", tmp_path)
    assert code == 0 and "diverged" in out and f"batch {w['batch']}" in out

    from suite import runner

    cfg = json.loads((run_dir / "config.json").read_text())
    assert runner.status_of(run_dir) == "diverged"
    assert runner.run_dir_for(cfg)[0] != run_dir  # the same command starts over instead of resuming


def test_stop_on_nan_records_inf_and_nan():
    import keras

    from suite.callbacks import StopOnNaN

    for bad in (float("inf"), float("nan"), -float("inf")):
        s = StopOnNaN()
        s.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        s.on_epoch_begin(4)
        s.on_batch_end(0, {"loss": 1.0})
        s.on_batch_end(6, {"loss": bad})
        s.on_batch_end(7, {"loss": bad})  # the first bad batch is the one recorded
        assert s.where["epoch"] == 5 and s.where["batch"] == 7 and s.model.stop_training
