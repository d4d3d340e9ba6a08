"""`suite report`: the table across runs (Markdown, CSV), statuses, the paper's reference accuracy, and the
training-curve plots, on synthetic run directories and one tiny real run."""

import csv
import io
import json
import os
import pathlib
import time

import pytest

from conftest import run_cli
from suite import report, runner


def _history(n, acc0=0.5):
    acc = [min(0.99, acc0 + 0.1 * i) for i in range(n)]
    return {"loss": [2.0 / (i + 1) for i in range(n)], "accuracy": acc,
            "val_loss": [2.2 / (i + 1) for i in range(n)], "val_accuracy": [a - 0.02 for a in acc],
            "learning_rate": [0.1 * 0.5 ** i for i in range(n)], "epoch_time": [1.5] * n}


def make_run(root, exp, run_id, *, status="complete", epochs=5, done=None, ref=0.0, ref_data="", data="digits",
             model=None, age_s=3600):
    """A run directory as suite.runner writes it (config.json, and results.json unless unfinished)."""
    d = pathlib.Path(root) / exp / run_id
    d.mkdir(parents=True)
    model = model or exp
    cfg = {"experiment": {"name": exp, "description": "", "reference_accuracy": ref, "reference_data": ref_data,
                          "source": ""},
           "model": {"name": model}, "data": {"name": data}, "train": {"epochs": epochs}, "log": {"dir": str(root)}}
    (d / "config.json").write_text(json.dumps(cfg))
    done = epochs if done is None else done
    if status in ("complete", "diverged"):
        hist = _history(done)
        res = {"status": status, "experiment": exp, "model": model, "data": data,
               "test": {"accuracy": 0.91, "loss": 0.3} if status == "complete" else {},
               "best_val_accuracy": max(hist["val_accuracy"]), "epochs": epochs, "epochs_run_now": done,
               "resumed": False, "diverged_at": {"epoch": done, "batch": 3, "loss": "nan"} if status == "diverged"
               else None, "params": 61706, "wall_time_s": 75.3, "reference_accuracy": ref or None,
               "reference_data": ref_data, "history": hist, "run_dir": str(d)}
        (d / "results.json").write_text(json.dumps(res))
    old = time.time() - age_s
    for f in d.rglob("*"):
        os.utime(f, (old, old))
    return d


@pytest.fixture
def logs(tmp_path):
    root = tmp_path / "logs"
    make_run(root, "lenet5", "20260101-000000-aaaa1111", ref=0.9905, ref_data="mnist")
    make_run(root, "lenet5", "20260102-000000-aaaa1111", ref=0.9905, ref_data="digits", epochs=8)
    make_run(root, "alexnet", "20260103-000000-bbbb2222", status="diverged", epochs=10, done=2)
    make_run(root, "resnet20", "20260104-000000-cccc3333", status="interrupted", epochs=164, ref=0.9125,
             ref_data="cifar10", data="cifar10")
    running = make_run(root, "vgg16", "20260105-000000-dddd4444", status="running", epochs=74, age_s=5)
    fd = runner.lock(running)  # as the process training it holds it
    yield root
    runner.unlock(fd)


def test_table_columns_statuses_and_reference(logs):
    rows = [report.load_run(d) for d in report.find_runs([logs])]
    assert [r["status"] for r in rows] == ["diverged", "complete", "complete", "interrupted", "running"]
    md = report.markdown(rows).splitlines()
    assert [c.strip() for c in md[0].strip("|").split("|")] == list(report.COLUMNS)
    assert set(md[1]) <= set("|-:")
    lenet = [line for line in md if "lenet5" in line]
    assert "99.05 % (mnist)" in lenet[0] and "91.00 %" in lenet[0] and "61,706" in lenet[0]
    assert "1m 15s" in lenet[0] and "complete" in lenet[0]
    resnet = next(line for line in md if "resnet20" in line)
    assert "91.25 % (cifar10)" in resnet and "interrupted" in resnet and "0/164" in resnet
    alex = next(line for line in md if "alexnet" in line)
    assert "diverged" in alex and "2/10" in alex
    assert len({len(line) for line in md}) == 1  # padded: columns line up on a terminal
    # no process holds it (killed, stopped by a closed pipe): interrupted even if written seconds ago, as
    # `list --runs` says; a guess from the files' age called such a run "running" for 10 minutes
    dead = make_run(logs.parent / "other", "vgg16", "20260105-000000-dddd4444", status="running", epochs=74, age_s=5)
    assert report.load_run(dead)["status"] == "interrupted"


