"""Bad input, fuzzed (issue 13): property-based tests with Hypothesis over experiment files, `--set` values and
data files. Whatever the input, `python -m suite run ...` (called in-process through suite.cli.main, so TensorFlow
starts once) ends with exit 0 (or 3: the loss diverged, a documented outcome), or with exit 2 and exactly one line
on stderr naming the problem; never a traceback; and an earlier finished run under the same log directory keeps
every byte.

The examples are derandomized (the same cases every run, so CI is reproducible) and few; runs that would succeed
are kept tiny (one epoch, 64 examples). A case that once found a bug stays as an explicit @example.
"""

import datetime
import hashlib
import io
import os
import pathlib
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from suite import config, registry
from suite.data import NPZ_KEYS

# every run that gets past the checks is tiny: these come before the fuzzed arguments, so those win
TINY = ["--epochs", "1", "--set", "data.limit=64", "--set", "train.batch_size=32", "--set", "train.verbose=0",
        "--set", "log.checkpoints=false"]
EXPERIMENT = config.EXPERIMENTS / "lenet5.toml"
BASE = config.read_toml(EXPERIMENT)
RESOLVED = config.flatten(config.resolve("lenet5"))
KEYS = sorted(RESOLVED)  # every valid section.key of the lenet5 experiment
SMALL_NETS = ["lenet5", "lenet5_modern", "exercise2_cnn", "rnn", "gru"]  # model.name values that build fast


# SUITE_FUZZ_SCALE=20 python -m pytest tests/test_fuzz.py: 20× the examples, freshly random ones (a longer hunt).
# The default counts below are about half of what they were (to keep CI short); SUITE_FUZZ_SCALE=2 gives the old ones.
SCALE = float(os.environ.get("SUITE_FUZZ_SCALE", "1"))


def fuzz(n):
    return settings(max_examples=max(1, round(n * SCALE)), deadline=None, derandomize=SCALE == 1, database=None,
                    print_blob=False, suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------------------------------------------------------
# the harness


def _digest(root):
    """{relative path: sha256 of the bytes} of every file under root (folders as "dir")."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(pathlib.Path(root).rglob("*"))}


def _tiny_npz(path, channels=1, n=40, n_test=10, size=8, classes=3):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (n, size, size, channels), dtype=np.uint8),
             y_train=np.arange(n) % classes, x_test=rng.integers(0, 255, (n_test, size, size, channels),
                                                                  dtype=np.uint8),
             y_test=np.arange(n_test) % classes)
    return path


class World(dict):
    def __repr__(self):  # Hypothesis prints the arguments of a failing case: keep this one short
        return "world"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A scratch working directory (relative paths a case names land there), $SUITE_DATA_DIR with tiny copies of
    the Keras data sets (so no case downloads), and a log root holding one earlier finished run."""
    from suite import cli

    d = tmp_path_factory.mktemp("fuzz")
    data = d / "data"
    data.mkdir()
    for name in ("mnist", "fashion_mnist"):
        _tiny_npz(data / f"{name}.npz")
    for name in ("cifar10", "cifar100"):
        _tiny_npz(data / f"{name}.npz", channels=3)
    cwd = d / "cwd"
    cwd.mkdir()
    logs = d / "logs"
    saved_cwd, saved_env = os.getcwd(), os.environ.get("SUITE_DATA_DIR")
    os.chdir(cwd)
    os.environ["SUITE_DATA_DIR"] = str(data)
    try:
        assert cli.main(["run", "lenet5", *TINY, "--logdir", str(logs)]) == 0
        (earlier,) = (logs / "lenet5").iterdir()
        assert (earlier / "results.json").is_file()
        yield World(dir=d, data=data, logs=logs, earlier=earlier, digest=_digest(earlier), n=[0])
    finally:
        os.chdir(saved_cwd)
        if saved_env is None:
            os.environ.pop("SUITE_DATA_DIR", None)
        else:
            os.environ["SUITE_DATA_DIR"] = saved_env


def _scratch(world):
    """A fresh folder for one case's files (never reused: the data loader caches by path, size and mtime)."""
    world["n"][0] += 1
    p = world["dir"] / "cases" / str(world["n"][0])
    p.mkdir(parents=True)
    return p


def _run(world, capfd, argv, data_dir=None):
    """`suite run ...argv` in-process; asserts the promise. Returns (exit status, stderr)."""
    from suite import cli

    capfd.readouterr()
    saved = os.environ["SUITE_DATA_DIR"]
    if data_dir is not None:
        os.environ["SUITE_DATA_DIR"] = str(data_dir)
    try:
        rc = cli.main(["run", *map(str, argv)])
    finally:
        os.environ["SUITE_DATA_DIR"] = saved
        _undo_global_state()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, f"a traceback for run {argv}:\n{err[-3000:]}"
    assert rc in (0, 2, 3), f"exit {rc} for run {argv}; stderr:\n{err[-3000:]}"
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{len(lines)} lines on stderr for run {argv}:\n{err[-3000:]}"
        assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 10, lines[0]
    assert _digest(world["earlier"]) == world["digest"], f"run {argv} changed the earlier run"
    return rc, err


def _undo_global_state():
    """train.deterministic switches TensorFlow's op determinism on for the rest of the process: switch it off
    again, so a fuzz case leaves the other tests as it found them."""
    try:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    except (ImportError, AttributeError):
        pass


# ---------------------------------------------------------------------------------------------------------------
# TOML values and documents

BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
ODD_STRINGS = ["", " ", "\t", "\n", "=", ".", "..", "/", "\\", "~", "-1", "nan", "inf", "true", "None", "null",
               "[", "]", "{}", "'", '"', "a=b=c", "\x00", "\x7f", "\u200b", "é", "数据", "🙂", "ℌ𝔢𝔩𝔩𝔬",
               "lenet5", "digits", "mnist", "cifar100", "logs", "../../x", "x" * 300, "\u202e" + "txt.npz"]


def _toml_str(s):
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k):
    return k if k and set(k) <= BARE else _toml_str(k)


