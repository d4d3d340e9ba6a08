"""`python -m suite tune`: search space from [tune], trials through the runner, HParams, best.toml, divergence,
resume after kill -9 (hyperband, grid), and keras-tuner's distributed mode with 2 workers on loopback."""

import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from conftest import ROOT


def write_exp(tmp_path, tune, name="tiny", model="lenet5"):
    p = tmp_path / f"{name}.toml"
    p.write_text(f"""
[model]
name = "{model}"
[data]
limit = 160
[train]
epochs = 1
optimizer = "sgd"
verbose = 0
[log]
dir = "{tmp_path / 'logs'}"
[tune]
{tune}
""")
    return p


def study_dir(tmp_path, name="tiny"):
    dirs = [d for d in (tmp_path / "logs" / name).glob("tune-*") if ".old-" not in d.name]
    assert len(dirs) == 1, dirs
    return dirs[0]


def events(sdir):
    return [json.loads(line) for line in (sdir / "events.jsonl").read_text().splitlines()]


def ends(sdir):
    out = {}
    for e in events(sdir):
        if e["event"] == "end":
            out[e["trial"]] = out.get(e["trial"], 0) + 1
    return out


# --- search space ------------------------------------------------------------------------------------------------

def test_space_from_tune_table(tmp_path):
    from suite import config
    from suite.tune import space as tune

    cfg = config.resolve(str(write_exp(tmp_path, 'lr = [1e-3, 0.1]\nbatch_size = [32, 64]\nactivation = ["tanh", "relu"]'
                                               '\ndropout = [0.0, 0.5]')))
    params = {p.name: p for p in tune.space(cfg)}
    assert set(params) == {"lr", "batch_size", "activation", "dropout"}
    assert (params["lr"].lo, params["lr"].hi, params["lr"].sampling) == (1e-3, 0.1, "log")
    assert params["batch_size"].values == [32, 64] and params["activation"].values == ["tanh", "relu"]
    assert params["dropout"].sampling == "linear"
    assert params["lr"].grid() == [1e-3, 1e-2, 0.1]
    hp = tune.hyperparameters(list(params.values()))
    assert {h.name for h in hp.space} == set(params)
    t = tune.trial_config(cfg, list(params.values()), {"lr": 0.05, "batch_size": 64, "activation": "relu"}, 3)
    assert (t["train"]["lr"], t["train"]["batch_size"], t["model"]["activation"], t["train"]["epochs"]) == \
        (0.05, 64, "relu", 3)
    assert "tune" not in t


@pytest.mark.parametrize("setting, message", [
    ("tune.learning_rate=[0.1]", "unknown setting tune.learning_rate"),
    ("tune.depth=[2,3]", "lenet5 has no depth knob"),
    ('tune.optimizer=["sgd","sgdx"]', "sgdx"),
    ("tune.lr=[0.1,0.01]", "low must be below high"),
    ("tune.batch_size=[0,32]", "out of range"),
    ('tune.tuner="annealing"', "not one of"),
])
def test_bad_tune_settings_are_one_line_errors(tmp_path, setting, message):
    from suite import config
    from suite.tune import space as tune
    from suite.errors import UserError

    with pytest.raises(UserError, match=message):
        tune.space(config.resolve(str(write_exp(tmp_path, "")), [setting]))


def test_depth_maps_to_the_networks_knob_and_is_checked_before_the_search(tmp_path):
    from suite import config
    from suite.tune import space as tune
    from suite.errors import UserError

    # exercise2_cnn's depth is its number of conv-ReLU-maxpool blocks; at 8×8 with VALID 5×5 convs only 1 fits.
    cfg = config.resolve(str(write_exp(tmp_path, "lr = []\nbatch_size = []\ndepth = [1, 2, 3]",
                                       model="exercise2_cnn")), ["model.padding=same"])
    (p,) = tune.space(cfg)
    assert p.key == "model.conv_blocks" and p.values == [1, 2, 3]
    tune.check_input(cfg, [p])
    cfg = config.resolve(str(write_exp(tmp_path, "lr = []\nbatch_size = []\ndepth = [1, 2]",
                                       model="exercise2_cnn")))
    with pytest.raises(UserError, match="depth value 2 does not work for exercise2_cnn"):
        tune.check_input(cfg, tune.space(cfg))
    assert tune.depth_knob("vgg11") == "depth" and tune.depth_knob("resnet20") == "depth"
    assert tune.depth_knob("densenet_bc100") == "depth"


def test_toml_values_round_trip():
    from suite.tune.report import toml_value

    vals = {"a": 1e-05, "b": [1, 2], "c": "tanh \"q\" é", "d": True, "e": [], "f": 0.1, "g": [[1, 2], [3]]}
    text = "\n".join(f"{k} = {toml_value(v)}" for k, v in vals.items())
    assert tomllib.loads(text) == vals


# --- a whole search in-process -----------------------------------------------------------------------------------

