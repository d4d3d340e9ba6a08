"""benchmarks/results_row.py: the RESULTS.md row is computed from the runs' results.json."""

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import results_row  # noqa: E402


def _run(d, acc, single=None, val=(0.80, 0.93)):
    test = {"accuracy": acc}
    if single is not None:
        test.update(tta="flip", views=2, single_view={"accuracy": single})
    d.mkdir()
    (d / "results.json").write_text(json.dumps({
        "status": "complete", "experiment": "resnet20_fast", "data": "cifar10", "backend": "tensorflow",
        "runtime": {"device": "CPU", "precision": "float32"}, "epochs_completed": 2, "wall_time_s": 120.0,
        "reference_accuracy": 0.9125, "test": test,
        "history": {"val_accuracy": list(val), "epoch_time": [50.0, 60.0]}}))
    return d


def test_row_from_two_seeds_with_tta(tmp_path):
    runs = [_run(tmp_path / "a", 0.92, 0.91), _run(tmp_path / "b", 0.94, 0.90)]
    cells = [c.strip() for c in results_row.row(runs, "python -m suite run x").strip("|").split("|")]
    assert cells[:7] == ["resnet20_fast", "cifar10", "CPU", "tensorflow", "float32", "2", "2.0 min"]
    assert cells[7] == "epoch 2 (110 s)"
    assert cells[8] == "93.00% ± 1.41% (n=2) (flip TTA; single view 90.50% ± 0.71% (n=2))"


def test_row_without_tta_and_never_reached(tmp_path):
    cells = results_row.row([_run(tmp_path / "a", 0.9033, val=(0.5, 0.9))], "c").split("|")
    assert cells[8].strip() == "no" and cells[9].strip() == "90.33%"


def test_speed_line_leaves_the_compiling_epoch_out(tmp_path):
    a, b = _run(tmp_path / "a", 0.94), _run(tmp_path / "b", 0.94)
    for d, times in ((a, [30.0, 2.0, 3.0, 4.0]), (b, [25.0, 1.0, 1.0, 1.0])):
        r = json.loads((d / "results.json").read_text())
        r["history"]["epoch_time"] = times
        (d / "results.json").write_text(json.dumps(r))
    line = results_row.speed([a, b])
    # a: 2+3+4 + median 3 = 12; b: 1+1+1 + 1 = 4; mean 8 → 8 / 2.56 = 3.1×
    assert "mean 8.00 s over 2 runs (12.00, 4.00 s;" in line and "3.1× airbench94" in line


def _events(d, wall_times):
    """Keras-like train/ events: epoch_loss at step e written at wall_times[e]."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(d / "train"))
    for step, t in enumerate(wall_times):
        value = summary_pb2.Summary.Value(tag="epoch_loss", simple_value=1.0)
        w.add_event(event_pb2.Event(wall_time=t, step=step, summary=summary_pb2.Summary(value=[value])))
    w.close()


def test_speed_line_gives_the_loop_time_with_the_epoch_end_work(tmp_path):
    """epoch_time leaves out the callbacks after it; the epochs' TensorBoard timestamps do not."""
    a = _run(tmp_path / "a", 0.94)
    r = json.loads((a / "results.json").read_text())
    r["history"]["epoch_time"] = [30.0, 1.0, 1.0, 1.0]
    (a / "results.json").write_text(json.dumps(r))
    line = results_row.speed([a])
    assert "mean 4.00 s over 1 runs" in line and "epoch-end work" not in line  # no event files: no second figure
    _events(a, [1000.0, 1002.0, 1004.5, 1006.5])  # periods 2, 2.5, 2: span 6.5 + median 2
    line = results_row.speed([a])
    assert "mean 4.00 s over 1 runs" in line and "epoch-end work" in line and "mean 8.50 s (8.50 s)" in line


def test_a_resumed_run_counts_its_epoch_times(tmp_path):
    d = _run(tmp_path / "a", 0.92)
    r = json.loads((d / "results.json").read_text())
    r.update(resumed=True, resumed_from_epoch=1, wall_time_s=65.0)  # the last process only: epoch 2 and the test
    (d / "results.json").write_text(json.dumps(r))
    cells = [c.strip() for c in results_row.row([d], "c").strip("|").split("|")]
    assert cells[6] == "1.8 min (1 resumed: epoch times summed)"  # 50 + 60 s, not 65 s
    assert "1 run(s) resumed" in results_row.speed([d])


def test_a_figure_for_other_data_is_shown_as_not_comparable(tmp_path):
    d = _run(tmp_path / "a", 0.92)
    r = json.loads((d / "results.json").read_text())
    r.update(reference_accuracy=0.687, reference_data="imagenet")  # GoogLeNet's ImageNet top-1, a CIFAR run
    (d / "results.json").write_text(json.dumps(r))
    cells = [c.strip() for c in results_row.row([d], "c").strip("|").split("|")]
    assert cells[7] == "—" and cells[9] == "68.70% (imagenet: not comparable)"
    r.update(reference_data="cifar10")
    (d / "results.json").write_text(json.dumps(r))
    cells = [c.strip() for c in results_row.row([d], "c").strip("|").split("|")]
    assert cells[7] == "epoch 1 (50 s)" and cells[9] == "68.70%"  # val 0.80 ≥ 0.687 at once