def toml_value(v):
    """v as a TOML value (inline)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc):
    """A {key: value or {key: value}} document as TOML text: top-level values first, then one [table] each."""
    lines = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{_toml_key(k)}]")
            lines += [f"{_toml_key(kk)} = {toml_value(v)}" for kk, v in table.items()]
    return "\n".join(lines) + "\n"


names = st.one_of(st.sampled_from(sorted({k.split(".")[1] for k in KEYS} | set(config.DEFAULTS) | {"name"})),
                  st.text(max_size=8), st.sampled_from(ODD_STRINGS))
scalars = st.one_of(
    st.booleans(),
    st.integers(),  # Hypothesis draws small ones mostly, huge ones sometimes
    st.sampled_from([0, -1, 1, 2, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64, 10**30, 10**400]),
    st.floats(),  # nan, ±inf, subnormals, huge
    st.sampled_from([0.0, -0.0, 1e-320, 0.5, 1.0, 1.5, 1e300, -1e300]),
    st.text(max_size=10),
    st.sampled_from(ODD_STRINGS),
    st.dates(), st.datetimes(), st.times(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(names, inner, max_size=3)), max_leaves=5)


def plausible(key):
    """Values near what `key` takes: its choices and their neighbours, its range's edges, the other networks."""
    opts = list(config.CHOICES.get(key, ()))
    lo, hi, *_ = config.RANGES.get(key, (None, None, None, None))
    for edge in (lo, hi):
        if edge is not None:
            opts += [edge, edge - 1, edge + 1, -edge, edge - 1e-9, edge + 1e-9]
    opts += [o.upper() if isinstance(o, str) else o for o in opts]
    if key == "model.name":
        opts += SMALL_NETS + ["lenet", "vgg99", "LeNet5"]
    if key.startswith(("data.image_size", "train.milestones")):
        opts += [[8, 8], [1, 1], [0, 0], [8], [8, 8, 8], [-8, 8], [8.5, 8], [True, True], [[8]], [30, 60], [0]]
    return st.sampled_from(opts) if opts else st.nothing()


