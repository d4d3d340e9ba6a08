"""Stage TensorFlow and the data sets for the GPU machine in fewer calls than ../shared/device/stage.sh.

Each device call takes along at most 64 MiB and the machine starts bare, so everything a GPU session needs beyond the
project (TensorFlow-CPU for tf.data, Keras, keras-tuner, the data sets) travels in staging calls, one piece a call,
each costing device time. stage.sh sends TensorFlow's wheel as it is (258 MiB, 5 pieces) and the data sets' .npz files
as they are (CIFAR-10: 162 MiB, 3 pieces): 8 calls. Here the same bytes travel smaller:
- TensorFlow: the wheel's files without `tensorflow/include` (C++ headers, needed only to build custom ops), as one
  tar compressed with xz (LZMA2) instead of the wheel's zip deflate;
- each image array: xz with its delta filter over neighbouring pixels (distance = the number of channels), which
  natural images reward (CIFAR-10: 66 % of the raw bytes, against 92 % for the .npz's deflate);
so TensorFlow and CIFAR-10 fit 5 pieces of 60 MiB. Every part is cut into 64 MiB chunks compressed independently, in
threads (liblzma releases the GIL), so both ends use every core; a manifest (stage.json, with each part's SHA-256)
says how to put them back.

    here:   python benchmarks/gpu_stage.py stage [cifar10 mnist fashion_mnist ...]
            (runs stage.sh for the small wheels and TensorFlow's wheel, then replaces its pieces: .devcarry/stage-N
            and .devcarry/base/stage.json; `python benchmarks/gpu_carry.py plan` lists the calls as before)
    there:  source .devcarry/base/install.sh   (this project's benchmarks/gpu_install.sh: it calls `unstage`)

The compressed parts are kept in /tmp/devcarry-dl/compact, so staging again on the same machine costs seconds.
Written by hand because the limits are this workplace's own; lzma, tarfile and NumPy do the work.
"""

import argparse
import concurrent.futures as cf
import hashlib
import io
import json
import lzma
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np

PIECE = 60 * 2**20  # a call takes along 64 MiB with the work tree (~1 MiB tracked): a margin for it
CHUNK = 64 * 2**20  # compressed independently; far above LZMA2's 8 MiB window at preset 6, so nothing is lost
PRESET = 6  # preset 9 gave the same size on TensorFlow's library, slower
DL = pathlib.Path("/tmp/devcarry-dl")  # where stage.sh downloads TensorFlow's wheel
FORMAT = 1  # the manifest's layout; a cached part of another format is rebuilt
MANIFEST = "stage.json"
DONE = ".unstaged"  # SITE/.unstaged, written last: install.sh unpacks again until it is there (a call cut midway)
STREAM = "stream"  # the pieces: stream.1, stream.2, … in .devcarry/stage-N and, there, in /tmp/stage
HERE = pathlib.Path(__file__).resolve().parent


def _filters(delta=0):
    lz = {"id": lzma.FILTER_LZMA2, "preset": PRESET}
    return [{"id": lzma.FILTER_DELTA, "dist": delta}, lz] if delta else [lz]


def _compress(raw, delta=0):
    """Chunks of `raw` (bytes or memoryview), each its own xz stream: [compressed bytes]."""
    views = [memoryview(raw)[i:i + CHUNK] for i in range(0, len(raw), CHUNK)] or [memoryview(b"")]
    with cf.ThreadPoolExecutor(os.cpu_count()) as ex:
        return list(ex.map(lambda v: lzma.compress(v, format=lzma.FORMAT_XZ, filters=_filters(delta)), views))


def _decompress(blobs):
    with cf.ThreadPoolExecutor(os.cpu_count()) as ex:
        return b"".join(ex.map(lzma.decompress, blobs))


