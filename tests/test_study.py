"""`python -m suite study`: the study file schema and its errors, the verdict logic on synthetic numbers, every
shipped study resolving, resume of a half-finished study, a tiny end-to-end study with identical arms, and kill -9
of a study mid-run, then the same command."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cli_here
from suite.errors import UserError
from suite.studies import report, spec, study, verdict

TINY = '''
[study]
question = "Are two identical arms different?"
claim = "a > b, a ~ b"
source = "a test"
base = "lenet5_modern"
seeds = [0, 1]
metric = "test_accuracy"
margin = 0.5

[study.set]
"train.epochs" = 1
"data.limit" = 200
"log.checkpoints" = false

[arms.a]
"train.lr" = 0.01
[arms.b]
"train.lr" = 0.01
'''


main = cli_here  # the CLI in this process: (exit status, stdout, stderr)


# ------------------------------------------------------------------------------------------------ verdicts

def test_clear_win_clear_loss_and_no_difference():
    hi, lo = [0.91, 0.92, 0.90], [0.71, 0.70, 0.73]
    assert verdict.compare(hi, lo, ">")["verdict"] == "supported"
    assert verdict.compare(lo, hi, ">")["verdict"] == "contradicted"
    assert verdict.compare(lo, hi, "<")["verdict"] == "supported"
    assert verdict.compare(hi, lo, "<")["verdict"] == "contradicted"
    same = verdict.compare(hi, list(hi), ">")
    assert same["verdict"] == "inconclusive" and same["difference"] == 0 and same["p"] == pytest.approx(1.0)
    assert verdict.compare(hi, [0.905, 0.915, 0.905], "~", margin=0.05)["verdict"] == "supported"
    assert verdict.compare(hi, lo, "~", margin=0.05)["verdict"] == "contradicted"
    noisy = verdict.compare([0.9, 0.5, 0.7], [0.6, 0.8, 0.75], ">")
    assert noisy["verdict"] == "inconclusive" and noisy["ci"][0] < 0 < noisy["ci"][1]


def test_exact_constants_small_samples_and_diverged_arms():
    assert verdict.compare([1000] * 3, [5000] * 3, "<")["verdict"] == "supported"  # parameter counts
    assert verdict.compare([1000] * 3, [1000] * 3, ">")["verdict"] == "contradicted"  # equal is not greater
    assert verdict.compare([1000] * 3, [1000] * 3, "~", margin=0)["verdict"] == "supported"
    assert verdict.compare([0.9], [0.5], ">")["verdict"] == "inconclusive"  # one seed: no test
    assert verdict.compare([0.9, 0.8], [None, float("nan")], ">")["verdict"] == "inconclusive"  # all diverged
    overall, parts = verdict.judge([("a", ">", "b"), ("a", "~", "c")],
                                   {"a": [0.9, 0.91, 0.92], "b": [0.5, 0.52, 0.49], "c": [0.2, 0.9, 0.5]})
    assert [p["verdict"] for p in parts] == ["supported", "inconclusive"] and overall == "inconclusive"
    overall, _ = verdict.judge([("b", ">", "a")], {"a": [0.9, 0.91, 0.92], "b": [0.5, 0.52, 0.49]})
    assert overall == "contradicted"


def test_training_loss_leaves_out_the_auxiliary_classifiers():
    # GoogLeNet's "loss" = main + 0.3 × (aux1 + aux2) + penalty: a study compares the main one (+ penalty) only
    hist = {"loss": [2.0, 1.3], "predictions_loss": [1.0, 0.5], "aux1_predictions_loss": [2.0, 1.5],
            "aux2_predictions_loss": [1.0, 0.5], "predictions_accuracy": [0.5, 0.8]}
    f = study.figures({"status": "complete", "test": {"accuracy": 0.75}}, hist)
    assert f["final_train_loss"] == pytest.approx(1.3 - 0.3 * 2.0)
    assert f["final_train_accuracy"] == 0.8 and f["generalisation_gap"] == pytest.approx(0.05)
    assert study.main_loss({"loss": [2.0, None]}) == [2.0, None]  # one output: Keras' loss as it is
    assert study.main_loss({**hist, "loss": [None, 1.3]}) == [None, pytest.approx(0.7)]


# ------------------------------------------------------------------------------------------ study files

def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('claim = "a > b, a ~ b"', 'claim = "a > c"'), "names arm 'c'"),
    (lambda t: t.replace('claim = "a > b, a ~ b"', 'claim = "a >> b"'), "must compare two arms"),
    (lambda t: t.replace('claim = "a > b, a ~ b"', 'claim = "a > a"'), "with itself"),
    (lambda t: t.replace('metric = "test_accuracy"', 'metric = "accuracy"'), "study.metric"),
    (lambda t: t.replace('source = "a test"', 'sauce = "a test"'), "unknown key study.sauce (did you mean source"),
    (lambda t: t.replace("seeds = [0, 1]", "seeds = [1, 1]"), "study.seeds"),
    (lambda t: t.replace("margin = 0.5", "margin = -1"), "study.margin"),
    (lambda t: t.replace('metric = "test_accuracy"', 'metric = "epochs_to_target"'), "needs study.target"),
    (lambda t: t.split("[arms.b]")[0], "at least two"),
    (lambda t: t + "\n[arm.c]\n", "unknown table [arm]"),
    (lambda t: t.replace("[arms.b]", '[arms."b c"]').replace("a > b, a ~ b", "a > a2"), "arm name 'b c'"),
    (lambda t: t + "x = = 1\n", "not valid TOML"),
])
def test_bad_study_files_are_one_line_errors(tmp_path, edit, message):
    rc, out, err = main("study", _write(tmp_path, edit(TINY)), "--logdir", tmp_path / "logs")
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "logs").exists()


def test_a_bad_setting_in_one_arm_stops_before_any_training(tmp_path):
    text = TINY.replace('[arms.b]\n"train.lr" = 0.01', '[arms.b]\n"train.lrr" = 0.01')
    rc, _, err = main("study", _write(tmp_path, text), "--logdir", tmp_path / "logs")
    assert rc == 2 and "arm b" in err and "train.lrr" in err and "did you mean lr" in err
    assert not (tmp_path / "logs").exists()  # arm a was not trained either
    rc, _, err = main("study", "no_such_study")
    assert rc == 2 and "unknown study 'no_such_study'" in err


def test_every_shipped_study_loads_and_resolves():
    found = spec.studies()
    assert len(found) >= 15, sorted(found)
    for name, (_, path) in found.items():
        s = spec.load(path)
        assert s.question.endswith("?") and s.source, name
        _, runs = study.plan(s, s.seeds)  # every arm × seed resolves to a valid config
        assert len(runs) == len(s.arms) * len(s.seeds) and len(s.seeds) >= 3, name
        cfgs = {a: spec.arm_config(s, a, 0) for a in s.arms}
        assert len({json.dumps(c, sort_keys=True) for c in cfgs.values()}) == len(cfgs), f"{name}: identical arms"
        for a in s.arms:  # --full (the GPU's recipe) resolves too, so a bad [study.full] fails here, not there
            assert spec.arm_config(s, a, 0, full=True)["data"]["name"] != "digits" or not s.full, (name, a)
    rc, out, _ = main("study", "--list")
    lines = out.strip().splitlines()
    assert rc == 0 and lines[0].split()[:2] == ["study", "runs"] and len(lines) == len(found) + 2  # header, rule


def test_study_list_says_what_each_study_costs_quick_and_with_full(tmp_path, monkeypatch):
    # runs (arms × seeds), the networks and the data and epochs of both recipes, from the files; a user's study is
    # marked and a broken one named in its row without hiding the others
    (tmp_path / "experiments" / "studies").mkdir(parents=True)
    (tmp_path / "experiments" / "studies" / "mine.toml").write_text(
        TINY + '[arms.c]\n"train.epochs" = 3\n[study.full]\n"data.name" = "mnist"\n')
    (tmp_path / "experiments" / "studies" / "bad.toml").write_text("[study\n")
    monkeypatch.chdir(tmp_path)
    rc, out, _ = main("study", "--list")
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert rc == 0 and len(rows) == len(spec.studies()), out
    assert rows["mine"].split("  ")[0] == "mine [yours]", rows["mine"]
    cells = [c.strip() for c in rows["mine"].split("  ") if c.strip()]
    assert cells[1:5] == ["6", "lenet5_modern", "digits, 1–3 ep", "mnist, 1–3 ep"], cells
    assert "(broken: " in rows["bad"] and "not valid TOML" in rows["bad"], rows["bad"]
    lenet = spec.load("lenet")
    epochs = spec.arm_config(lenet, "classic", 0)["train"]["epochs"]
    assert f" {len(lenet.arms) * len(lenet.seeds)}  lenet5/lenet5_modern/exercise2_cnn  digits, {epochs} ep" in \
        rows["lenet"], rows["lenet"]
    # arms of one network that differ in depth show the depths, or vgg_depth's row would name only VGG-11
    vgg = spec.load("vgg_depth")
    depths = "/".join(str(spec.arm_config(vgg, arm, 0)["model"]["depth"]) for arm in vgg.arms)
    assert f"  {spec.arm_config(vgg, 'vgg11', 0)['model']['name']} depth {depths}  " in rows["vgg_depth"], \
        rows["vgg_depth"]
    head = spec.load("head")  # arms of one depth: the name alone (read from the cell, not the question's words)
    cell = [c.strip() for c in rows["head"].split("  ") if c.strip()][2]
    assert depths == "11/19" and cell == spec.arm_config(head, next(iter(head.arms)), 0)["model"]["name"], cell


SHAPES = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10), "cifar10": ((32, 32, 3), 10)}  # the sets studies use
BUILT = set()  # (network settings, shape, classes) built already: many arms share a base network and its data


def test_every_shipped_study_arm_builds_for_its_data():
    # Resolving (above) checks the settings; this builds each arm's network for its data set's images, as `run`
    # would, so an arm that cannot take them fails here and not after hours of other runs. The --full recipes
    # (a GPU's) are built by the GPU pre-flight, tests/test_gpu_settings.py.
    build_every_arm(full=False)


def build_every_arm(full):
    import keras

    from suite import runner, show

    for name, (_, path) in spec.studies().items():
        s = spec.load(path)
        for arm in (s.arms if s.full or not full else []):
            cfg = spec.arm_config(s, arm, 0, full=full)
            d = cfg["data"]
            (h, w, c), n = SHAPES[d["name"]]
            shape = (*(d["image_size"] or (h, w)), d["channels"] or c)
            key = (json.dumps(cfg["model"], sort_keys=True), shape, n)
            if key in BUILT:
                continue
            BUILT.add(key)
            try:
                model = show.build(cfg, shape, n)
                runner.check_shapes(model, cfg["model"]["name"], shape)
            except UserError as e:
                pytest.fail(f"study {name}, arm {arm}{' (--full)' if full else ''}: {e}")
            assert model.outputs[0].shape[-1] == n, (name, arm)
            keras.backend.clear_session()


# ------------------------------------------------------------------------------------------ end to end

def test_identical_arms_report_and_resume(tmp_path):
    path = _write(tmp_path, TINY, "twins.toml")
    logs = tmp_path / "logs"
    rc, out, err = main("study", path, "--logdir", logs)
    assert rc == 0, err
    root = logs / "studies" / "twins"
    s = json.loads((root / "study.json").read_text())
    a, b = s["values"]["a"], s["values"]["b"]
    assert a == pytest.approx(b, abs=0.02)  # same settings, same seeds
    by = {p["comparison"]: p["verdict"] for p in s["comparisons"]}
    assert by["a > b"] != "supported" and by["a ~ b"] == "supported"  # identical arms: no difference
    assert (root / "report.md").read_text().startswith("# Study `twins`") and (root / "study.png").stat().st_size
    assert "## Verdict:" in out and out.count("trained") == 4
    # The setting line gives only what every arm shares: arms that differ in batch leave the batch to their own list
    setting = next(l for l in (root / "report.md").read_text().splitlines() if l.startswith("**Setting.**"))
    cfg = json.loads(next(root.glob("a/seed-*/config.json")).read_text())
    assert f"on {cfg['data']['name']}, 1 epochs, batch {cfg['train']['batch_size']};" in setting, setting
    two = spec.load(_write(tmp_path, TINY.replace('[arms.b]\n', '[arms.b]\n"train.batch_size" = 7\n'), "two.toml"))
    setting = next(l for l in report.markdown(two, s, root, cfg).splitlines() if l.startswith("**Setting.**"))
    assert f"on {cfg['data']['name']}, 1 epochs;" in setting and "`train.batch_size = 7`" in setting, setting

    # half-finished: one run lost its results (killed before the end), another never started
    runs = sorted(root.glob("*/seed-*"))
    assert len(runs) == 4
    (runs[0] / "results.json").unlink()
    shutil.rmtree(runs[1])
    rc, out, err = main("study", path, "--logdir", logs)
    assert rc == 0, err
    assert out.count("done earlier") == 2 and out.count("resumed") == 1 and out.count("trained") == 1  # no rework
    assert len(sorted(root.glob("*/seed-*"))) == 4

    # --seeds adds seeds; a changed setting makes new runs beside the old ones
    rc, out, _ = main("study", path, "--logdir", logs, "--seeds", "3", "--set", "train.epochs=1")
    assert rc == 0 and out.count("done earlier") == 4 and out.count("trained") == 2


def test_kill_9_mid_study_then_the_same_command_trains_only_what_is_missing(tmp_path):
    from suite.commits import committed

    path = _write(tmp_path, TINY.replace('"train.epochs" = 1', '"train.epochs" = 2'), "killed.toml")
    logs = tmp_path / "logs"
    root = logs / "studies" / "killed"
    p = subprocess.Popen([sys.executable, "-m", "suite", "study", path, "--logdir", logs], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while True:  # SIGKILL once a run has finished and another one has committed its first epoch, not finished
        assert p.poll() is None, "the study finished before it could be killed:\n" + p.stdout.read()[-3000:]
        assert time.time() - t0 < 300, "no run started in time"
        runs = list(root.glob("*/seed-*"))
        done = [d for d in runs if (d / "results.json").is_file()]
        running = [d for d in runs if not (d / "results.json").exists()
                   and ((committed(d / "backup") or {}).get("epoch") or 0) >= 1]
        if done and running:
            p.send_signal(signal.SIGKILL)
            p.wait()
            break
        time.sleep(0.05)
    finished = {d: (d / "results.json").stat().st_mtime_ns for d in done}
    assert len(finished) < 4 and not (root / "study.json").exists()
    rc, out, _ = main("list", "--runs", "--logdir", logs)  # a study's runs are listed like any run, with their state
    states = {line.split()[1]: line.split()[0] for line in out.splitlines()}
    assert rc == 0 and states == {**{str(d): "complete" for d in runs if d in done},
                                  **{str(d): "incomplete" for d in runs if d not in done}}, out

    rc, out, err = main("study", path, "--logdir", logs)  # the same command, in this process (no TF start-up)
    assert rc == 0, out[-3000:] + err[-3000:]
    assert out.count("done earlier") == len(finished) and out.count("resumed") == 1, out
    assert out.count("trained") == 4 - len(finished) - 1, out
    runs = sorted(root.glob("*/seed-*"))
    assert len(runs) == 4, runs  # the interrupted run was continued in its directory, not started beside it
    for d, mtime in finished.items():
        assert (d / "results.json").stat().st_mtime_ns == mtime, f"{d} was trained again"
    for d in runs:  # each run trained its 2 epochs once: the resumed one did not start over or add epochs
        res = json.loads((d / "results.json").read_text())
        assert res["status"] == "complete" and len(res["history"]["loss"]) == 2, (d, res["history"])
        if d == running[0]:  # continued from its last commit
            assert res["resumed"] and res["resumed_from_epoch"] >= 1, res
    assert running[0] in runs and f"{running[0]}" in next(line for line in out.splitlines() if "resumed" in line)
    s = json.loads((root / "study.json").read_text())
    assert set(s["values"]) == {"a", "b"} and all(len(v) == 2 for v in s["values"].values()), s["values"]


def test_dilated_arms_get_their_coverage_maps(tmp_path):
    text = """