def same_type(key):
    """Values of the type `key` takes (they pass the type check), extreme ones included."""
    default = RESOLVED.get(key)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(st.integers(), st.sampled_from([0, -1, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64, 10**30]))
    if isinstance(default, float):
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(),
                         st.sampled_from([0.0, 1e-320, 1e300, -1e300, 2.0**64]))
    if isinstance(default, str):
        return st.one_of(st.text(max_size=10), st.sampled_from(ODD_STRINGS))
    if isinstance(default, list):
        kinds = {type(d) for d in default}
        item = same_type_of(kinds.pop()) if len(kinds) == 1 else scalars
        return st.lists(item, max_size=4)
    return st.nothing()


def same_type_of(kind):
    return {bool: st.booleans(), int: st.integers(), float: st.floats(), str: st.text(max_size=6)}.get(kind, scalars)


# Settings whose valid values cost time or memory in proportion (epochs, image sizes, padding): a valid value
# drawn for them is brought down to a small one, so every run that passes the checks stays tiny. Wrong types and
# out-of-range values go through as drawn.
SMALL = {"train.epochs": 2, "data.limit": 64, "model.pad_to": 40, "data.crop": 8, "eval.shift": 8,
         "data.image_size": 40, "train.patience": 3, "model.filters": 32, "model.units": 64, "model.width": 2,
         "model.conv_blocks": 3, "model.kernel_size": 7}


def tame(key, v):
    cap = SMALL.get(key)
    if cap is None:
        return v
    if isinstance(v, (list, tuple)):
        return [tame(key, x) for x in v]
    hi = config.RANGES.get(key, (None, None))[1]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) > cap:
        return v if v < 0 or (hi is not None and v > hi) else cap  # out of range stays: a one-line error
    return v


def safe_path(v):
    """Paths a case names stay inside the scratch folder: no absolute paths (a log.dir of "/" would write there,
    a data.name of "/" reads the whole disk as an image folder), nothing climbing out with "..", no "~"."""
    if isinstance(v, str):
        v = v.lstrip("/\\~")
        v = v.replace("..", "__")
    return v


def value_for(key):
    s = st.one_of(values, plausible(key), same_type(key), same_type(key))
    if key in ("log.dir", "data.name"):
        s = s.map(safe_path)
    if key == "model.name":
        s = s.filter(lambda v: not (isinstance(v, str) and v in registry.list_models() and v not in SMALL_NETS))
    return s.map(lambda v: tame(key, v))


@st.composite
def random_documents(draw):
    """A random TOML document: the suite's sections and keys, unknown ones, values of every type, nested tables."""
    doc = {}
    for _ in range(draw(st.integers(0, 4))):
        sec = draw(st.one_of(st.sampled_from(list(config.DEFAULTS)), names))
        if draw(st.booleans()):
            doc[sec] = draw(values)
            continue
        table = doc[sec] if isinstance(doc.get(sec), dict) else {}
        for _ in range(draw(st.integers(0, 3))):
            k = draw(st.one_of(st.sampled_from([k.split(".")[1] for k in KEYS if k.startswith(f"{sec}.")] or ["x"]),
                               names))
            table[k] = draw(value_for(f"{sec}.{k}"))
        doc[sec] = table
    if draw(st.booleans()) and isinstance(doc.get("model", {}), dict):  # a network: more get past the first check
        doc.setdefault("model", {})["name"] = draw(st.sampled_from(SMALL_NETS + ["", "lenet6"]))
    return doc


@st.composite
def mutated_experiments(draw):
    """experiments/lenet5.toml with one to three changes: a key set to a random value (wrong type, out of range,
    odd string, huge number, a nested table), a key removed, an unknown key or section, a section that is not
    a table."""
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "unknown-key", "drop", "section", "nest"]))
        key = draw(st.sampled_from(KEYS))
        sec, k = key.split(".")
        if op == "set" and isinstance(doc.get(sec, {}), dict):
            doc.setdefault(sec, {})[k] = draw(value_for(key))
        elif op == "unknown-key" and isinstance(doc.get(sec, {}), dict):
            doc.setdefault(sec, {})[draw(names)] = draw(values)
        elif op == "drop" and isinstance(doc.get(sec), dict):
            doc[sec].pop(k, None)
        elif op == "section":
            doc[draw(st.one_of(names, st.sampled_from(list(config.DEFAULTS))))] = draw(values)
        elif op == "nest" and isinstance(doc.get(sec, {}), dict):
            doc.setdefault(sec, {})[k] = {draw(names): draw(values)}
    return toml_document(doc)


