"""benchmarks/step_profile.py: a profiler trace of training steps, summarised per step (for the GPU session)."""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import step_profile  # noqa: E402


def _meta(pid, name, tid=None):
    if tid is None:
        return {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}
    return {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}


def _x(pid, tid, name, ts, dur):
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": ts, "dur": dur}


def gpu_trace():
    """Two steps as a GPU trace has them (µs): the host's dispatches (JAX nests two events of one name in each),
    kernels on a stream lane, and lanes that must not count: the ones derived from the kernels, CUPTI's own."""
    ev = [_meta(1, "/host:CPU"), _meta(1, "python", 10), _meta(2, "/device:GPU:0"),
          _meta(2, "Stream #7(Kernel,MemcpyH2D)", 20), _meta(2, "XLA Ops", 21), _meta(2, "CUPTI overhead", 22)]
    for step, t in enumerate((0, 1000)):
        ev += [_x(1, 10, step_profile.DISPATCH, t, 100), _x(1, 10, step_profile.DISPATCH, t + 1, 98)]
        # conv 300 µs, a 50 µs gap, two overlapping fusions (200 µs of union), a 150 µs gap, a copy of 100 µs
        ev += [_x(2, 20, "conv", t + 200, 300), _x(2, 20, "fusion", t + 550, 150), _x(2, 20, "fusion", t + 600, 150),
               _x(2, 20, "copy", t + 900, 100)]
        ev += [_x(2, 21, "conv", t + 200, 300), _x(2, 22, "overhead", t + 500, 500)]
    return ev


def test_a_gpu_trace_is_summarised_per_step_from_its_stream_lanes_only():
    s = step_profile.summarise(gpu_trace(), steps=2, wall_s=0.002)
    assert s["dispatches"] == 2 and s["dispatch_ms"] == pytest.approx(0.1) and s["dispatch_spacing_ms"] == 1.0
    d = s["device"]
    assert d["lanes"] == ["Stream #7(Kernel,MemcpyH2D)"]
    assert d["kernels_per_step"] == 4
    assert d["busy_ms_per_step"] == pytest.approx(0.6)  # 300 + 200 (the fusions' union) + 100
    # gaps: 50 and 150 in each step, and 200 between step 1's copy and step 2's conv
    assert d["gaps_per_step"] == 2.5 and d["gap_ms_per_step"] == pytest.approx(0.3)
    assert d["largest_gaps_ms"][0] == 0.2
    assert [k["name"] for k in d["top_kernels"]] == ["conv", "fusion", "copy"]
    assert d["top_kernels"][1]["per_step"] == 2 and d["top_kernels"][1]["mean_us"] == 150
    assert step_profile.verdict(s).startswith("kernel-bound: the device is busy 60% of the time, 0.600 ms a step")


def test_the_verdict_names_what_bounds_the_step():
    base = {"wall_ms_per_step": 3.0, "dispatches": 10, "dispatch_ms": 0.2,
            "device": {"busy_ms_per_step": 0.5, "gap_ms_per_step": 2.4, "gaps_per_step": 300, "kernels_per_step": 301,
                       "busy_fraction": 0.17}}
    assert step_profile.verdict(base).startswith("launch-bound: the device idles 2.400 ms a step in 300 gaps")
    assert step_profile.verdict({**base, "dispatch_ms": 2.9}).startswith("host-bound: dispatching a step takes 2.900")
    assert step_profile.verdict({**base, "device": None}).startswith("no device lanes in the trace: the step runs")
    # on a GPU a trace without device lanes is the profiler's failure, not a host-bound step
    assert "could not trace the device" in step_profile.verdict({**base, "device": None, "platform": "gpu"})


def test_the_script_profiles_the_steps_it_ran_on_a_cpu(tmp_path):
    """The whole script on JAX's CPU backend (LeNet-5, digits): every step's dispatch is found in the trace."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "benchmarks/step_profile.py", "lenet5", "--data", "digits", "--steps", "6",
                        "--set", "train.steps_per_execution=2", "--out", str(tmp_path / "trace"),
                        "--json", str(tmp_path / "s.json"), "--events", str(tmp_path / "e.json.gz")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "s.json").read_text())
    # Keras on JAX dispatches each step of a call on its own: 6 dispatches in 3 calls
    assert s["steps"] == 6 and s["dispatches"] == 6 and s["platform"] == "cpu", s
    assert s["device"] is None and "→ no device lanes in the trace: the step runs on the host" in p.stdout
    assert list((tmp_path / "trace").glob("plugins/profile/*/perfetto_trace.json.gz"))
    cut = json.loads(gzip.decompress((tmp_path / "e.json.gz").read_bytes()))["traceEvents"]
    assert sum(e["name"] == step_profile.DISPATCH for e in cut) == 6


def test_the_trimmed_trace_keeps_what_the_summary_reads_and_nothing_else():
    events = gpu_trace() + [_x(1, 11, "tf.data GetNext", 5, 50), _meta(1, "tf_data", 11)]
    cut = step_profile.trimmed(events)["traceEvents"]
    assert step_profile.summarise(cut, 2, 0.002) == step_profile.summarise(events, 2, 0.002)
    names = {e["args"]["name"] for e in cut if e["ph"] == "M"}
    assert names == {"/host:CPU", "python", "/device:GPU:0", "Stream #7(Kernel,MemcpyH2D)"}, names
    assert len([e for e in cut if e["ph"] == "X"]) == 2 + 2 * 4  # the outer dispatches and the stream's kernels


def test_a_profiled_run_that_stops_early_ends_in_one_clear_line(tmp_path):
    """--run traces the run's second epoch whole; a run whose loss diverges in its first stops there, and the script
    says so in one line (exit 1 with "error: …", no traceback) rather than failing on the epoch it never timed."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "benchmarks/step_profile.py", "lenet5_modern", "--data", "digits", "--run",
                        "--steps", "10", "--set", "train.lr=1e30", "--set", "train.optimizer=sgd",
                        "--set", "train.schedule=constant", "--set", "train.batch_size=32",
                        "--out", str(tmp_path / "trace")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1].startswith(
        "error: the profiled run stopped after 1 of its 3 epochs (its loss diverged at epoch 1, batch "), p.stderr
