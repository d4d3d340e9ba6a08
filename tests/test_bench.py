"""`python -m suite bench`: every row measured, ratios computed from them, JSON written; bad input one line."""

import json

import pytest

from conftest import cli_here

ROWS = {"pipeline_no_augment", "pipeline_raw", "pipeline_host_augment", "model", "plain_keras",
        "end_to_end_host", "end_to_end_device", "pipeline_fit", "end_to_end_waiting"}


def test_bench_prints_and_writes_every_rate(tmp_path, monkeypatch, segment_lists):
    monkeypatch.chdir(tmp_path)  # in this process: TensorFlow's start-up is not what is measured or tested
    out = tmp_path / "bench.json"
    code, stdout, err = cli_here("bench", "lenet5_modern", "--steps", "3", "--epochs", "1", "--repeat", "2",
                                 "--set", "data.crop=1", "--set", "data.flip=true",
                                 "--set", "train.steps_per_execution=2", "--json", out)
    assert code == 0, err[-2000:]
    r = json.loads(out.read_text())
    assert set(r["rates_img_per_s"]) == ROWS
    assert all(v > 0 for v in r["rates_img_per_s"].values())
    assert r["steps_per_epoch"] == 3 and r["batch_size"] == 128 and r["repeat"] == 2
    assert all(len(v) == 2 for v in r["samples_img_per_s"].values())
    # every row trains warm-up + 1 measured + the run's end; its rate is the measured epoch's alone
    assert set(r["epoch_s"]) == ROWS - {"pipeline_no_augment", "pipeline_raw", "pipeline_host_augment"}
    assert all(len(turn) == 3 for turns in r["epoch_s"].values() for turn in turns)
    # the fit rows train the 3 steps an epoch their rates count, in calls of 2 (an endless feed ran 2 calls: 4)
    assert r["steps_trained_per_epoch"] == {k: [3, 3] for k in ("model", "plain_keras", "pipeline_fit")}
    images = {"model": 3 * 128, "plain_keras": 3 * 128}
    for key, n in images.items():
        assert r["samples_img_per_s"][key] == pytest.approx([n / t[1] for t in r["epoch_s"][key]], rel=1e-3)
    ends = [t[2] - t[1] for t in r["epoch_s"]["end_to_end_host"]]
    assert r["run_end_extra_s"] == pytest.approx(sum(ends) / 2, abs=1e-3)
    assert r["device"]["kind"] == "cpu" and r["backend"] == "tensorflow"
    # each end-to-end run's batch ends: one call late (host, device) or waiting for each step; two turns
    assert [s.lag for s in segment_lists] == [True, True, False] * 2
    # as set (on a CPU "auto" would take 8 steps per call, at most an epoch); every epoch end commits
    assert r["effective"] == {"precision": "float32", "jit_compile": "auto", "steps_per_execution": 2,
                              "augment_on": "host", "commit_interval": "epoch",
                              "autotune": False}
    # the ratios are those of the measured rows (median of each turn's ratio)
    s = r["samples_img_per_s"]
    pairs = sorted(a / b for a, b in zip(s["end_to_end_host"], s["plain_keras"]))
    assert r["ratios"]["suite/plain_keras"] == pytest.approx(sum(pairs) / 2)
    for label in ("input pipeline, host augmentation", "model step alone", "plain Keras", "end to end",
                  "run's pipeline + model, no callbacks (host aug.)", "every batch end waiting for its step",
                  "end_to_end/model =", "suite/plain_keras =", "the run's end"):
        assert label in stdout, label
    assert not (tmp_path / "logs").exists(), "bench must leave no run directories behind"
    assert "Epoch 1/3" not in stdout and "━" not in stdout, stdout  # the runs' progress bars stay out of the table


@pytest.mark.parametrize("args, needle", [
    (["--steps", "0"], "--steps 0 must be at least 1"),
    (["--steps", "500"], "--steps 500 needs 64000 training images"),
    (["--epochs", "0"], "--epochs 0 must be at least 1"),
    (["--json", "/nonexistent/dir/b.json"], "cannot write"),
])
def test_bench_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, args, needle):
    """In this process: every command's bad input leaves through cli.main's one error path, which
    tests/test_bad_inputs.py's subprocess cases (of `run`) check in a real process (one line, exit 2)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli_here("bench", "lenet5_modern", *args, "--set", "train.verbose=0")
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not any(tmp_path.iterdir()), "a refused bench wrote files"


def test_torch_reference_needs_torch_and_cuda():
    """The torch.compile ResNet-50 row runs only where torch, torchvision and CUDA all are; elsewhere: None."""
    import importlib.util

    from suite import bench_torch

    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA machine: the reference would run")
    assert bench_torch.resnet50_rate(8, 1, 1) is None