@st.composite
def edited_experiment_text(draw):
    """experiments/lenet5.toml's text with a slice replaced by random text (broken TOML, mostly)."""
    text = EXPERIMENT.read_text()
    i = draw(st.integers(0, len(text)))
    j = min(len(text), i + draw(st.integers(0, 8)))
    return text[:i] + draw(st.one_of(st.text(max_size=6), st.sampled_from(ODD_STRINGS))) + text[j:]


# ---------------------------------------------------------------------------------------------------------------
# 1. experiment files


@fuzz(20)
@given(source=st.one_of(random_documents().map(toml_document), st.text(max_size=60), st.binary(max_size=60)))
@example(source=b"\xff\xfe[model]\n")  # not UTF-8: was a UnicodeDecodeError traceback
def test_fuzz_random_experiment_files(world, capfd, source):
    d = _scratch(world)
    path = d / "fuzzed.toml"
    if isinstance(source, bytes):
        path.write_bytes(source)
    else:
        path.write_text(source, encoding="utf-8")
    _run(world, capfd, [path, *TINY, "--logdir", world["logs"]])


@fuzz(8)
@given(text=st.one_of(mutated_experiments(), mutated_experiments(), edited_experiment_text()))
@example(text=re.sub(r"(?m)^lr = .*$", "lr = 1" + "0" * 400, EXPERIMENT.read_text(), count=1))  # OverflowError
def test_fuzz_mutated_experiment_file(world, capfd, text):
    path = _scratch(world) / "lenet5.toml"  # the same experiment name as the earlier run: its folder
    path.write_text(text, encoding="utf-8")
    _run(world, capfd, [path, *TINY, "--logdir", world["logs"]])


# ---------------------------------------------------------------------------------------------------------------
# 2. --set values


@st.composite
def set_items(draw):
    """A `--set` argument: a valid key with a random value (as TOML text, or raw text), or garbage."""
    kind = draw(st.sampled_from(["value", "value", "value", "raw", "garbage"]))
    key = draw(st.sampled_from(KEYS))
    if kind == "value":
        return f"{key}={toml_value(draw(value_for(key)))}"
    if kind == "raw":
        raw = draw(st.one_of(st.text(max_size=12), st.sampled_from(ODD_STRINGS)))
        if key in ("log.dir", "data.name"):
            raw = safe_path(raw)
        return f"{key}={raw}"
    sec = draw(st.one_of(st.sampled_from(list(config.DEFAULTS)), st.text(max_size=6)))
    return draw(st.one_of(st.text(max_size=20), st.builds(lambda s, k, v, sep: f"{s}{sep}{k}={v}", st.just(sec),
                                                          names, st.text(max_size=8),
                                                          st.sampled_from([".", "..", "", " . ", ".x."]))))


@fuzz(28)
@given(items=st.lists(set_items(), min_size=1, max_size=3))
@example(items=["train.seed=-1"])  # was a NumPy ValueError traceback (seeds must be in [0, 2**32))
@example(items=['model.pooling=""'])  # was a KeyError in nets/blocks.pool
@example(items=["tune.depth=[2024-01-01]"])  # a TOML date: was a TypeError writing config.json
@example(items=['log.dir="a\\u0000b"'])  # a NUL in a path: was a ValueError from mkdir
@example(items=['experiment.name="../escaped"'])  # the run directory went outside the log directory
@example(items=["train.batch_size=1" + "0" * 30])  # beyond 64 bits: was a ValueError from TensorFlow
@example(items=["train.lr=1e300"])  # beyond float32: was a ValueError from TensorFlow
@example(items=["train.lr=1" + "0" * 400])  # an integer too large for a float: was an OverflowError
@example(items=["train.steps_per_execution=2147483648"])  # beyond int32: no test metrics, then a TypeError
@example(items=["train.schedule=step", "train.milestones=[1e300]"])  # was a TypeError building the schedule
@example(items=["data.crop=1099511627776"])  # was an InvalidArgumentError from tf.data
@example(items=["eval.tta=10crop", "eval.shift=1099511627776"])  # was a NumPy "array is too big" ValueError
def test_fuzz_set_values(world, capfd, items):
    argv = ["lenet5", *TINY, "--logdir", world["logs"]]
    for item in items:
        argv += ["--set", item]
    _run(world, capfd, argv)