def _tf_tar(wheel):
    """The wheel's files but the C++ headers, as an uncompressed tar (a wheel's files, unpacked into a folder on
    sys.path, are what `pip install --target` makes of it, less the console scripts, which the suite never calls)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(wheel) as z, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in z.infolist():
            if info.is_dir() or info.filename.startswith("tensorflow/include/"):
                continue
            data = z.read(info)
            t = tarfile.TarInfo(info.filename)
            t.size, t.mode, t.mtime = len(data), 0o644, 0
            tar.addfile(t, io.BytesIO(data))
    return buf.getvalue()


def _part(name, kind, raw, delta=0, **extra):
    blobs = _compress(raw, delta)
    return {"name": name, "kind": kind, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
            "chunks": [len(b) for b in blobs], **extra}, blobs


def _cached(key, build, echo):
    """A part's (entry, blobs) from the cache under DL/compact/KEY, or built now and kept there."""
    d = DL / "compact" / key
    if (d / "entry.json").is_file():
        entry = json.loads((d / "entry.json").read_text())
        if entry.get("format") == FORMAT:
            return entry, [(d / f"chunk.{i}").read_bytes() for i in range(len(entry["chunks"]))]
    echo(f"stage: compressing {key} (once; kept in {d})")
    entry, blobs = build()
    entry["format"] = FORMAT
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for i, b in enumerate(blobs):
        (d / f"chunk.{i}").write_bytes(b)
    (d / "entry.json").write_text(json.dumps(entry))
    return entry, blobs


