"""benchmarks/step_variants.py --xla: the variants' processes, their turns and what the table says (the child
processes stood in for; the slow test in test_gpu_carry runs the real ones)."""

import pathlib
import subprocess
import sys
from types import SimpleNamespace

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import step_variants  # noqa: E402


def test_each_xla_variant_runs_one_turn_a_process_in_turn(monkeypatch, capsys):
    calls = []
    rate = {"": 100.0, "--a": 50.0}  # img/s by the XLA_FLAGS a child gets; "--b" fails

    def child(args, env, capture_output, text):
        flags = env["XLA_FLAGS"]
        calls.append((flags, args[args.index("--repeat") + 1] if "--repeat" in args else None))
        if flags in rate:
            return subprocess.CompletedProcess(args, 0, f"compiled\nRATE {rate[flags] + len(calls)}\n", "")
        return subprocess.CompletedProcess(args, 1, "", "Traceback …\nUnknown flag: --b\n")

    monkeypatch.setattr(subprocess, "run", child)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    a = SimpleNamespace(target="resnet20", data="cifar10", set=["train.batch_size=64"], steps=32, repeat=2,
                        xla_variant=["a:--a", "b:--b"])
    step_variants.xla_variants(a)
    out = capsys.readouterr().out
    assert [f for f, _ in calls] == ["", "--a", "--b"] * 2  # turns alternate between the variants' processes
    assert all(turns == "1" for _, turns in calls), calls  # a child times one turn: the parent reads one rate
    assert "  run                 102 img/s  (101–104)  ×1.00" in out, out  # median of 101 and 104: 102.5
    assert "  a                    54 img/s  (52–55)  ×0.52" in out, out  # 53.5 / 102.5
    assert "  b            failed: Unknown flag: --b" in out, out
    assert "  a: XLA_FLAGS += '--a'" in out, out