# ---------------------------------------------------------------------------------------------------------------
# 3. data files in $SUITE_DATA_DIR

GOOD = dict(x_train=np.random.default_rng(0).integers(0, 255, (40, 8, 8, 1), dtype=np.uint8),
            y_train=np.arange(40) % 3,
            x_test=np.random.default_rng(1).integers(0, 255, (10, 8, 8, 1), dtype=np.uint8),
            y_test=np.arange(10) % 3)


def _npz_bytes(arrays, compressed=False):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _deliver(world, capfd, content, how):
    """Put the bytes where the loader finds them: $SUITE_DATA_DIR/mnist.npz (`--data mnist`) or a path."""
    d = _scratch(world)
    if how == "data-dir":
        (d / "mnist.npz").write_bytes(content)
        return _run(world, capfd, ["lenet5", "--data", "mnist", *TINY, "--logdir", world["logs"]], data_dir=d)
    (d / "fuzzed.npz").write_bytes(content)
    return _run(world, capfd, ["lenet5", "--data", d / "fuzzed.npz", *TINY, "--logdir", world["logs"]])


def _npy(header, body=b""):
    """A .npy file with this header text (NumPy's format 1.0), e.g. one claiming a shape its data lacks."""
    h = header.encode("latin1", "replace")[:60000]
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + body


