"""Every bad input ends with exactly one line on stderr naming the problem (and the fix), exit status 2, no
traceback, and earlier run directories untouched. A table: a new mistake is one line in CASES.

Most cases call the CLI in-process (suite.cli.main, fast); the ones marked `sub` also run as a real
`python -m suite` subprocess."""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest

from conftest import run_cli

GOOD = ["--epochs", "1", "--set", "data.limit=64", "--set", "train.verbose=0"]


def _npz(path, n=40, n_test=10, size=12, classes=3, **change):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (n, size, size, 1), dtype=np.uint8),
                  y_train=np.arange(n) % classes,
                  x_test=rng.integers(0, 255, (n_test, size, size, 1), dtype=np.uint8),
                  y_test=np.arange(n_test) % classes)
    arrays.update(change)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _files(d):
    """Every input file the cases use, made once."""
    f = {}
    f["good"] = _npz(d / "good.npz")
    raw = f["good"].read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    f["truncated"] = d / "truncated.npz"
    (d / "corrupt.npz").write_bytes(os.urandom(2000))
    f["corrupt"] = d / "corrupt.npz"
    f["nokeys"] = _npz(d / "nokeys.npz", y_test=None)
    f["mismatch"] = _npz(d / "mismatch.npz", y_train=np.arange(36) % 3)
    f["neglabels"] = _npz(d / "neglabels.npz", y_train=np.arange(40) % 3 - 1)
    f["floatlabels"] = _npz(d / "floatlabels.npz", y_train=(np.arange(40) % 3) + 0.5)
    f["emptytrain"] = _npz(d / "emptytrain.npz", x_train=np.zeros((0, 12, 12, 1), np.uint8),
                           y_train=np.zeros((0,), np.int64))
    f["emptytest"] = _npz(d / "emptytest.npz", x_test=np.zeros((0, 12, 12, 1), np.uint8),
                          y_test=np.zeros((0,), np.int64))
    f["flat"] = _npz(d / "flat.npz", x_train=np.zeros((40, 144), np.uint8))
    nan = np.zeros((40, 12, 12, 1), np.float32)
    nan[3, 2, 2, 0] = np.nan
    f["nanpixels"] = _npz(d / "nanpixels.npz", x_train=nan)
    f["sizes"] = _npz(d / "sizes.npz", x_test=np.zeros((10, 14, 14, 1), np.uint8))
    np.savez(d / "pickled.npz", x_train=np.array([object(), 1], dtype=object), y_train=np.arange(2),
             x_test=np.zeros((1, 2, 2)), y_test=np.arange(1))
    f["pickled"] = d / "pickled.npz"
    f["tiny"] = _npz(d / "tiny.npz", n=2, n_test=2)
    (d / "emptyfolder" / "cats").mkdir(parents=True)
    f["emptyfolder"] = d / "emptyfolder"
    (d / "cifar100dir").mkdir()
    _npz(d / "cifar100dir" / "cifar100.npz", y_train=np.arange(40) + 90)  # labels up to 129 for 100 classes
    f["cifar100dir"] = d / "cifar100dir"
    toml = {
        "badtoml": 'name = "lenet5\n[train\nepochs = 2\n',
        "badsection": '[trainer]\nepochs = 2\n[model]\nname = "lenet5"\n',
        "nomodel": '[train]\nepochs = 2\n',
        "notatable": 'train = 5\n[model]\nname = "lenet5"\n',
        "badnet": '[model]\nname = "lenet6"\n',
        "badkey": '[model]\nname = "lenet5"\n[train]\nepoch = 2\n',
        "badtype": '[model]\nname = "lenet5"\n[train]\nepochs = "two"\n',
    }
    for k, text in toml.items():
        (d / f"{k}.toml").write_text(text)
        f[k] = d / f"{k}.toml"
    (d / "afile").write_text("not a folder")
    f["afile"] = d / "afile"
    return f


