"""benchmarks/gpu_carry.py and benchmarks/gpu_session.sh: what a GPU call sends back fits the device tool's limits,
and a run cut in one session resumes in the next from what came back."""

import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_carry  # noqa: E402


def _run(logs, name, *, finished, commits=(), size=1000):
    d = logs / "net" / name
    (d / "train").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"log": {"dir": str(logs)}}))
    (d / "train" / "events.out.tfevents.1.v2").write_bytes(b"e" * 100)
    (d / "best.keras").write_bytes(os.urandom(size))
    (d / "last.keras").write_bytes(b"last")
    if finished:
        (d / "results.json").write_text("{}")
    for c in commits:
        (d / "backup" / c).mkdir(parents=True)
        (d / "backup" / c / "backup.weights.h5").write_bytes(os.urandom(size))
        (d / "backup" / c / "state.json").write_text(c)
    return d


def _names(pieces):
    with gpu_carry._open(pieces) as tar:
        return sorted(tar.getnames())


def test_pack_sends_back_the_results_and_the_newest_commit_of_each_unfinished_run(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    (logs / "_text").mkdir(parents=True)
    (logs / "_text" / "session.log").write_text("device: x\n")
    (logs / "_text" / "rows.md").write_text("| row |\n")
    (logs / "_text" / "bench.json").write_text("{}")
    _run(logs, "done", finished=True)
    _run(logs, "cut", finished=False,
         commits=("epoch-00002", "epoch-00002-step-0000030", ".tmp-3-1", "damaged-epoch-00001"))
    notes = gpu_carry.pack(logs, out, echo=lambda s: None)

    assert sorted(p.name for p in out.iterdir()) == ["results.tgz", "rows.md", "session.log", "state.tgz.0"]
    with tarfile.open(out / "results.tgz") as tar:
        assert sorted(tar.getnames()) == ["_text/bench.json", "_text/rows.md", "_text/session.log",
                                          "net/done/config.json", "net/done/results.json",
                                          "net/done/train/events.out.tfevents.1.v2"]
    # the newest commit only (the order callbacks._commits resumes from), no last.keras; the finished run's
    # results.json and config.json, so that the next machine skips it
    newest = "net/cut/backup/epoch-00002-step-0000030"
    assert _names([out / "state.tgz.0"]) == [
        f"{newest}/backup.weights.h5", f"{newest}/state.json", "net/cut/best.keras", "net/cut/config.json", "net/cut/train/events.out.tfevents.1.v2",
        "net/done/config.json", "net/done/results.json"]
    assert "net/cut: state carried (epoch-00002-step-0000030)" in notes
    assert "carry: net/cut: state carried" in (out / "session.log").read_text()


def test_newest_commit_is_the_one_the_backup_resumes_from(tmp_path):
    from suite import callbacks

    run = _run(tmp_path, "r", finished=False, commits=("epoch-00009", "epoch-00010", "epoch-00010-step-0000002",
                                                         "epoch-00010-step-0000010", "epoch-x"))
    assert gpu_carry._newest_commit(run) == callbacks._commits(run / "backup")[0][1]


def test_state_in_pieces_within_the_limits_and_a_run_too_big_stays_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_carry, "PIECE", 40_000)
    monkeypatch.setattr(gpu_carry, "STATE_MAX", 150_000)
    logs, out = tmp_path / "logs", tmp_path / "out"
    a = _run(logs, "a", finished=False, commits=("epoch-00001",), size=45_000)  # ~90 kB of random bytes
    b = _run(logs, "b", finished=False, commits=("epoch-00001",), size=45_000)  # with a: over STATE_MAX
    os.utime(a / "backup/epoch-00001", (2e9, 2e9))  # a committed last: it goes first
    os.utime(b / "backup/epoch-00001", (1e9, 1e9))
    notes = gpu_carry.pack(logs, out, echo=lambda s: None)
    pieces = sorted(out.glob("state.tgz.*"))
    assert [p.name for p in pieces] == ["state.tgz.0", "state.tgz.1", "state.tgz.2"]
    assert all(p.stat().st_size <= 40_000 for p in pieces)
    assert {n.split("/")[1] for n in _names(pieces)} == {"a"}
    assert any(n.startswith("net/b: not carried") for n in notes), notes

    (logs / "net" / "a").rename(tmp_path / "a-old")  # a fresh machine at the same path
    assert gpu_carry.restore(out, logs, echo=lambda s: None) == [("net", "a")]
    assert (logs / "net/a/backup/epoch-00001/backup.weights.h5").read_bytes() == \
        (tmp_path / "a-old/backup/epoch-00001/backup.weights.h5").read_bytes()