[study]
question = "Gridding?"
claim = "hdc > gridding"
base = "dilated_hdc"
seeds = [0]
[study.set]
"data.name" = "digits"
"data.limit" = 100
"train.epochs" = 1
"model.width" = 0.125
"model.repeats" = 1
"model.stem" = "small"
[arms.gridding]
"model.rates" = [2, 4, 6]
[arms.hdc]
"model.rates" = [1, 2, 5]
"""
    rc, out, err = main("study", _write(tmp_path, text, "grid.toml"), "--logdir", tmp_path / "logs")
    assert rc == 0, err
    root = tmp_path / "logs" / "studies" / "grid"
    cov = json.loads((root / "study.json").read_text())["coverage"]
    assert cov["gridding"] < 0.5 and cov["hdc"] == 1.0  # one repeat of [2,4,6] leaves holes; HDC covers all
    assert (root / "coverage-gridding.png").is_file() and "coverage-hdc.png" in out
    assert json.loads((root / "study.json").read_text())["verdict"] == "inconclusive"  # one seed: no verdict


def test_workers_share_the_runs_then_one_report(tmp_path, capfd):
    """--workers 2: two processes train one run each (their own GPUs, were there any); the command's own process
    (this one here) then reads both back and writes the one report."""
    from suite import cli

    path = _write(tmp_path, TINY, "shared.toml")
    logs = tmp_path / "logs"
    capfd.readouterr()
    rc = cli.main(["study", str(path), "--seeds", "1", "--workers", "2", "--logdir", str(logs)])
    out, err = capfd.readouterr()  # the workers write to the file descriptors they inherit
    assert rc == 0, out[-2000:] + err[-2000:]
    lines = out.splitlines()
    assert sum("worker 0:" in ln or "worker 1:" in ln for ln in lines) == 2
    assert sum("[1/1]" in ln and "· trained" in ln for ln in lines) == 2, out  # one run in each worker
    assert sum("· done earlier" in ln for ln in lines) == 2, out  # read back by the command's process
    assert (logs / "studies" / "shared" / "report.md").is_file()
    assert len(list((logs / "studies" / "shared").glob("*/seed-0-*/results.json"))) == 2
