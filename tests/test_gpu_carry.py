"""benchmarks/gpu_carry.py and benchmarks/gpu_session.sh: what a GPU call sends back fits the device tool's limits,
a state larger than one call can move comes back over several, and a run cut in one session resumes in the next
from what came back."""

import json
import os
import pathlib
import re
import shutil
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


def _ready(root):
    """The pieces collect keeps for the next session, in order, from its send-N folders."""
    return sorted((root / ".devstate" / "ready").rglob("state.tgz.*"), key=lambda p: int(p.suffix[1:]))


def test_pack_sends_back_the_results_and_the_newest_commit_of_each_unfinished_run(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    (logs / "_text").mkdir(parents=True)
    (logs / "_text" / "session.log").write_text("device: x\n")
    (logs / "_text" / "rows.md").write_text("| row |\n")
    (logs / "_text" / "bench.json").write_text("{}")
    _run(logs, "done", finished=True)
    _run(logs, "cut", finished=False,
         commits=("epoch-00002", "epoch-00002-step-0000030", ".tmp-3-1", "damaged-epoch-00001"))
    notes = gpu_carry.pack(logs, out, tmp_path / "spill", echo=lambda s: None)

    assert sorted(p.name for p in out.iterdir()) == ["results.tgz", "rows.md", "session.log", "state.json",
                                                     "state.tgz.0"]
    with tarfile.open(out / "results.tgz") as tar:
        assert sorted(tar.getnames()) == ["_text/bench.json", "_text/rows.md", "_text/session.log",
                                          "net/done/config.json", "net/done/results.json",
                                          "net/done/train/events.out.tfevents.1.v2"]
    # the newest commit only (the order commits.newest_first resumes from), no last.keras; the finished run's
    # results.json and config.json, so that the next machine skips it
    newest = "net/cut/backup/epoch-00002-step-0000030"
    assert _names([out / "state.tgz.0"]) == [
        f"{newest}/backup.weights.h5", f"{newest}/state.json", "net/cut/best.keras", "net/cut/config.json",
        "net/cut/train/events.out.tfevents.1.v2",
        "net/done/config.json", "net/done/results.json"]
    assert "net/cut: state carried (epoch-00002-step-0000030)" in notes
    assert "carry: net/cut: state carried" in (out / "session.log").read_text()


def test_newest_commit_is_the_one_the_backup_resumes_from(tmp_path):
    from suite import commits

    run = _run(tmp_path, "r", finished=False, commits=("epoch-00009", "epoch-00010", "epoch-00010-step-0000002",
                                                         "epoch-00010-step-0000010", "epoch-x"))
    assert gpu_carry._newest_commit(run) == commits.newest_first(run / "backup")[0][1]


def test_a_state_larger_than_a_call_comes_back_over_several_and_resumes_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_carry, "PIECE", 40_000)
    monkeypatch.setattr(gpu_carry, "TOTAL", 2**20 + 90_000)  # OUT takes 2 whole pieces
    monkeypatch.setattr(gpu_carry, "STATE_MAX", 230_000)
    logs, spill, root = tmp_path / "logs", tmp_path / "spill", tmp_path / "repo"
    a = _run(logs, "a", finished=False, commits=("epoch-00001",), size=50_000)  # ~100 kB of random bytes each
    b = _run(logs, "b", finished=False, commits=("epoch-00001",), size=50_000)
    c = _run(logs, "c", finished=False, commits=("epoch-00001",), size=50_000)  # with a and b: over STATE_MAX
    for run, t in ((a, 3e9), (b, 2e9), (c, 1e9)):  # a committed last: it goes first, c last
        os.utime(run / "backup/epoch-00001", (t, t))
    said = []
    notes = gpu_carry.pack(logs, tmp_path / "out1", spill, echo=said.append)
    assert any(n.startswith("net/c: not carried") for n in notes), notes
    gpu_carry.check(tmp_path / "out1")
    man = json.loads((tmp_path / "out1" / "state.json").read_text())
    assert man["pieces"] == 6 and sorted(p.name for p in (tmp_path / "out1").glob("state.tgz.*")) == \
        ["state.tgz.0", "state.tgz.1"]
    assert all(p.stat().st_size <= 40_000 for p in spill.glob("state.tgz.*"))
    assert "call `python3 benchmarks/gpu_carry.py more 2`" in said[-1], said

    collected = []
    gpu_carry.collect(tmp_path / "out1", root, echo=collected.append)
    assert not (root / ".devstate" / "ready").exists() and "2–5 still on the machine" in collected[-1], collected
    # the next calls, on the same machine, each right after the one before (a piece sent twice is taken once)
    assert [gpu_carry.more(first, spill, tmp_path / f"out{k}", echo=lambda s: None)
            for k, first in ((2, 1), (3, 3), (4, 5))] == [3, 6, 6]
    gpu_carry.collect(tmp_path / "out2", root, echo=collected.append)
    assert not (root / ".devstate" / "ready").exists() and "3–5 still on the machine" in collected[-1], collected
    gpu_carry.collect(tmp_path / "out3", root, echo=collected.append)
    assert "6 pieces, 2 folder(s) to send" in collected[-1], collected
    gpu_carry.collect(tmp_path / "out4", root, echo=collected.append)  # the last piece once more: nothing changes
    assert "has it already" in collected[-1], collected
    assert not (root / ".devstate" / "incoming").exists()
    ready = root / ".devstate" / "ready"
    assert sorted(p.name for p in (ready / "send-1").iterdir()) == [
        "state.json", "state.tgz.0", "state.tgz.1", "state.tgz.2", "state.tgz.3"]  # a staging call's share
    assert sorted(p.name for p in (ready / "work").iterdir()) == ["state.json", "state.tgz.4", "state.tgz.5"]
    assert {n.split("/")[1] for n in _names(_ready(root))} == {"a", "b"}

    # the next session: send-1 went ahead to /tmp/stage/state, work comes with the work call
    logs.rename(tmp_path / "machine1")  # the next session's machine starts bare, at the same path
    stage = tmp_path / "stage"
    shutil.copytree(ready / "send-1", stage)
    with pytest.raises(SystemExit, match="lacks pieces 4–5 of 6"):
        gpu_carry.restore(logs, [tmp_path / "absent", stage], echo=lambda s: None)
    assert not (logs / "net" / "a").exists()
    assert gpu_carry.restore(logs, [ready / "work", stage], echo=lambda s: None) == [("net", "a"), ("net", "b")]
    assert (logs / "net/b/backup/epoch-00001/backup.weights.h5").read_bytes() == \
        (tmp_path / "machine1/net/b/backup/epoch-00001/backup.weights.h5").read_bytes()
    # a second work call on the machine that packed it needs none of it, though only the work folder came along
    said = []
    assert gpu_carry.restore(tmp_path / "machine1", [ready / "work"], echo=said.append) == [], said
    assert "packed on this machine" in said[0]