def test_restore_keeps_what_the_machine_has_and_refuses_another_log_dir(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    run = _run(logs, "a", finished=False, commits=("epoch-00001",))
    gpu_carry.pack(logs, out, echo=lambda s: None)
    said = []
    (run / "best.keras").write_bytes(b"newer")
    assert gpu_carry.restore(out, logs, echo=said.append) == []
    assert (run / "best.keras").read_bytes() == b"newer" and "this machine has it already" in said[0]
    said.clear()
    assert gpu_carry.restore(out, tmp_path / "elsewhere", echo=said.append) == []
    assert f"made with LOGS={logs}" in said[0] and not (tmp_path / "elsewhere" / "net").exists()


def test_collect_replaces_the_state_only_after_a_call_that_packed(tmp_path):
    root, logs, out = tmp_path / "repo", tmp_path / "logs", tmp_path / "out"
    state = root / ".devcarry" / "state"
    state.mkdir(parents=True)
    (state / "state.tgz.0").write_bytes(b"earlier")
    out.mkdir()
    (out / "session.log").write_text("killed before the pack\n")
    said = []
    assert gpu_carry.collect(out, root, echo=said.append) is None
    assert (state / "state.tgz.0").read_bytes() == b"earlier" and "left as it was" in said[0]

    _run(logs, "done", finished=True)
    gpu_carry.pack(logs, out, echo=lambda s: None)
    dest = gpu_carry.collect(out, root, echo=lambda s: None)
    assert (dest / "net/done/results.json").is_file()
    assert _names(sorted(state.glob("state.tgz.*"))) == ["net/done/config.json", "net/done/results.json"]

    (out / "state.tgz.0").rename(out / "state.tgz.1")  # a piece lost on the way: refused, state kept
    before = (state / "state.tgz.0").read_bytes()
    with pytest.raises(SystemExit, match="not numbered"):
        gpu_carry.collect(out, root, echo=lambda s: None)
    assert (state / "state.tgz.0").read_bytes() == before


def test_check_refuses_what_the_device_tool_would_not_give_back(tmp_path):
    for i in range(9):
        (tmp_path / f"f{i}").write_text("x")
    with pytest.raises(SystemExit, match="9 files"):
        gpu_carry.check(tmp_path)
    for i in range(2, 9):
        (tmp_path / f"f{i}").unlink()
    (tmp_path / "a/b/c").mkdir(parents=True)
    (tmp_path / "a/b/c/deep").write_text("x")
    with pytest.raises(SystemExit, match="deep"):
        gpu_carry.check(tmp_path)


def _session(tmp_path, logs, out, state, parts=("exp:lenet5",), **env):
    """benchmarks/gpu_session.sh PARTS on digits, as a GPU call would run it (EXTRA makes it small)."""
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}", "OUT": str(out),
           "LOGS": str(logs), "STATE": str(state), "BUDGET": "500", "JAX_PLATFORMS": "cpu",
           "EXTRA": "--data digits --epochs 2 --set data.limit=600 --set train.steps_per_execution=1", **env}
    p = subprocess.run(["bash", "benchmarks/gpu_session.sh", *parts], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    text = (logs / "_text" / "lenet5.txt").read_text() if (logs / "_text" / "lenet5.txt").exists() else ""
    return p.stdout + p.stderr, text


def test_a_run_cut_on_one_machine_resumes_on_the_next_from_what_came_back(tmp_path):
    logs, root = tmp_path / "suite-logs", tmp_path / "repo"
    state = root / ".devcarry" / "state"
    # call 1: SIGTERM after the 7th step (2 epochs of 5), as the budget's timeout sends it
    said, log = _session(tmp_path, logs, tmp_path / "out1", state, SUITE_FAULT="step:7:term")
    assert "stopped by SIGTERM in epoch 2" in log, said + log
    gpu_carry.check(tmp_path / "out1")
    gpu_carry.collect(tmp_path / "out1", root, echo=lambda s: None)
    (run,) = [n.split("/")[1] for n in _names(sorted(state.glob("state.tgz.*"))) if n.endswith("config.json")]

    logs.rename(tmp_path / "machine1")  # the next session's machine starts bare, at the same path
    said, log = _session(tmp_path, logs, tmp_path / "out2", state)
    assert f"lenet5/{run}: restored" in said, said
    assert f"resuming {logs}/lenet5/{run} after batch" in log and "of epoch 2 of 2" in log, said + log
    rows = (tmp_path / "out2" / "rows.md").read_text()
    assert "| lenet5 | digits |" in rows and "1 resumed" in rows, said
    gpu_carry.collect(tmp_path / "out2", root, echo=lambda s: None)

    # a third call skips the finished run and still gives its row; a variant has a folder and a row of its own
    logs.rename(tmp_path / "machine2")
    said, log = _session(tmp_path, logs, tmp_path / "out3", state, parts=("exp:lenet5", "exp:lenet5:train.seed=1"))
    assert "lenet5: finished earlier, kept" in said and log == "", said
    first, variant = (tmp_path / "out3" / "rows.md").read_text().splitlines()
    assert first + "\n" == rows
    assert variant.startswith("| lenet5__train.seed_1 | digits |") and "1 resumed" not in variant, said
    assert "`python -m suite run lenet5 --set train.seed=1 --set experiment.name=lenet5__train.seed_1 --data digits" \
        in variant
    (run,) = (logs / "lenet5__train.seed_1").iterdir()
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 1
