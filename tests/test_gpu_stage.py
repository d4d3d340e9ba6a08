"""benchmarks/gpu_stage.py: TensorFlow and the data sets travel to the GPU machine in pieces and come back whole —
every file of the wheel but the C++ headers, every array to the byte with its dtype and shape — and a missing or
damaged piece is said in one line before anything is written."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_carry  # noqa: E402
import gpu_stage  # noqa: E402

FILES = {  # a wheel's worth: a library that hardly compresses, Python, the headers that stay behind, the metadata
    "tensorflow/libtensorflow_cc.so.2": np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes(),
    "tensorflow/__init__.py": b"print('tf')\n" * 500,
    "tensorflow/python/ops/nn.py": b"def relu(x):\n    return x\n" * 300,
    "tensorflow/include/tensorflow/core/framework/op.h": b"#pragma once\n" * 1000,
    "tensorflow_cpu-2.21.0.dist-info/METADATA": b"Name: tensorflow-cpu\nVersion: 2.21.0\n",
}


@pytest.fixture
def staged(tmp_path, monkeypatch):
    """A staging of a small wheel and two data sets, in pieces of 100 kB made of 64 kB chunks."""
    monkeypatch.setattr(gpu_stage, "PIECE", 100_000)
    monkeypatch.setattr(gpu_stage, "CHUNK", 64_000)
    monkeypatch.setattr(gpu_stage, "DL", tmp_path / "dl")
    wheel = tmp_path / "tensorflow_cpu-2.21.0-cp312-cp312-manylinux_2_27_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in FILES.items():
            z.writestr(name, data)
    rng = np.random.default_rng(1)
    # smooth images, as natural ones are: what the delta filter is for
    smooth = np.cumsum(rng.integers(-3, 4, (40, 32, 32, 3)), axis=2).clip(0, 255).astype(np.uint8)
    sets = {"rgb": dict(x_train=smooth, y_train=rng.integers(0, 10, 40), x_test=smooth[:8], y_test=np.arange(8)),
            "gray": dict(x_train=smooth[..., 0], y_train=rng.integers(0, 10, 40).astype(np.uint8))}
    npzs = []
    for name, arrays in sets.items():
        npzs.append(tmp_path / f"{name}.npz")
        np.savez_compressed(npzs[-1], **arrays)
    carry = tmp_path / ".devcarry"
    (carry / "base").mkdir(parents=True)
    (carry / "tf-1").mkdir()  # stage.sh's piece of the wheel: replaced
    man = gpu_stage.build(carry, wheel, npzs, echo=lambda s: None)
    stage = tmp_path / "stage"  # there: what the staging calls copied
    stage.mkdir()
    for d in carry.glob("stage-*"):
        for f in d.iterdir():
            (stage / f.name).write_bytes(f.read_bytes())
    return dict(carry=carry, man=man, stage=stage, sets=sets, tmp=tmp_path, wheel=wheel, npzs=npzs)


def test_everything_comes_back_whole_and_smaller(staged, tmp_path):
    carry, man = staged["carry"], staged["man"]
    assert sorted(d.name for d in carry.iterdir()) == ["base"] + [f"stage-{k}" for k in range(1, man["pieces"] + 1)]
    assert man["pieces"] >= 2 and all(len(c) <= 1 for c in [list((carry / f"stage-{k}").iterdir())
                                                            for k in range(1, man["pieces"] + 1)])
    assert (carry / "base" / "install.sh").read_text() == (ROOT / "benchmarks" / "gpu_install.sh").read_text()
    sent = sum(f.stat().st_size for f in carry.glob("stage-*/*"))
    assert sent == man["size"] and sent < sum(p.stat().st_size for p in [staged["wheel"], *staged["npzs"]])
    site, data = tmp_path / "site", tmp_path / "data"
    said = []
    gpu_stage.unstage(carry / "base" / "stage.json", staged["stage"], site, data, echo=said.append)
    for name, content in FILES.items():
        if name.startswith("tensorflow/include/"):
            assert not (site / name).exists()
        else:
            assert (site / name).read_bytes() == content, name
    assert not list(tmp_path.glob("site.unstage")) and (site / gpu_stage.DONE).is_file()  # install.sh's sign
    for ds, arrays in staged["sets"].items():
        with np.load(data / f"{ds}.npz") as got:
            assert sorted(got.files) == sorted(arrays)
            for key, a in arrays.items():
                assert got[key].dtype == a.dtype and got[key].shape == a.shape and np.array_equal(got[key], a), key
    assert "gray, rgb" in said[0]
    # the images went through the delta filter (the cache keeps each part, so it is read back from there)
    cached = {e["name"]: e for e in (json.loads(p.read_text()) for p in (tmp_path / "dl").rglob("entry.json"))}
    assert cached["rgb/x_train"]["dtype"] == "|u1" and cached["rgb/x_train"]["shape"] == [40, 32, 32, 3]


def test_a_second_staging_reads_the_cache(staged, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("compressed again")

    monkeypatch.setattr(gpu_stage, "_compress", fail)
    again = gpu_stage.build(staged["carry"], staged["wheel"], staged["npzs"], echo=lambda s: None)
    assert again == staged["man"]


@pytest.mark.parametrize("damage, needle", [
    ("missing", "are not in"),
    ("short", "a piece is from another staging"),
    ("flipped", "does not match its SHA-256"),
    ("flipped-last", "does not match its SHA-256"),  # in a data set, after TensorFlow's part checked out
])
def test_a_missing_or_damaged_piece_is_one_line_and_nothing_is_written(staged, tmp_path, damage, needle):
    last = staged["man"]["pieces"]
    piece = staged["stage"] / f"stream.{last if damage == 'flipped-last' else 2}"
    if damage == "missing":
        piece.unlink()
    elif damage == "short":
        piece.write_bytes(piece.read_bytes()[:-1])
    else:
        b = bytearray(piece.read_bytes())
        b[len(b) // 2] ^= 0xFF
        piece.write_bytes(bytes(b))
    manifest = staged["carry"] / "base" / "stage.json"
    r = subprocess.run([sys.executable, "benchmarks/gpu_stage.py", "unstage", str(manifest), str(staged["stage"]),
                        "--site", str(tmp_path / "site"), "--data", str(tmp_path / "data")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "site").exists() and not (tmp_path / "data").exists()


def test_the_install_script_stops_the_call_when_unstage_fails(tmp_path):
    """`source install.sh && work`: the work must not run when unpacking failed (`set -e` does not act there)."""
    base = tmp_path / ".devcarry" / "base"
    base.mkdir(parents=True)
    (base / "install.sh").write_text((ROOT / "benchmarks" / "gpu_install.sh").read_text()
                                     .replace("/tmp/", f"{tmp_path}/"))
    with zipfile.ZipFile(base / "tiny-0.1-py3-none-any.whl", "w") as z:  # a small wheel, as stage.sh leaves
        z.writestr("tiny/__init__.py", "")
        z.writestr("tiny-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: 0.1\n")
        z.writestr("tiny-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("tiny-0.1.dist-info/RECORD", "")
    (base / "stage.json").write_text(json.dumps({"format": 1, "pieces": 1, "size": 1, "parts": []}))
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    r = subprocess.run(["bash", "-c", "source .devcarry/base/install.sh && echo WORK RAN"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "WORK RAN" not in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "site" / "tiny").is_dir(), r.stderr  # the wheels went in; then unstage refused
    assert f"pieces 1 of 1 are not in {tmp_path}/stage" in r.stderr, r.stderr


def test_plan_sends_the_pieces_in_order_and_checks_the_machine_first(tmp_path):
    for d in ["base"] + [f"stage-{k}" for k in (1, 2, 10)]:
        (tmp_path / ".devcarry" / d).mkdir(parents=True)
    (tmp_path / ".devcarry" / "base" / "stage.json").write_text("{}")
    calls = gpu_carry.plan(tmp_path, "r20", echo=lambda s: None)
    assert [[str(d.relative_to(tmp_path)) for d in c[0]] for c in calls] == [
        [".devcarry/stage-1"], [".devcarry/stage-2"], [".devcarry/base", ".devcarry/stage-10"]]
    assert calls[0][1] == 'python3 -c "import lzma, numpy" && mkdir -p /tmp/stage && cp .devcarry/stage-1/* /tmp/stage/'
    assert calls[1][1] == "mkdir -p /tmp/stage && cp .devcarry/stage-2/* /tmp/stage/"
    assert calls[2][1].startswith("mkdir -p /tmp/stage && cp .devcarry/stage-10/* /tmp/stage/ && source ")