def test_restore_keeps_what_the_machine_has_and_refuses_another_log_dir(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    run = _run(logs, "a", finished=False, commits=("epoch-00001",))
    gpu_carry.pack(logs, out, tmp_path / "spill", echo=lambda s: None)
    said = []
    (run / "best.keras").write_bytes(b"newer")
    (logs / ".packed").unlink()  # a machine that restored the run rather than packed this state
    assert gpu_carry.restore(logs, [out], echo=said.append) == []
    assert (run / "best.keras").read_bytes() == b"newer" and "this machine has it already" in said[0]
    with pytest.raises(SystemExit, match=f"made with LOGS={logs}, this call has LOGS={tmp_path / 'elsewhere'}"):
        gpu_carry.restore(tmp_path / "elsewhere", [out], echo=said.append)
    assert not (tmp_path / "elsewhere" / "net").exists()


def test_collect_replaces_the_state_only_with_a_whole_one(tmp_path):
    root, logs, out = tmp_path / "repo", tmp_path / "logs", tmp_path / "out"
    ready = root / ".devstate" / "ready"
    (ready / "send-1").mkdir(parents=True)
    (ready / "send-1" / "state.tgz.0").write_bytes(b"earlier")
    out.mkdir()
    (out / "session.log").write_text("killed before the pack\n")
    said = []
    assert gpu_carry.collect(out, root, echo=said.append) is None
    assert _ready(root)[0].read_bytes() == b"earlier" and "left as it was" in said[0]

    _run(logs, "done", finished=True)
    gpu_carry.pack(logs, out, tmp_path / "spill", echo=lambda s: None)
    piece = (out / "state.tgz.0").read_bytes()
    (out / "state.tgz.0").write_bytes(piece[:-1] + bytes([piece[-1] ^ 1]))  # broken on the way: refused, state kept
    with pytest.raises(SystemExit, match="state.tgz.0 in .* do not match its state.json"):
        gpu_carry.collect(out, root, echo=lambda s: None)
    assert _ready(root)[0].read_bytes() == b"earlier"

    (out / "state.tgz.0").write_bytes(piece)
    dest = gpu_carry.collect(out, root, echo=lambda s: None)
    assert (dest / "net/done/results.json").is_file()
    assert _names(_ready(root)) == ["net/done/config.json", "net/done/results.json"]


def test_runs_finished_in_a_call_whose_state_did_not_come_back_are_not_trained_again(tmp_path):
    logs, root, quiet = tmp_path / "logs", tmp_path / "repo", lambda s: None
    run = _run(logs, "r", finished=False, commits=("epoch-00001",))
    gpu_carry.pack(logs, tmp_path / "out1", tmp_path / "spill", echo=quiet)
    gpu_carry.collect(tmp_path / "out1", root, echo=quiet)  # session 1: r cut, its state came back whole
    (run / "results.json").write_text('{"status": "complete"}')  # session 2: r finished, and s too,
    _run(logs, "s", finished=True)
    gpu_carry.pack(logs, tmp_path / "out2", tmp_path / "spill", echo=quiet)
    (tmp_path / "out2" / "state.tgz.0").unlink()  # but the machine went back before its state came
    said = []
    gpu_carry.collect(tmp_path / "out2", root, echo=said.append)
    assert "0 of 1 pieces here" in said[1], said

    logs.rename(tmp_path / "machine2")  # session 3: the older state, and the runs the last one finished
    ready, finished = root / ".devstate" / "ready", root / ".devstate" / "finished"
    (root / ".devcarry" / "base").mkdir(parents=True)
    work_carry, _ = gpu_carry.plan(root, echo=quiet)[-1]
    assert [str(c.relative_to(root)) for c in work_carry] == [".devcarry/base", ".devstate/ready/work",
                                                              ".devstate/finished"]
    gpu_carry.restore(logs, [ready], finished, echo=said.append)
    assert (logs / "net/r/results.json").read_text() == '{"status": "complete"}', said
    assert (logs / "net/r/backup/epoch-00001").is_dir() and (logs / "net/s/results.json").is_file()
    assert "carry: net/s: finished in an earlier call, marked so" in said


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


def test_plan_lists_the_staging_the_state_and_the_work_call_in_order(tmp_path):
    for d in ("base", "tf-1", "tf-2", "cifar10-1"):
        (tmp_path / ".devcarry" / d).mkdir(parents=True)
    for d in ("send-1", "send-2", "send-10", "work"):
        (tmp_path / ".devstate" / "ready" / d).mkdir(parents=True)
    said = []
    calls = gpu_carry.plan(tmp_path, "r56", echo=said.append)
    carried = [[str(c.relative_to(tmp_path)) for c in carry] for carry, _ in calls]
    # the last staging piece rides with the work call, as there is room
    assert carried == [[".devcarry/cifar10-1"], [".devcarry/tf-1"], [".devstate/ready/send-1"],
                       [".devstate/ready/send-2"], [".devstate/ready/send-10"],
                       [".devcarry/base", ".devstate/ready/work", ".devcarry/tf-2"]]
    assert calls[2][1] == "mkdir -p /tmp/stage/state && cp .devstate/ready/send-1/* /tmp/stage/state/"
    assert calls[-1][1] == ("mkdir -p /tmp/stage && cp .devcarry/tf-2/* /tmp/stage/ && source "
                            ".devcarry/base/install.sh && BUDGET=B bash benchmarks/gpu_session.sh r56")
    assert said[0].startswith("6 calls")
    # ... and not when the two would not fit in one call
    with open(tmp_path / ".devstate" / "ready" / "work" / "state.tgz.0", "wb") as f:
        f.truncate(gpu_carry.WORK_MAX)  # sparse: its size counts, no disk
    (tmp_path / ".devcarry" / "tf-2" / "tfpart.1").write_bytes(b"x")
    calls = gpu_carry.plan(tmp_path, "r56", echo=said.append)
    assert [c[0][-1].name for c in calls][1:3] == ["tf-1", "tf-2"] and calls[-1][1].startswith("source")
    shutil.rmtree(tmp_path / ".devcarry")
    with pytest.raises(SystemExit, match="stage.sh"):
        gpu_carry.plan(tmp_path)


def _session(tmp_path, logs, out, state, parts=("exp:lenet5",), **env):
    """benchmarks/gpu_session.sh PARTS on digits, as a GPU call would run it (EXTRA makes it small)."""
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}", "OUT": str(out),
           "LOGS": str(logs), "STATE": str(state), "FINISHED": str(state.parent / "finished"),
           "SPILL": str(tmp_path / "spill"), "BUDGET": "500",
           "JAX_PLATFORMS": "cpu",
           "EXTRA": "--data digits --epochs 2 --set data.limit=600 --set train.steps_per_execution=1", **env}
    p = subprocess.run(["bash", "benchmarks/gpu_session.sh", *parts], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    text = (logs / "_text" / "lenet5.txt").read_text() if (logs / "_text" / "lenet5.txt").exists() else ""
    return p.stdout + p.stderr, text


# The session script's rehearsals (1-2 min each: several `suite` processes) are slow: they matter before a GPU session
# and run in its pre-flight (tests/test_gpu_settings.py's docstring); the default run checks the pieces above.
@pytest.mark.slow
def test_a_run_cut_on_one_machine_resumes_on_the_next_from_what_came_back(tmp_path):
    logs, root = tmp_path / "suite-logs", tmp_path / "repo"
    state = root / ".devstate" / "ready"
    # call 1: SIGTERM after the 7th step (2 epochs of 5), as the budget's timeout sends it
    said, log = _session(tmp_path, logs, tmp_path / "out1", state, SUITE_FAULT="step:7:term")
    assert "stopped by SIGTERM in epoch 2" in log, said + log
    gpu_carry.check(tmp_path / "out1")
    gpu_carry.collect(tmp_path / "out1", root, echo=lambda s: None)
    (run,) = [n.split("/")[1] for n in _names(_ready(root)) if n.endswith("config.json")]

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

    # an edited experiment (here 3 epochs where the finished run had 2) is another run: trained, and its row is its own
    said, log = _session(tmp_path, logs, tmp_path / "out4", state,
                         EXTRA="--data digits --epochs 3 --set data.limit=600 --set train.steps_per_execution=1")
    assert "finished earlier" not in said and "Epoch 3/3" in log, said + log
    (row,) = (tmp_path / "out4" / "rows.md").read_text().splitlines()
    assert row.startswith("| lenet5 | digits |") and "| 3 |" in row and "(n=" not in row, row


@pytest.mark.slow
def test_the_precise_bn_part_measures_once_and_reports_its_share(tmp_path):
    logs, state = tmp_path / "suite-logs", tmp_path / ".devstate" / "ready"
    said, _ = _session(tmp_path, logs, tmp_path / "out", state, parts=("pbn",))
    assert "share of an epoch:" in said and "failed" not in said, said
    first = (logs / "_text" / "precise_bn_cost.txt").read_text()
    said, _ = _session(tmp_path, logs, tmp_path / "out2", state, parts=("pbn",))  # the same machine: kept, not rerun
    assert (logs / "_text" / "precise_bn_cost.txt").read_text() == first and "share of an epoch:" in said


@pytest.mark.slow
def test_the_step_variants_part_times_every_variant_against_the_run(tmp_path):
    logs, state = tmp_path / "suite-logs", tmp_path / ".devstate" / "ready"
    said, _ = _session(tmp_path, logs, tmp_path / "out", state, parts=("steps",))
    assert "failed" not in said, said
    for name in ("run", "float32", "no_l2", "spe128", "batch256"):
        assert re.search(rf"^  {name} +[\d,]+ img/s .*×\d\.\d\d$", said, re.M), (name, said)
    assert re.search(r"^  run +.*×1\.00$", said, re.M), said


@pytest.mark.slow
def test_the_xla_part_times_each_flag_variant_in_a_process_of_its_own(tmp_path):
    logs, state = tmp_path / "suite-logs", tmp_path / ".devstate" / "ready"
    said, _ = _session(tmp_path, logs, tmp_path / "out", state, parts=("xla",))
    assert "failed (exit" not in said, said
    assert re.search(r"^  run +[\d,]+ img/s .*×1\.00$", said, re.M), said
    for name in ("no_graphs", "conv_graphs"):  # measured, or failed with XLA's own last line
        assert re.search(rf"^  {name} +([\d,]+ img/s .*×\d\.\d\d|failed: .+)$", said, re.M), (name, said)
        assert f"{name}: XLA_FLAGS += '--xla_gpu_enable_command_buffer=" in said, said


@pytest.mark.slow
def test_the_prof_part_summarises_a_trace_of_the_step_and_of_the_run(tmp_path):
    logs, state = tmp_path / "suite-logs", tmp_path / ".devstate" / "ready"
    said, _ = _session(tmp_path, logs, tmp_path / "out", state, parts=("prof",), KERAS_BACKEND="jax")
    assert "failed" not in said, said
    assert "resnet20 · model step alone" in said and "resnet20 · suite run, one epoch" in said, said
    assert said.count("→ no device lanes in the trace") == 2, said  # a CPU: the summaries' host part only
    for what in ("step", "run"):
        s = json.loads((logs / "_text" / f"step_profile_{what}.json").read_text())
        assert s["dispatches"] == s["steps"] == 4, s
        assert (logs / "_text" / f"step_profile_{what}.trace.json.gz").stat().st_size < 2**20  # it comes back


def test_a_part_cut_midway_runs_again_and_a_finished_one_does_not(tmp_path):
    """The xla and prof parts are done when their last output is there, not their first: a call cut by its budget
    after one variant's rate (or the step's profile) runs the part again; after the whole, it is kept. The two
    benchmark scripts are stood in for (a python3 that only logs them), so this needs no model."""
    fake, ran = tmp_path / "bin", tmp_path / "ran"
    fake.mkdir()
    (fake / "python3").write_text(
        "#!/bin/sh\ncase \"$1\" in benchmarks/step_variants.py|benchmarks/step_profile.py)\n"
        f"  echo \"$1\" >> {ran}; exit 0;;\nesac\nexec {sys.executable} \"$@\"\n")
    (fake / "python3").chmod(0o755)
    logs, state = tmp_path / "suite-logs", tmp_path / ".devstate" / "ready"
    txt = logs / "_text"
    txt.mkdir(parents=True)

    def call(n):
        said, _ = _session(tmp_path, logs, tmp_path / f"out{n}", state, parts=("xla", "prof"),
                           PATH=f"{fake}:{os.environ['PATH']}")
        runs = ran.read_text().splitlines() if ran.exists() else []
        ran.unlink(missing_ok=True)
        return said, runs

    # what a cut left: the first variant's rate; the step's profile and its summary, not the run's
    (txt / "xla_flags.txt").write_text("run: 45,000 img/s\n")
    (txt / "step_profile.txt").write_text("resnet20 · model step alone\n  → launch-bound: …\n")
    (txt / "step_profile_step.json").write_text("{}")
    said, runs = call(1)
    assert runs == ["benchmarks/step_variants.py"] + ["benchmarks/step_profile.py"] * 2, said
    # what a whole part leaves
    (txt / "xla_flags.txt").write_text("  run   45,000 img/s  ×1.00\n  no_graphs: XLA_FLAGS += '--x='\n")
    (txt / "step_profile_run.json").write_text("{}")
    said, runs = call(2)
    assert runs == [], said
