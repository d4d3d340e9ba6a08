"""`python -m suite tune`: search space from [tune], trials through the runner, HParams, best.toml, divergence,
resume after kill -9 (hyperband, grid), and keras-tuner's distributed mode with 2 workers on loopback: kill -9 of a
worker (started again, its trial finished once), of the chief (its worker stops; the command resumes), and a worker
that dies at every start (given up after a few tries)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from conftest import ROOT, cli_here


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


def test_a_chief_killed_between_the_two_saves_of_end_trial_does_not_retry_the_ended_trial(tmp_path):
    """keras-tuner's end_trial saves oracle.json with the trial in end_order but still in ongoing_trials; a kill
    before our second save left that on disk, and the reload retried the trial and ended it twice (seen in CI)."""
    import keras_tuner as kt

    from suite.tune import tuner

    def oracle():
        o = tuner.RandomOracle(hyperparameters=kt.HyperParameters(), max_trials=3, seed=0,
                               objective=kt.Objective("val_accuracy", "max"))
        o.hyperparameters.Float("lr", 0.01, 0.1)
        o._set_project_dir(str(tmp_path), "p")
        return o

    first = oracle()
    trial = first.create_trial("chief")
    first.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = kt.engine.trial.TrialStatus.COMPLETED
    kt.oracles.RandomSearchOracle.end_trial(first, trial)  # keras-tuner's own, without our save after it: the kill
    state = json.loads((tmp_path / "p" / "oracle.json").read_text())
    assert state["end_order"] == [trial.trial_id] and state["ongoing_trials"]  # the state a kill left
    again = oracle()
    again.reload()
    assert again._retry_queue == [] and again.end_order == [trial.trial_id]
    assert again.create_trial("chief").trial_id != trial.trial_id  # the search goes on to a new trial


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
    code, out, _ = cli_here("list", "--runs", "--logdir", tmp_path / "logs")  # every trial is a run `list` shows
    assert code == 0 and sorted(line.split()[0] for line in out.splitlines()) == ["complete", "complete", "diverged"]
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

def _cli(*args, env=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "suite", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _kill_mid_trial(proc, root, timeout=300, worker=False):
    """SIGKILL once a trial has finished and another one is training (its run directory written, no results):
    the command's process, or with worker=True the worker process training that trial (its pid from the trial's
    "start" event). Returns (study dir, {finished trial: its tune.json's mtime}, the killed trial's directory
    name, the killed pid)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail("the search finished before it could be killed:\n" + proc.stdout.read()[-3000:])
        for sdir in root.glob("tune-*"):
            done = list(sdir.glob("trial_*/tune.json"))
            running = [d for d in sdir.glob("trial_*") if (d / "config.json").is_file() and not (d / "tune.json").exists()
                       and not (d / "results.json").exists()]
            if done and running:
                name = running[0].name
                if worker:
                    pid = [e["pid"] for e in events(sdir)
                           if e["event"] == "start" and e["trial"] == name.removeprefix("trial_")][-1]
                    os.kill(pid, signal.SIGKILL)
                else:
                    pid = proc.pid
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                return sdir, {p.parent.name: p.stat().st_mtime_ns for p in done}, name, pid
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no trial started in time")


def _children(pid):
    """The pids whose parent is `pid` (Linux /proc)."""
    out = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid):
    """Whether `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def _finished_once(sdir, finished, killed, n_trials):
    """After the resumed search: every trial ended once, complete; finished ones were not touched again; the killed
    one was started twice (killed, then continued) and ended once."""
    for name, mtime in finished.items():
        assert (sdir / name / "tune.json").stat().st_mtime_ns == mtime, f"{name} was redone"
    counts = ends(sdir)
    assert sorted(counts) == [f"{i}" for i in range(n_trials)] and set(counts.values()) == {1}, counts
    tid = killed.removeprefix("trial_")
    assert [e["status"] for e in events(sdir) if e["event"] == "end" and e["trial"] == tid] == ["complete"]
    assert json.loads((sdir / killed / "tune.json").read_text())["status"] == "complete"
    starts = [e for e in events(sdir) if e["event"] == "start" and e["trial"] == tid]
    assert len(starts) == 2, starts
    summary = json.loads((sdir / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["complete"] * n_trials, summary["trials"]
    oracle = json.loads((sdir / "oracle.json").read_text())
    assert not oracle["ongoing_trials"] and sorted(oracle["end_order"]) == sorted(counts), oracle
    return starts


@pytest.mark.parametrize("tuner, space, n_trials", [
    ("hyperband", "epochs = 3\nlr = [0.01, 0.1]\nbatch_size = [32, 64]", 6),
    # slow: the hyperband case covers the kill/resume, test_grid_search_divergence_hparams_best_toml_and_rerun grid
    pytest.param("grid", "epochs = 2\nlr = [0.02, 0.1]\nbatch_size = [32, 64]", 4, marks=pytest.mark.slow),
])
def test_kill_9_mid_trial_then_resume(tmp_path, capsys, tuner, space, n_trials):
    from suite import cli

    exp = write_exp(tmp_path, f'tuner = "{tuner}"\n{space}')
    sdir, finished, killed, _ = _kill_mid_trial(_cli("tune", exp), tmp_path / "logs" / "tiny")
    capsys.readouterr()
    code = cli.main(["tune", str(exp)])  # the same command again, in this process (no TensorFlow start-up)
    out, err = capsys.readouterr()
    assert code == 0, (out + err)[-3000:]
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

@pytest.mark.slow  # covered by test_kill_9_of_a_worker_mid_trial_..., a 2-worker search to the end with these checks
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


# --- kill -9 in distributed mode ----------------------------------------------------------------------------------

DIST = 'tuner = "random"\nmax_trials = 3\nepochs = 1\nlr = [0.01, 0.1]\nbatch_size = [32, 64]'


def test_kill_9_of_a_worker_mid_trial_it_is_started_again_and_finishes_the_trial(tmp_path):
    exp = write_exp(tmp_path, DIST)
    p = _cli("tune", exp, "--workers", "2")
    sdir, finished, killed, pid = _kill_mid_trial(p, tmp_path / "logs" / "tiny", worker=True)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    tid = killed.removeprefix("trial_")
    assert f"(pid {pid}) died in trial {tid} (exit status -9): starting it again" in out, out[-3000:]
    starts = _finished_once(sdir, finished, killed, 3)
    assert {e["tuner"] for e in events(sdir)} <= {"worker0", "worker1"} and "chief oracle on 127.0.0.1" in out, out
    # the same tuner id in a new process, and the trial's run directory was continued, not started afresh
    assert starts[0]["pid"] == pid != starts[1]["pid"] and starts[0]["tuner"] == starts[1]["tuner"], starts
    assert f"resuming {sdir / killed}" in out or f"restarting {sdir / killed}" in out, out[-3000:]
    assert json.loads((sdir / killed / "results.json").read_text())["resumed"]
    assert "not starting it again" not in out and "worker(s) exited with status" not in out


def test_kill_9_of_the_chief_its_workers_stop_and_the_command_resumes(tmp_path):
    # one worker: what stops a worker is the same for each, and a process start costs ~12 s here (the test above has 2)
    exp = write_exp(tmp_path, DIST)
    root = tmp_path / "logs" / "tiny"
    p = _cli("tune", exp, "--workers", "1")
    while not (workers := _children(p.pid)):  # started (it outlives a kill of the chief)
        assert p.poll() is None, p.stdout.read()[-3000:]
        time.sleep(0.05)
    try:
        sdir, finished, killed, _ = _kill_mid_trial(p, root)
        t0 = time.time()
        while any(_alive(w) for w in workers):
            assert time.time() - t0 < 10, f"workers {[w for w in workers if _alive(w)]} outlived their chief"
            time.sleep(0.1)
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        p.stdout.close()

    p = _cli("tune", exp, "--workers", "1")
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert "continuing" in out
    _finished_once(sdir, finished, killed, 3)


def test_a_worker_that_dies_at_every_start_is_given_up(tmp_path):
    from suite.tune.search import MAX_RESTARTS

    hook = tmp_path / "hook"  # a sitecustomize that kills every worker at start-up (not the chief)
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import os\nif os.environ.get('KERASTUNER_TUNER_ID', '').startswith("
                                           "'worker'):\n    os._exit(7)\n")
    exp = write_exp(tmp_path, DIST)
    p = _cli("tune", exp, "--workers", "1", env={"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"})
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 1, out[-3000:]
    assert out.count("worker0 (pid ") == out.count(": starting it again") == MAX_RESTARTS
    assert f"worker0 died {MAX_RESTARTS + 1} time(s) in a row before it had a trial (last exit status 7): " \
           "not starting it again" in out, out[-3000:]
    assert not list(study_dir(tmp_path).glob("trial_*"))