# (id, argv after "run" (a function of the files), words the one line must contain, run as subprocess too)
CASES = [
    # names
    ("unknown-network", lambda f: ["lenet6"], ["unknown network 'lenet6'", "lenet5", "no experiment"], True),
    ("unknown-network-typo", lambda f: ["alexnte"], ["alexnet"], False),
    ("missing-experiment-file", lambda f: ["nope.toml"], ["nope.toml does not exist"], False),
    # keys
    ("unknown-key", lambda f: ["lenet5", "--set", "train.lrr=0.1"], ["unknown setting train.lrr", "train.lr"], False),
    ("unknown-section", lambda f: ["lenet5", "--set", "trian.lr=0.1"], ["unknown section [trian]", "train"], False),
    ("unknown-model-knob", lambda f: ["lenet5", "--set", "model.dropuot=0.5"], ["model.dropuot", "dropout"], False),
    ("key-without-section", lambda f: ["lenet5", "--set", "lr=0.1"], ["'lr'", "section.key"], False),
    ("set-without-value", lambda f: ["lenet5", "--set", "train.lr"], ["section.key=value"], False),
    # types
    ("type-int", lambda f: ["lenet5", "--set", "train.epochs=abc"], ["train.epochs", "wrong type", "integer"], False),
    ("type-bool", lambda f: ["lenet5", "--set", "data.flip=3"], ["data.flip", "true or false"], False),
    ("type-number", lambda f: ["lenet5", "--set", 'train.lr="fast"'], ["train.lr", "a number"], False),
    ("type-nan", lambda f: ["lenet5", "--set", "train.lr=nan"], ["train.lr", "finite"], False),
    ("type-list-items", lambda f: ["exercise2_cnn", "--set", "model.filters=[6.5, 16]"],
     ["model.filters", "list of integers"], False),
    ("type-flag", lambda f: ["lenet5", "--epochs", "1.5"], ["--epochs", "invalid int value"], False),
    ("type-model-name", lambda f: ["lenet5", "--set", "model.name=3"], ["model.name", "string"], False),
    ("image-size", lambda f: ["lenet5", "--set", "data.image_size=[0, 5]"], ["data.image_size", "height, width"],
     False),
    ("milestones", lambda f: ["lenet5", "--set", 'train.milestones=["a"]'], ["train.milestones", "positive"], False),
    # ranges
    ("lr-zero", lambda f: ["lenet5", "--lr", "0"], ["train.lr = 0", "> 0"], False),
    ("lr-negative", lambda f: ["lenet5", "--lr", "-0.1"], ["train.lr = -0.1", "> 0"], False),
    ("batch-size-zero", lambda f: ["lenet5", "--batch-size", "0"], ["train.batch_size = 0", "≥ 1"], False),
    ("epochs-zero", lambda f: ["lenet5", "--epochs", "0"], ["train.epochs = 0", "≥ 1"], False),
    ("dropout-one", lambda f: ["lenet5", "--set", "model.dropout=1.0"], ["model.dropout = 1.0", "< 1"], False),
    ("dropout-negative", lambda f: ["lenet5", "--set", "model.dropout=-0.1"], ["model.dropout", "≥ 0"], False),
    ("momentum", lambda f: ["lenet5", "--set", "train.momentum=1.5"], ["train.momentum", "< 1"], False),
    ("val-split-one", lambda f: ["lenet5", "--set", "data.val_split=1.0"], ["data.val_split", "< 1"], False),
    ("limit-negative", lambda f: ["lenet5", "--set", "data.limit=-1"], ["data.limit", "≥ 0"], False),
    # choices
    ("optimizer", lambda f: ["lenet5", "--set", "train.optimizer=adamw"], ["train.optimizer", "sgd, adam"], False),
    ("loss", lambda f: ["lenet5", "--set", "train.loss=hinge"], ["train.loss", "categorical_crossentropy"], False),
    ("schedule", lambda f: ["lenet5", "--set", "train.schedule=triangle"], ["train.schedule", "cosine"], False),
    ("cutout-above-image", lambda f: ["lenet5", "--set", "data.cutout=40"],
     ["data.cutout = 40", "8×8 images", "at most 8"], False),
    ("plateau-val-without-val", lambda f: ["lenet5", "--set", "train.plateau_monitor=val_loss", "--set",
                                           "data.val_split=0"], ["train.plateau_monitor", "validation set"], False),
    ("whiten-large-images", lambda f: ["lenet5", "--set", "data.whiten=zca", "--set", "data.image_size=[80, 80]"],
     ["data.whiten = 'zca'", "at most 4,096 values", "6,400", "data.whiten=none"], False),
    ("whiten-choice", lambda f: ["lenet5", "--set", "data.whiten=pca"], ["data.whiten", "none, zca"], False),
    ("reflect-crop-above-image", lambda f: ["lenet5", "--set", "data.crop=8", "--set", "data.crop_fill=reflect"],
     ["data.crop = 8", "reflect", "data.crop ≤ 7"], False),
    ("padding", lambda f: ["lenet5", "--set", "model.padding=full"], ["model.padding", "same, valid"], False),
    ("channels", lambda f: ["lenet5", "--set", "data.channels=2"], ["data.channels", "0, 1, 3"], False),
    ("precision", lambda f: ["lenet5", "--set", "train.precision=float64"], ["train.precision", "float32"], False),
    ("step-without-milestones", lambda f: ["lenet5", "--set", "train.schedule=step"], ["train.milestones"], False),
    ("smoothing-sparse", lambda f: ["lenet5", "--set", "train.label_smoothing=0.1"],
     ["label_smoothing", "categorical_crossentropy"], False),
    # experiment files (never executed: TOML only)
    ("malformed-toml", lambda f: [f["badtoml"]], ["not valid TOML", "badtoml.toml"], True),
    ("toml-unknown-section", lambda f: [f["badsection"]], ["unknown section [trainer]", "train"], False),
    ("toml-no-model", lambda f: [f["nomodel"]], ["names no network", "[model]"], False),
    ("toml-not-a-table", lambda f: [f["notatable"]], ["[train]", "table"], False),
    ("toml-unknown-network", lambda f: [f["badnet"]], ["unknown network 'lenet6'", "lenet5"], False),
    ("toml-unknown-key", lambda f: [f["badkey"]], ["unknown setting train.epoch", "badkey.toml", "epochs"], False),
    ("toml-wrong-type", lambda f: [f["badtype"]], ["train.epochs = 'two'", "integer"], False),
    # data
    ("unknown-data-set", lambda f: ["lenet5", "--data", "imagenet"], ["unknown data set 'imagenet'", "mnist"], False),
    ("missing-data-file", lambda f: ["lenet5", "--data", str(f["good"]).replace("good", "gone")],
     ["gone.npz does not exist"], False),
    ("truncated-npz", lambda f: ["lenet5", "--data", f["truncated"]], ["truncated.npz", "not a readable .npz"], False),
    ("corrupt-npz", lambda f: ["lenet5", "--data", f["corrupt"]], ["corrupt.npz", "not a readable .npz"], False),
    ("pickled-npz", lambda f: ["lenet5", "--data", f["pickled"]], ["pickled.npz", "not a readable .npz"], False),
    ("npz-missing-keys", lambda f: ["lenet5", "--data", f["nokeys"]], ["lacks y_test", "x_train, y_train"], False),
    ("x-y-lengths", lambda f: ["lenet5", "--data", f["mismatch"]], ["x_train has 40 images but y_train 36"], False),
    ("negative-labels", lambda f: ["lenet5", "--data", f["neglabels"]], ["labels outside [0,"], False),
    ("labels-above-classes", lambda f: ["lenet5", "--data", "cifar100"], ["labels outside [0, 100)"], False),
    ("float-labels", lambda f: ["lenet5", "--data", f["floatlabels"]], ["integer class ids"], False),
    ("empty-train", lambda f: ["lenet5", "--data", f["emptytrain"]], ["train split is empty"], False),
    ("empty-test", lambda f: ["lenet5", "--data", f["emptytest"]], ["test split is empty"], False),
    ("flat-images", lambda f: ["lenet5", "--data", f["flat"]], ["[N, H, W]", "[40, 144]"], False),
    ("nan-pixels", lambda f: ["lenet5", "--data", f["nanpixels"]], ["1 image with NaN"], False),
    ("train-test-sizes", lambda f: ["lenet5", "--data", f["sizes"]], ["one size"], False),
    ("val-split-leaves-nothing", lambda f: ["lenet5", "--data", f["tiny"], "--set", "data.val_split=0.9"],
     ["leaves no training data"], False),
    ("empty-image-folder", lambda f: ["lenet5", "--data", f["emptyfolder"]], ["holds no images"], False),
    # network vs image size: name the layer and the size
    ("valid-padding-too-small", lambda f: ["lenet5", "--set", "model.pad_to=0"],
     ["layer c3_conv", "2×2 feature map", "8×8×1", "padding"], True),
    ("valid-padding-tiny-image", lambda f: ["lenet5_modern", "--set", "model.pad_to=0", "--set",
                                            "data.image_size=[4,4]"], ["layer c1_conv", "4×4 feature map"], False),
    ("builder-own-check", lambda f: ["exercise2_cnn", "--data", "digits"], ["conv2", "2×2"], False),
    # log directory
    ("logdir-under-a-file", lambda f: ["lenet5", "--logdir", f["afile"] / "logs"],
     ["cannot write the log directory", "afile/logs:", "is a file", "--logdir"], False),
    ("logdir-is-a-file", lambda f: ["lenet5", "--logdir", f["afile"]], ["cannot write the log directory"], False),
    # the command line itself
    ("unknown-command", lambda f: None, ["invalid choice: 'fly'"], False),
]