def _forged(members):
    """An .npz (zip) of x_train, y_train, x_test, y_test made with _npy from [(header, body)] (one header: all)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, (header, body) in zip(NPZ_KEYS, members * 4):
            z.writestr(f"{k}.npy", _npy(header, body))
    return buf.getvalue()


headers = st.builds(
    lambda descr, order, shape, cut: f"{{'descr': {descr!r}, 'fortran_order': {order}, 'shape': {shape}, }}"[:cut],
    st.sampled_from(["|u1", "<f8", "<i8", "O", "zz", "<U3", "|b1", "<c16", "<M8[s]"]),
    st.sampled_from(["False", "True", "3", "None"]),
    st.lists(st.one_of(st.integers(0, 12), st.sampled_from([-1, 2**40, 10**12])), max_size=4).map(tuple),
    st.one_of(st.just(None), st.integers(0, 80)))


@st.composite
def broken_bytes(draw):
    """Random bytes, or a real .npz (plain or compressed) with a few bytes flipped, cut short or grown, or a zip
    whose members are garbage or .npy files with forged headers (huge or negative shapes, odd dtypes, cut short)."""
    kind = draw(st.sampled_from(["random", "flip", "flip", "cut", "zip-of-garbage", "forged-header"]))
    if kind == "forged-header":
        return _forged([(draw(headers), draw(st.binary(max_size=64))) for _ in range(4)])
    if kind == "random":
        return draw(st.one_of(st.binary(max_size=300), st.just(b"PK\x03\x04" + b"\x00" * 40)))
    good = _npz_bytes(GOOD, compressed=draw(st.booleans()))
    if kind == "cut":
        return good[:draw(st.integers(0, len(good)))]
    if kind == "zip-of-garbage":  # a valid zip whose members are not .npy files
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for k in draw(st.lists(st.sampled_from(NPZ_KEYS), max_size=4, unique=True)):
                z.writestr(f"{k}.npy", draw(st.binary(max_size=80)))
        return buf.getvalue()
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


@fuzz(20)
@given(content=broken_bytes(), how=st.sampled_from(["data-dir", "path"]))
@example(content=_forged([("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }", b"")]),
         how="path")  # a header claiming 7 TiB: was a MemoryError
@example(content=_forged([("{'descr': '<f8', 'fortran_order': False, 'shape': (1,2", b"")]),
         how="data-dir")  # a header cut short: was a tokenize.TokenError
def test_fuzz_data_file_bytes(world, capfd, content, how):
    _deliver(world, capfd, content, how)


dtypes = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                   hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.unicode_string_dtypes(max_len=3),
                   hnp.byte_string_dtypes(max_len=3), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes())
random_arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                                                          max_side=5)))


@st.composite
def npz_arrays(draw):
    """Each of x_train, y_train, x_test, y_test: missing, a random array (any shape and dtype), an object array
    (stored as a pickle), or left as a small valid one."""
    arrays = {}
    for k in ("x_train", "y_train", "x_test", "y_test", draw(names)):
        what = draw(st.sampled_from(["good", "good", "random", "random", "random", "missing", "object"]))
        if what == "good" and k in GOOD:
            arrays[k] = GOOD[k]
        elif what == "random":
            arrays[k] = draw(random_arrays)
        elif what == "object":
            arrays[k] = np.array([1, "a", None], dtype=object)
    return arrays


@st.composite
def nearly_good_arrays(draw):
    """The small valid data set with one or two arrays replaced: labels out of range, huge, negative or NaN;
    NaN or infinite pixels; empty splits; other shapes, channel counts and dtypes."""
    arrays = dict(GOOD)
    for _ in range(draw(st.integers(1, 2))):
        k = draw(st.sampled_from(list(GOOD)))
        n = len(GOOD[k])
        if k.startswith("y"):
            new = draw(st.one_of(
                hnp.arrays(np.int64, (n,), elements=st.integers(-3, 6)),
                hnp.arrays(np.int64, (n,), elements=st.sampled_from([0, 1, 2, 2**31, 2**62, 10**6, -(2**63)])),
                hnp.arrays(np.float64, (n,), elements=st.sampled_from([0.0, 1.0, 2.0, 1.5, np.nan, np.inf, 1e300])),
                hnp.arrays(st.sampled_from([np.uint8, np.uint64, np.int8, np.float16, np.bool_]), (n,)),
                hnp.arrays(np.int64, st.sampled_from([(0,), (n, 1), (n, 2), (1, n), (), (n + 1,)]),
                           elements=st.integers(0, 2)),
            ))
        else:
            shape = GOOD[k].shape
            new = draw(st.one_of(
                hnp.arrays(st.sampled_from([np.float32, np.float64]), shape,
                           elements=st.sampled_from([0.0, 1.0, 255.0, -1e30, 1e30, np.nan, np.inf, -np.inf])),
                hnp.arrays(np.float16, shape, elements=st.sampled_from([0.0, 0.5, 255.0, 65504.0, np.nan])),
                hnp.arrays(st.sampled_from([np.uint8, np.int64, np.uint16, np.bool_, np.int8]), shape),
                hnp.arrays(np.uint8, st.sampled_from([(n, 8, 8), (n, 1, 8, 8), (n, 3, 8, 8), (n, 8, 8, 2),
                                                      (n, 8, 8, 5), (n, 1, 1, 1), (n, 1, 40, 1), (n, 8, 8, 0),
                                                      (0, 8, 8, 1), (n, 64), (n,), (n, 8, 8, 1, 1)])),
            ))
        arrays[k] = new
    return arrays


@fuzz(15)
@given(arrays=npz_arrays(), how=st.sampled_from(["data-dir", "path"]))
def test_fuzz_data_random_arrays(world, capfd, arrays, how):
    _deliver(world, capfd, _npz_bytes(arrays), how)


@fuzz(5)
@given(arrays=nearly_good_arrays(), how=st.sampled_from(["data-dir", "path"]))
@example(arrays={**GOOD, "y_train": np.full(40, 2**62)}, how="path")  # a 2**62-way classifier: out of memory
def test_fuzz_data_nearly_good_arrays(world, capfd, arrays, how):
    _deliver(world, capfd, _npz_bytes(arrays), how)