def test_grid_search_divergence_hparams_best_toml_and_rerun(tmp_path, capsys):
    from suite import cli
    from suite.tune import search as tune_search

    exp = write_exp(tmp_path, 'tuner = "grid"\nepochs = 2\nlr = [0.01, 0.05, 3e38]\nbatch_size = [64]')
    lines = []
    assert tune_search.search(str(exp), echo=lines.append) == 0
    sdir = study_dir(tmp_path)
    summary = json.loads((sdir / "summary.json").read_text())
    status = {t["values"]["lr"]: t for t in summary["trials"]}
    assert len(status) == 3 and status[3e38]["status"] == "diverged", summary
    assert "inf" in status[3e38]["reason"] or "nan" in status[3e38]["reason"]
    assert status[0.01]["status"] == status[0.05]["status"] == "complete"
    assert any("DIVERGED" in line for line in lines)  # the one-line status per trial
    table = "\n".join(lines)
    assert "trial" in table and "val_accuracy" in table and "diverged" in table

    # every trial is an HParams session in its own directory, with its tuned values
    from tensorboard.plugins.hparams import metadata

    for t in summary["trials"]:
        tdir = sdir / f"trial_{t['trial']}"
        found = None
        import tensorflow as tf

        for f in tdir.glob("events.out.tfevents.*"):
            for ev in tf.compat.v1.train.summary_iterator(str(f)):
                for v in ev.summary.value:
                    if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME and \
                            v.tag == metadata.SESSION_START_INFO_TAG:
                        found = metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
        assert found is not None, f"no HParams session in {tdir}"
        assert set(found.hparams) >= {"lr", "batch_size", "epochs"}

    # the best configuration is an experiment file `suite run` accepts unchanged
    best = sdir / "best.toml"
    doc = tomllib.loads(best.read_text())
    assert doc["train"]["lr"] == summary["best"]["values"]["lr"] and doc["train"]["epochs"] == 2
    assert "tune" not in doc
    capsys.readouterr()
    assert cli.main(["run", str(best)]) == 0
    assert "test accuracy" in capsys.readouterr().out

    # the same command again: nothing is trained again
    n = len(events(sdir))
    assert tune_search.search(str(exp), echo=lines.append) == 0
    assert len(events(sdir)) == n


# --- kill -9 mid-trial, then the same command again -----------------------------------------------------------------

def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "suite", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _kill_mid_trial(proc, root, timeout=300):
    """SIGKILL once a trial has finished and another one is training (its run directory written, no results)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail("the search finished before it could be killed:\n" + proc.stdout.read()[-3000:])
        for sdir in root.glob("tune-*"):
            done = list(sdir.glob("trial_*/tune.json"))
            running = [d for d in sdir.glob("trial_*") if (d / "config.json").is_file() and not (d / "tune.json").exists()
                       and not (d / "results.json").exists()]
            if done and running:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return sdir, {p.parent.name: p.stat().st_mtime_ns for p in done}, running[0].name
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no trial started in time")


@pytest.mark.parametrize("tuner, space, n_trials", [
    ("hyperband", "epochs = 3\nlr = [0.01, 0.1]\nbatch_size = [32, 64]", 6),
    ("grid", "epochs = 2\nlr = [0.02, 0.1]\nbatch_size = [32, 64]", 4),
])
def test_kill_9_mid_trial_then_resume(tmp_path, tuner, space, n_trials):
    exp = write_exp(tmp_path, f'tuner = "{tuner}"\n{space}')
    sdir, finished, killed = _kill_mid_trial(_cli("tune", exp), tmp_path / "logs" / "tiny")
    p = _cli("tune", exp)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    assert "continuing" in out
    # no finished trial ran again: its record is untouched and it ended once
    for name, mtime in finished.items():
        assert (sdir / name / "tune.json").stat().st_mtime_ns == mtime, f"{name} was redone"
    counts = ends(sdir)
    assert all(c == 1 for c in counts.values()), counts
    starts = [e["trial"] for e in events(sdir) if e["event"] == "start"]
    assert starts.count(killed.removeprefix("trial_")) == 2  # the interrupted one, continued
    summary = json.loads((sdir / "summary.json").read_text())
    assert len(summary["trials"]) == n_trials and all(t["status"] == "complete" for t in summary["trials"])
    assert (sdir / "best.toml").is_file()
    oracle = json.loads((sdir / "oracle.json").read_text())
    assert not oracle["ongoing_trials"] and len(oracle["end_order"]) == n_trials


# --- distributed: a chief and 2 workers on 127.0.0.1 -----------------------------------------------------------------

def test_two_workers_on_loopback(tmp_path):
    exp = write_exp(tmp_path, 'tuner = "random"\nmax_trials = 4\nepochs = 1\nlr = [0.01, 0.1]\nbatch_size = [32, 64]')
    p = _cli("tune", exp, "--workers", "2")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    sdir = study_dir(tmp_path)
    counts = ends(sdir)
    assert sorted(counts) == ["0", "1", "2", "3"] and set(counts.values()) == {1}, counts
    runners = {e["tuner"] for e in events(sdir)}
    assert runners <= {"worker0", "worker1"} and runners, runners
    summary = json.loads((sdir / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["complete"] * 4
    assert "chief oracle on 127.0.0.1" in out


def test_bayesian_search_runs(tmp_path):
    from suite.tune import search as tune_search

    exp = write_exp(tmp_path, 'tuner = "bayesian"\nmax_trials = 2\nepochs = 1\nlr = [0.01, 0.1]\nbatch_size = [32, 64]')
    assert tune_search.search(str(exp), echo=lambda s: None) == 0
    summary = json.loads((study_dir(tmp_path) / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["complete", "complete"]
