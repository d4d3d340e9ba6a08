"""The installable package: pyproject.toml's wheel, shipped experiments found from any directory, the user's own
experiments/ winning, and the commands that need no TensorFlow starting without it."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, run_cli
from suite import config


def test_wheel_ships_the_package_every_experiment_and_the_command(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", "logs", ".git", ".devcarry", "build", "*.egg-info",
                                                                "__pycache__", "*.keras", "*.npz"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        meta = next(z.read(n).decode() for n in names if n.endswith("METADATA"))
    for exp in (ROOT / "experiments").rglob("*.toml"):
        assert f"suite/experiments/{exp.relative_to(ROOT / 'experiments')}" in names, exp
    assert {"suite/cli.py", "suite/nets/custom.py", "suite/__main__.py"} <= names
    assert "suite = suite.cli:main" in entry
    for line in (ROOT / "requirements.txt").read_text().splitlines():  # the same dependencies as the README's
        req = line.split("#")[0].strip()
        if req:
            assert f"Requires-Dist: {req}" in meta, req


def test_experiments_are_found_from_any_directory_and_yours_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.find_experiment("resnet20") == config.EXPERIMENTS / "resnet20.toml"
    assert config.resolve("resnet20")["data"]["name"] == "cifar10"
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "resnet20.toml").write_text('[model]\nname = "resnet20"\n[data]\nname = "digits"\n')
    (tmp_path / "experiments" / "mine.toml").write_text('[model]\nname = "lenet5_modern"\n')
    (tmp_path / "experiments" / "broken.toml").write_text('[model\n')  # `list` still lists the rest
    assert config.resolve("resnet20")["data"]["name"] == "digits"  # the user's own recipe of that name
    found = config.experiments()
    assert found["resnet20"][0] == "yours" and found["mine"][0] == "yours" and found["alexnet"][0] == "shipped"
    p = run_cli("list", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    listed = p.stdout.split("\nexperiments (", 1)[1].splitlines()
    line = {x.split()[0]: x for x in listed[1:]}
    assert line["resnet20"].endswith("[yours, replaces the shipped one]"), line["resnet20"]
    assert line["mine"].endswith("(no description)  [yours]"), line["mine"]
    assert "(broken: experiment file experiments/broken.toml is not valid TOML" in line["broken"], line["broken"]
    assert line["alexnet"].split()[1:] == ["AlexNet", "with", "the", "paper's", "training", "recipe", "(paper:",
                                          "59.30%", "on", "imagenet)"], line["alexnet"]


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "--runs"], ["study", "--list"],
                                  ["show", "resnet50", "--config"]])
def test_commands_that_read_the_registry_do_not_import_tensorflow(argv):
    code = ("import sys\nfrom suite import cli\ntry:\n    rc = cli.main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    rc = e.code\nbad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]\n"
            "print('IMPORTED', bad, file=sys.stderr)\nsys.exit(rc or (3 if bad else 0))")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-1500:]
    assert "IMPORTED []" in p.stderr


def test_run_summary_quotes_the_papers_figure_as_list_does():
    from suite import runner

    r = {"status": "done", "model": "resnet20", "experiment": "resnet20", "data": "cifar10", "params": 272474,
         "test": {"accuracy": 0.9130}, "wall_time_s": 1.0, "run_dir": "logs/x", "reference_accuracy": 0.9125,
         "reference_data": "cifar10"}
    assert "test accuracy 0.9130 (paper: 91.25% on cifar10) · " in runner.summary_line(r)
    assert "paper" not in runner.summary_line({**r, "reference_accuracy": None})