def _argv(case, files, logs):
    _, build, _, _ = case
    args = build(files)
    if args is None:
        return ["fly"]
    args = [str(a) for a in args]
    if "--logdir" not in args:
        args += ["--logdir", str(logs)]
    return ["run", *GOOD, *args]  # the case's own flags last: they win


def _snapshot(root):
    """Every file and folder under root with its size, mtime and content hash."""
    snap = {}
    for p in sorted(pathlib.Path(root).rglob("*")):
        st = p.stat()
        digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        snap[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns, digest)
    return snap


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Input files, and a log root holding an earlier finished run and an earlier unfinished one."""
    from suite import cli

    d = tmp_path_factory.mktemp("bad_inputs")
    files = _files(d)
    logs = d / "logs"
    assert cli.main(["run", "lenet5_modern", "--logdir", str(logs), *GOOD]) == 0
    assert cli.main(["run", "lenet5_modern", "--data", str(files["good"]), "--logdir", str(logs), *GOOD]) == 0
    # make the second one look killed mid-run: no results.json
    (unfinished,) = [r for r in logs.glob("lenet5_modern/*") if "good" in (r / "config.json").read_text()]
    (unfinished / "results.json").unlink()
    return dict(files=files, logs=logs, dir=d, unfinished=unfinished)


def _check_line(rc, err, words):
    assert rc == 2, f"exit {rc}; stderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], f"{w!r} not in: {lines[0]}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, capfd, monkeypatch):
    from suite import cli

    if case[0] == "labels-above-classes":
        monkeypatch.setenv("SUITE_DATA_DIR", str(world["files"]["cifar100dir"]))
    before = _snapshot(world["logs"])
    capfd.readouterr()
    rc = cli.main(_argv(case, world["files"], world["logs"]))
    out, err = capfd.readouterr()
    _check_line(rc, err, case[2])
    assert out == "", f"nothing belongs on stdout: {out[:500]}"
    assert _snapshot(world["logs"]) == before, "an earlier run directory was touched"


@pytest.mark.parametrize("case", [c for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]])
def test_bad_input_subprocess(case, world):
    before = _snapshot(world["logs"])
    p = run_cli(*_argv(case, world["files"], world["logs"]))
    _check_line(p.returncode, p.stderr, case[2])
    assert _snapshot(world["logs"]) == before


def test_broken_data_of_an_unfinished_run_leaves_it_untouched(world, capfd):
    """The same command as an unfinished run (which it would resume) after its data file broke."""
    from suite import cli

    good = world["files"]["good"]
    saved = good.read_bytes()
    before = _snapshot(world["logs"])
    try:
        good.write_bytes(saved[:100])
        capfd.readouterr()
        rc = cli.main(["run", "lenet5_modern", "--data", str(good), "--logdir", str(world["logs"]), *GOOD])
        _check_line(rc, capfd.readouterr().err, ["good.npz", "not a readable .npz"])
    finally:
        good.write_bytes(saved)
    assert _snapshot(world["logs"]) == before
    assert json.loads((world["unfinished"] / "config.json").read_text())["data"]["name"] == str(good)


def test_debug_shows_the_traceback(world, capfd):
    from suite import cli

    capfd.readouterr()
    rc = cli.main(["--debug", "run", "lenet6", "--logdir", str(world["logs"])])
    err = capfd.readouterr().err
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: unknown network")


def test_table_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_log_dir(world, capfd, tmp_path):
    from suite import cli

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        capfd.readouterr()
        rc = cli.main(["run", "lenet5", "--logdir", str(ro), *GOOD])
        _check_line(rc, capfd.readouterr().err, ["cannot write the log directory", "not writable"])
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)