def _key(path):
    """The cache's name for a source file: its content's (../shared/data is laid out afresh, new mtimes and all, in
    every session)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(2**24):
            h.update(block)
    return f"{pathlib.Path(path).name}-{h.hexdigest()[:16]}"


def tf_part(wheel, echo=print):
    return _cached(_key(wheel), lambda: _part(pathlib.Path(wheel).name, "tar", _tf_tar(wheel)), echo)


def data_parts(npz, echo=print):
    """One part per array of the .npz: images (uint8, N×H×W[×C]) with the delta filter, the rest plain."""
    name = pathlib.Path(npz).stem
    out = []
    source = _key(npz)
    with np.load(npz) as d:
        for key in d.files:
            def build(key=key):  # called only when the cache has no such part
                a = np.ascontiguousarray(d[key])
                delta = (a.shape[3] if a.ndim == 4 else 1) if a.dtype == np.uint8 and a.ndim >= 3 else 0
                return _part(f"{name}/{key}", "array", a.tobytes(), delta, dtype=a.dtype.str, shape=list(a.shape))
            out.append(_cached(f"{source}-{key}", build, echo))
    return out


def stage(datasets, root=".", echo=print):
    """.devcarry as stage.sh leaves it (base: the small wheels), then TensorFlow and the data sets as pieces of one
    stream in .devcarry/stage-N, the manifest and this project's install script in .devcarry/base."""
    root = pathlib.Path(root)
    shared = root.resolve().parent / "shared"
    for ds in datasets:
        if not (shared / "data" / f"{ds}.npz").is_file():
            raise SystemExit(f"error: no data set {ds!r} in {shared / 'data'}: stage one of "
                             f"{', '.join(sorted(p.stem for p in (shared / 'data').glob('*.npz')))}")
    # stage.sh downloads the small wheels and TensorFlow's; its pieces of the wheel are replaced below
    r = subprocess.run(["bash", str(shared / "device" / "stage.sh")], cwd=root, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"error: ../shared/device/stage.sh failed: {(r.stderr or r.stdout).strip()[-500:]}")
    wheels = sorted(DL.glob("tensorflow_cpu-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"error: expected one TensorFlow wheel in {DL}, found {len(wheels)}")
    return build(root / ".devcarry", wheels[0], [shared / "data" / f"{ds}.npz" for ds in datasets], echo)


def build(carry, wheel, npzs, echo=print):
    """CARRY's pieces (all but base/) replaced by TensorFlow's WHEEL and the NPZS as stage-N, with the manifest and
    the install script in CARRY/base."""
    carry = pathlib.Path(carry)
    for d in carry.iterdir():
        if d.is_dir() and d.name != "base":
            shutil.rmtree(d)
    parts = [tf_part(wheel, echo)]
    for npz in npzs:
        parts += data_parts(npz, echo)
    stream = b"".join(b for _, blobs in parts for b in blobs)
    pieces = [stream[i:i + PIECE] for i in range(0, len(stream), PIECE)]
    for k, p in enumerate(pieces, 1):
        (carry / f"stage-{k}").mkdir()
        (carry / f"stage-{k}" / f"{STREAM}.{k}").write_bytes(p)
    manifest = {"format": FORMAT, "pieces": len(pieces), "size": len(stream),
                "parts": [{k: v for k, v in e.items() if k != "format"} for e, _ in parts]}
    (carry / "base" / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.copy(HERE / "gpu_install.sh", carry / "base" / "install.sh")
    raw = sum(e["size"] for e, _ in parts)
    echo(f"stage: {len(parts)} parts, {raw / 2**20:.0f} MiB, travel as {len(stream) / 2**20:.0f} MiB in "
         f"{len(pieces)} pieces (.devcarry/stage-1…{len(pieces)}); `python benchmarks/gpu_carry.py plan` lists the "
         "calls")
    return manifest


def unstage(manifest, pieces, site, data, echo=print):
    """There: the pieces in PIECES (stream.N) back into TensorFlow in SITE and NAME.npz files in DATA, each part
    checked against its SHA-256 before it is written."""
    man = json.loads(pathlib.Path(manifest).read_text())
    pieces, site, data = pathlib.Path(pieces), pathlib.Path(site), pathlib.Path(data)
    missing = [k for k in range(1, man["pieces"] + 1) if not (pieces / f"{STREAM}.{k}").is_file()]
    if missing:
        raise SystemExit(f"error: pieces {', '.join(map(str, missing))} of {man['pieces']} are not in {pieces}: send "
                         "them first (.devcarry/stage-N, `python benchmarks/gpu_carry.py plan`); a machine that was "
                         "restarted has lost those sent before")
    stream = b"".join((pieces / f"{STREAM}.{k}").read_bytes() for k in range(1, man["pieces"] + 1))
    if len(stream) != man["size"]:
        raise SystemExit(f"error: the pieces in {pieces} hold {len(stream)} bytes, the manifest says {man['size']}: "
                         "a piece is from another staging or broke in transfer; stage again and send them all")
    raws, at = [], 0  # every part checked before anything is written: a bad piece leaves nothing half-done
    for part in man["parts"]:
        blobs = []
        for n in part["chunks"]:
            blobs.append(stream[at:at + n])
            at += n
        try:
            raws.append(_decompress(blobs))
        except lzma.LZMAError:
            raws.append(None)  # a damaged stream: said as for a wrong checksum
        if raws[-1] is None or hashlib.sha256(raws[-1]).hexdigest() != part["sha256"]:
            raise SystemExit(f"error: {part['name']} does not match its SHA-256 after unpacking: a piece broke in "
                             "transfer; send the pieces again")
    (site / DONE).unlink(missing_ok=True)
    arrays = {}
    for part, raw in zip(man["parts"], raws):
        if part["kind"] == "tar":
            tmp = site.with_name(site.name + ".unstage")
            shutil.rmtree(tmp, ignore_errors=True)
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                tar.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            site.mkdir(parents=True, exist_ok=True)
            for p in tmp.iterdir():  # moved in whole, each package
                shutil.rmtree(site / p.name, ignore_errors=True)
                p.rename(site / p.name)
            tmp.rmdir()
        else:
            ds, key = part["name"].split("/")
            arrays.setdefault(ds, {})[key] = np.frombuffer(raw, dtype=part["dtype"]).reshape(part["shape"])
    data.mkdir(parents=True, exist_ok=True)
    for ds, arr in arrays.items():
        tmp = data / f".{ds}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arr)  # uncompressed: quicker to load than to shrink further
        tmp.rename(data / f"{ds}.npz")
    site.mkdir(parents=True, exist_ok=True)
    (site / DONE).write_text(hashlib.sha256(pathlib.Path(manifest).read_bytes()).hexdigest())
    echo(f"unstage: {man['pieces']} pieces, {len(man['parts'])} parts checked: TensorFlow in {site}, "
         f"{', '.join(sorted(arrays)) or 'no data sets'} in {data}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage", help="here: fill .devcarry")
    s.add_argument("datasets", nargs="*", help="data set names in ../shared/data (e.g. cifar10)")
    s.add_argument("--root", default=".", help="the project root (default: here)")
    u = sub.add_parser("unstage", help="there: TensorFlow into SITE, the data sets into DATA")
    u.add_argument("manifest")
    u.add_argument("pieces", help="the folder the staging calls copied the pieces to")
    u.add_argument("--site", default="/tmp/site")
    u.add_argument("--data", default="/tmp/data")
    a = ap.parse_args()
    if a.cmd == "stage":
        stage(a.datasets, a.root)
    else:
        unstage(a.manifest, a.pieces, a.site, a.data)
    sys.exit(0)