def test_suite_eval_figures_of_the_runs_own_data_join_its_row(logs, tmp_path):
    run = logs / "lenet5" / "20260101-000000-aaaa1111"
    (run / "eval.json").write_text(json.dumps({"digits": {"flip": {"accuracy": 0.935}, "none+precise_bn": {
        "accuracy": 0.9125}}, "mnist": {"none": {"accuracy": 0.5}}}))  # another data set: not this run's test
    rows = [report.load_run(d) for d in report.find_runs([logs / "lenet5"])]
    line = next(line for line in report.markdown(rows).splitlines() if run.name in line)
    assert "93.50 % (flip), 91.25 % (none+precise_bn)" in line and "50.00 %" not in line
    out = list(csv.DictReader(io.StringIO(report.to_csv(rows))))
    assert json.loads(out[0]["eval"]) == {"flip": 0.935, "none+precise_bn": 0.9125} and out[1]["eval"] == ""
    (run / "eval.json").write_text("{not json")  # damaged: the row stays, without it
    assert report.load_run(run)["eval"] == {}


def test_csv_has_raw_numbers(logs, tmp_path):
    rows = [report.load_run(d) for d in report.find_runs([logs / "lenet5"])]
    out = list(csv.DictReader(io.StringIO(report.to_csv(rows))))
    assert len(out) == 2 and out[0]["experiment"] == "lenet5"
    assert float(out[0]["test_accuracy"]) == pytest.approx(0.91)
    assert float(out[0]["reference_accuracy"]) == pytest.approx(0.9905) and out[0]["reference_data"] == "mnist"
    assert out[0]["status"] == "complete" and out[0]["params"] == "61706" and out[1]["epochs_planned"] == "8"


def test_plots_per_run_and_combined(logs):
    from PIL import Image

    rows = report.report([logs], echo=lambda *a: None)
    for r in rows:
        png = r["dir"] / report.PLOT_NAME
        assert png.is_file() == bool(r["history"].get("loss")), r["dir"]
    img = Image.open(logs / "lenet5" / "20260101-000000-aaaa1111" / report.PLOT_NAME)
    assert img.size[0] > 800 and img.size[1] > 300
    combined = logs / report.COMBINED_NAME  # the folder above all the runs
    assert combined.is_file() and Image.open(combined).size[0] > 800


def test_single_run_gets_no_combined_plot_unless_asked(logs, tmp_path):
    one = logs / "lenet5" / "20260101-000000-aaaa1111"
    report.report([one], echo=lambda *a: None)
    assert (one / report.PLOT_NAME).is_file() and not (one / report.COMBINED_NAME).exists()
    report.report([one], combined=tmp_path / "c.png", plots=True, echo=lambda *a: None)
    assert (tmp_path / "c.png").is_file()


def test_cli_report_prints_table_writes_csv(logs, tmp_path):
    p = run_cli("report", logs, "--csv", tmp_path / "r.csv", "--no-plots")
    assert p.returncode == 0, p.stderr[-2000:]
    header = p.stdout.splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == list(report.COLUMNS)
    assert "99.05 % (mnist)" in p.stdout
    assert (tmp_path / "r.csv").read_text().startswith("experiment,network,data,params")
    assert not list(logs.rglob("*.png"))


def test_report_takes_logdir_as_run_and_board_do(logs, capsys):
    from suite import cli

    assert cli.main(["report", "--logdir", str(logs), "--no-plots"]) == 0
    by_logdir = capsys.readouterr().out
    assert cli.main(["report", str(logs), "--no-plots"]) == 0
    assert by_logdir == capsys.readouterr().out and "99.05 % (mnist)" in by_logdir


def test_missing_or_empty_paths_are_user_errors(tmp_path):
    from suite.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        report.report([tmp_path / "nowhere"], echo=lambda *a: None)
    with pytest.raises(UserError, match="no runs under"):
        report.report([tmp_path], echo=lambda *a: None)


def test_real_run_curves_from_events(tmp_path):
    from suite import config, runner

    cfg = config.resolve("lenet5", ["train.verbose=0", "data.limit=256"], {"log.dir": str(tmp_path), "train.epochs": 2})
    res = runner.run(cfg, echo=lambda *a: None)
    (row,) = report.report([tmp_path], echo=lambda *a: None)
    assert row["status"] == "complete" and row["epochs_done"] == 2
    assert row["test_accuracy"] == res["test"]["accuracy"] and row["params"] == res["params"]
    assert row["reference_accuracy"] == pytest.approx(cfg["experiment"]["reference_accuracy"] or 0) or \
        row["reference_accuracy"] is None
    h = row["history"]  # read back from the TensorBoard events: the same numbers as results.json
    for k in ("loss", "accuracy", "val_accuracy", "learning_rate"):
        assert h[k] == pytest.approx(res["history"][k], rel=1e-5), k
    assert (pathlib.Path(res["run_dir"]) / report.PLOT_NAME).is_file()
