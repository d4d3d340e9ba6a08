"""End-to-end: `python -m suite run` on the embedded digits data, through the real CLI (in a process of its own where
the process is the point, in this one where the run is)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, cli_here, run_cli


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {}
    for sub in ("train", "validation"):
        acc = EventAccumulator(str(run_dir / sub))
        acc.Reload()
        tags[sub] = set(acc.Tags()["scalars"]) | set(acc.Tags()["tensors"])
    return tags


def test_smoke_run_writes_events_config_results(tmp_path):
    p = run_cli("run", "lenet5_modern", "--epochs", "2", "--logdir", tmp_path, "--set", "train.verbose=2")
    assert p.returncode == 0, p.stderr[-2000:]
    runs = list((tmp_path / "lenet5_modern").iterdir())
    assert len(runs) == 1
    run = runs[0]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["name"] == "lenet5_modern" and cfg["train"]["epochs"] == 2 and cfg["data"]["name"] == "digits"
    res = json.loads((run / "results.json").read_text())
    assert res["status"] == "complete"
    assert 0.0 <= res["test"]["accuracy"] <= 1.0 and res["params"] > 0
    assert "weight_penalty" not in res["test"]  # no regulariser, nothing to split off the loss
    assert res["backend"] == "tensorflow" and res["versions"]["keras"].startswith("3.")
    assert len(res["history"]["loss"]) == 2 and "learning_rate" in res["history"]
    tags = _events(run)
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= tags["train"]
    assert {"epoch_loss", "epoch_accuracy"} <= tags["validation"]
    # Keras writes the conceptual (layer) graph as the "keras" summary: TensorBoard's Graphs tab draws it.
    assert "keras" in tags["train"], "the model graph was not written"
    assert str(run) in p.stdout.strip().splitlines()[-1]  # one closing summary line naming the run
    assert "test accuracy" in p.stdout.strip().splitlines()[-1]


def test_learns_digits(tmp_path):
    """It learns, with weight decay on; the summary says how much of the test loss is the L2 penalty, which Keras
    adds to every loss it reports (AlexNet's 5e-4: loss 4.8 beside 99 % accuracy)."""
    code, out, err = cli_here("run", "lenet5_modern", "--epochs", "8", "--logdir", tmp_path, "--set",
                              "train.optimizer=adam", "--set", "train.lr=0.003", "--set", "train.verbose=0",
                              "--set", "model.weight_decay=5e-4")
    assert code == 0, err[-2000:]
    run = next((tmp_path / "lenet5_modern").iterdir())
    res = json.loads((run / "results.json").read_text())
    assert res["test"]["accuracy"] > 0.9, res["test"]
    import keras
    import numpy as np

    from suite import runner

    model = runner.load_model(run / "last.keras")  # the weights the test figures come from
    kernels = [layer.kernel for layer in model.layers if getattr(layer, "kernel_regularizer", None) is not None]
    assert kernels  # every conv and dense kernel is decayed
    l2 = 5e-4 / 2 * sum(float(np.sum(np.square(keras.ops.convert_to_numpy(k)))) for k in kernels)
    pen = res["test"]["weight_penalty"]
    assert pen == pytest.approx(l2, rel=1e-4) and 0 < pen < res["test"]["loss"], res["test"]
    assert f"loss {res['test']['loss']:.4f} ({pen:.4f} of it the L2 penalty)" in out.splitlines()[-1], out


def test_list_shows_networks_and_experiments():
    p = run_cli("list")
    assert p.returncode == 0
    assert "alexnet" in p.stdout and "lenet5" in p.stdout and "experiments" in p.stdout


@pytest.mark.parametrize("args, needle", [
    (["run", "alexnett"], "unknown network 'alexnett' (did you mean alexnet"),
    (["run", "lenet5", "--set", "train.lr=-1"], "train.lr = -1.0 is out of range"),
    (["run", "lenet5", "--set", "model.dropou=0.1"], "unknown setting model.dropou"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    code, _, err = cli_here(*args, "--logdir", tmp_path)  # in a process of its own: tests/test_bad_inputs.py
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a bad command wrote files"


LOADED = ("import sys; from suite.cli import main; rc = main(sys.argv[1:]); "
          "print(rc, *[m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules])")


@pytest.mark.parametrize("args, needle", [
    (["run", "lenet5", "--set", "model.dropou=0.1"], "unknown setting model.dropou"),
    (["run", "lenet5", "--num-processes", "2"], "needs --coordinator HOST:PORT"),
    (["bench", "lenet5", "--set", "train.lr=-1"], "train.lr = -1.0 is out of range"),
    (["tune", "lenet5", "--set", "tune.lr=[0.1,0.01]"], "low must be below high"),
    (["tune", "lenet5", "--set", "train.epochs=1"], "use --epochs N or --set tune.epochs=N"),
    (["eval", "logs/lenet5/nosuch"], "run directory logs/lenet5/nosuch does not exist"),
    (["predict", "logs/lenet5/nosuch", "digit.png"], "image digit.png does not exist"),
    (["viz", "."], ". is not a run directory (no config.json)"),
])
def test_a_mistake_on_the_command_line_is_said_before_tensorflow_loads(tmp_path, args, needle):
    """The one line comes at once, not after TensorFlow's start (6 s here): nothing of TensorFlow or Keras is imported."""
    p = subprocess.run([sys.executable, "-c", LOADED, *args], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert p.stdout.split() == ["2"], (p.stdout, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, said", [
    (["list"], ""),
    (["run", "lenet5", "--epochs", "1", "--set", "train.verbose=2"],
     "stopped: standard output was closed; the run directory keeps its last commit: run the same command to resume"),
])
def test_a_closed_standard_output_stops_without_a_traceback(tmp_path, args, said):
    """`suite list | head`: the reader is gone before the command writes. A pipe whose read end is closed makes
    the first write fail at once, every time (a real `head` would race the writer)."""
    args = [*args, "--logdir", str(tmp_path)] if args[0] == "run" else args
    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([sys.executable, "-m", "suite", *args], cwd=ROOT, stdout=write, stderr=subprocess.PIPE,
                           text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write)
    assert p.returncode == 141, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr[-2000:]
    # the one line a training command adds; a listing says nothing
    assert [ln for ln in p.stderr.splitlines() if ln.startswith("stopped")] == ([said] if said else []), p.stderr


def test_progress_bar_never_passes_the_epochs_end(capsys):
    # Several steps per call: Keras reports the last call of an 11-batch epoch as batch 16 ("16/11 … -1s").
    from suite import callbacks

    bar = callbacks.Progbar()
    bar.set_params({"verbose": 1, "epochs": 1, "steps": 11})
    bar.on_train_begin()
    bar.on_epoch_begin(0)
    bar.on_train_batch_end(7, {"loss": 1.0})
    bar.on_train_batch_end(15, {"loss": 1.0})
    assert bar.seen == 11
    assert "16/11" not in capsys.readouterr().out


class _Figure:
    """A log value that records when it is read (pythonify_logs converts it with float())."""

    def __init__(self, batch, value, reads):
        self.batch, self.value, self.reads = batch, value, reads

    def __float__(self):
        self.reads.append(self.batch)
        return float(self.value)


def _segments(callbacks, steps=8):
    from types import SimpleNamespace

    from suite import callbacks as cb

    seg = cb.Segments(callbacks, model=SimpleNamespace(stop_training=False), epochs=1, steps=steps, verbose=1)
    seg.on_train_begin()
    seg.on_epoch_begin(0)
    return seg


def test_batch_ends_read_each_calls_figures_one_call_late():
    """A batch end must not wait for the step just dispatched: the progress bar and the NaN check get call k's
    figures at call k + 1's end (or the epoch's), every call once and in order; the step-boundary callbacks (the
    backup) run at once and read nothing."""
    import keras

    from suite import callbacks as cb

    reads, seen, unread = [], [], []

    class Shown(keras.callbacks.Callback):
        batch_logs = "late"

        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, logs["loss"], list(reads)))

    class Boundary(keras.callbacks.Callback):
        batch_logs = "unread"

        def on_train_batch_end(self, batch, logs=None):
            unread.append((batch, type(logs["loss"]).__name__, list(reads)))

    seg = _segments([cb.StopOnNaN(), Shown(), Boundary()])
    assert seg.lag
    for k in range(4):
        seg.on_train_batch_end(k, {"loss": _Figure(k, 10 + k, reads)})
        assert reads == list(range(k)), reads  # call k's figures are not read at its own end
    seg.on_epoch_end(0, {})
    assert reads == [0, 1, 2, 3]
    assert [(b, v) for b, v, _ in seen] == [(0, 10.0), (1, 11.0), (2, 12.0), (3, 13.0)]
    assert [(b, kind) for b, kind, _ in unread] == [(k, "_Figure") for k in range(4)]


def test_a_callback_that_reads_the_figures_at_once_gets_them_at_once():
    """A callback without batch_logs (a user's, a tuner's) keeps Keras' behaviour: every callback, in list order,
    gets the call's own figures at its end."""
    import keras

    from suite import callbacks as cb

    reads, seen = [], []

    class Reader(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, logs["loss"]))

    seg = _segments([cb.StopOnNaN(), Reader()])
    assert not seg.lag
    for k in range(3):
        seg.on_train_batch_end(k, {"loss": _Figure(k, k, reads)})
        assert reads == list(range(k + 1)) and seen[-1] == (k, float(k))


def test_a_mid_epoch_commit_waits_for_the_nan_check_of_its_step():
    """log.backup_every commits mid-epoch: the NaN check, one call late otherwise, must have seen the step to commit;
    a loss gone NaN there is not committed (the run resumes from the commit before)."""
    from suite import callbacks as cb

    stop = cb.StopOnNaN()
    backup = cb.Backup("unused", steps=8, stop=stop, every=("steps", 1), write=False)
    seg = _segments([stop, backup])
    backup.settle = seg.settle
    reads = []
    seg.on_train_batch_end(0, {"loss": _Figure(0, 1.0, reads)})
    assert backup.at == (0, 1)
    seg.on_train_batch_end(1, {"loss": _Figure(1, float("nan"), reads)})
    assert stop.where == {"epoch": 1, "batch": 2, "loss": "nan"}, stop.where
    assert backup.at == (0, 1), backup.at  # not (0, 2): that step's loss is NaN


@pytest.mark.parametrize("watch", ["accuracy", "val_loss"])
def test_plateau_lowers_the_lr_when_the_watched_figure_stalls(tmp_path, watch):
    """train.plateau_monitor names a figure the logs have: with an lr too small to move the weights every figure
    stalls, so the lr halves at every epoch after the first (a name the logs lacked would never lower it)."""
    code, _, err = cli_here("run", "lenet5", "--epochs", "3", "--logdir", tmp_path, "--set", "train.verbose=0",
                            "--set", "data.limit=64", "--set", "train.lr=1e-20", "--set", "train.schedule=plateau",
                            "--set", "train.patience=0", "--set", "train.decay=0.5",
                            "--set", f"train.plateau_monitor={watch}")
    assert code == 0, err[-2000:]
    res = json.loads(next((tmp_path / "lenet5").glob("*/results.json")).read_text())
    assert res["history"]["learning_rate"] == pytest.approx([1e-20, 5e-21, 2.5e-21], rel=1e-5)


def test_without_validation_there_is_no_best_validation_accuracy(tmp_path):
    """data.val_split = 0 (the He et al. files): the best model is picked by training accuracy, which results.json
    must not report as a validation figure (ResNet-20's run said 99.3 % "best_val_accuracy" beside 91.5 % test)."""
    code, _, err = cli_here("run", "lenet5", "--epochs", "2", "--logdir", tmp_path, "--set", "train.verbose=0",
                            "--set", "data.limit=128", "--set", "data.val_split=0")
    assert code == 0, err[-2000:]
    res = json.loads(next((tmp_path / "lenet5").glob("*/results.json")).read_text())
    assert res["status"] == "complete" and len(res["history"]["accuracy"]) == 2
    assert not any(k.startswith("val_") for k in res["history"]), res["history"].keys()
    assert res["best_val_accuracy"] is None, res["best_val_accuracy"]


def test_a_runs_batch_ends_do_not_wait_for_the_step(tmp_path, segment_lists):
    """Every callback the runner adds says how it uses a batch end's figures (callbacks.BATCH_LOGS), so the run's
    progress bar and NaN check read them one call late; one that did not would make every batch end wait."""
    from suite import callbacks as cb

    code, _, err = cli_here("run", "lenet5", "--epochs", "1", "--logdir", tmp_path, "--set", "train.verbose=1",
                            "--set", "data.limit=128", "--set", "log.backup_every=2steps")
    assert code == 0, err[-2000:]
    assert segment_lists
    kinds = [(type(c).__name__, cb._batch_logs(c)) for c in segment_lists[0].callbacks]
    assert all(s.lag for s in segment_lists), kinds
    assert {type(c).__name__ for c in segment_lists[0].late} == {"Progbar", "StopOnNaN"}
