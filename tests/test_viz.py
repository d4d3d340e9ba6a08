"""`python -m suite viz`: first-layer filters, feature maps per stage, Grad-CAM and dilated-net coverage, on two tiny
runs trained once for the module (LeNet-5 and a narrow HDC dilated net). Everything runs in this process: nothing
here is about processes, and each `suite` process costs ~12 s of TensorFlow start-up on 2 cores."""

import numpy as np
import pytest

from conftest import cli_here

LENET = ["lenet5_modern", "--epochs", "1", "--set", "data.limit=64"]
DILATED = ["dilated_hdc", "--data", "digits", "--epochs", "1", "--set", "data.limit=64", "--set", "model.width=0.125",
           "--set", "model.repeats=1", "--set", "train.batch_size=32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("vizlogs")
    for a in (LENET, DILATED):
        code, _, err = cli_here("run", *a, "--set", "train.verbose=0", "--logdir", logdir)
        assert code == 0, err[-2000:]
    return {name: next((logdir / name).iterdir()) for name in ("lenet5_modern", "dilated_hdc")}


@pytest.fixture(scope="module")
def lenet(runs):
    from suite import trained

    t = trained.load(runs["lenet5_modern"])
    x = next(iter(t.batches(t.data().x_test[:1], batch_size=1)))[0].numpy()
    return t, x


def _png(path):
    from PIL import Image

    assert path.is_file() and path.suffix == ".png"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode in ("RGB", "RGBA")
        assert img.width > 100 and img.height > 100
        return img.size


def test_filter_grid_shows_each_kernel_min_max_scaled():
    from suite.viz import filter_grid

    k = np.zeros((3, 3, 1, 4), np.float32)  # filter i: one hot pixel at row i of column 0, filter 3 constant
    for i in range(3):
        k[i, 0, 0, i] = 5.0
    k[..., 3] = 7.0
    grid, what = filter_grid(k, min_tile=6)  # tiles 6×6 (×2 nearest neighbour), 2 px gaps, 2×2 filters
    assert grid.shape == (2 + 2 * 8, 2 + 2 * 8, 3) and grid.min() >= 0 and grid.max() <= 1
    assert "all 4 filters 3×3×1 (grey)" in what
    tiles = [grid[2 + r * 8:8 + r * 8, 2 + c * 8:8 + c * 8, 0] for r in range(2) for c in range(2)]
    for i in range(3):
        want = np.zeros((3, 3))
        want[i, 0] = 1.0
        np.testing.assert_array_equal(tiles[i], np.kron(want, np.ones((2, 2))))
    np.testing.assert_array_equal(tiles[3], 0.5)  # constant: no contrast to stretch
    rgb, what = filter_grid(np.random.default_rng(0).normal(size=(5, 5, 3, 100)))
    assert "64 of 100 filters 5×5×3 (RGB)" in what and rgb.shape[2] == 3
    assert not np.allclose(rgb[..., 0], rgb[..., 1])  # colour, not grey
    many, what = filter_grid(np.ones((3, 3, 8, 2)))
    assert "the first 3 of 8 input channels" in what


def test_stages_of_lenet(lenet):
    from suite import viz

    t, x = lenet
    # 8×8 digits padded to 32: conv 28², pool 14², conv 10², pool 5² (c5's 1×1 map is left out)
    assert [s.name for s in viz.stages(t.net)] == ["c1_relu", "s2", "c3_relu", "s4"]
    maps = viz.feature_maps(t.net, x)
    assert [(n, a.shape) for n, a in maps] == [("c1_relu", (28, 28, 6)), ("s2", (14, 14, 6)),
                                               ("c3_relu", (10, 10, 16)), ("s4", (5, 5, 16))]


def test_gradcam_is_image_sized_in_unit_range(lenet):
    from suite import viz

    t, x = lenet
    g = viz.gradcam(t.net, x)
    assert g["layer"] == "s4" and g["size"] == (5, 5) and g["pre_softmax"]
    assert g["map"].shape == t.shape[:2] and g["map"].min() >= 0 and g["map"].max() <= 1
    assert 0 <= g["class"] < 10 and 0 < g["prob"] <= 1
    cam = viz.gradcam_map(np.ones((4, 4, 2)), -np.ones((4, 4, 2)), (8, 8))  # nothing positive: all zero
    assert cam.shape == (8, 8) and not cam.any()


def test_viz_writes_pngs_and_tensorboard_images(runs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from suite import viz

    lines = []
    files = viz.viz(runs["lenet5_modern"], out=tmp_path, echo=lines.append)
    assert set(files) == {"filters", "feature_maps", "gradcam"}  # no dilated convs: no coverage picture
    for f in files.values():
        assert f.parent == tmp_path
        _png(f)
    assert lines[:3] == [str(f) for f in files.values()] and "suite board --logdir" in lines[-1]
    acc = EventAccumulator(str(runs["lenet5_modern"] / "viz"))
    acc.Reload()
    assert {"filters", "feature_maps", "gradcam"} <= set(acc.Tags()["tensors"]) | set(acc.Tags()["images"])


def test_gridding_leaves_holes_hdc_covers(tmp_path):
    """The notes' claim, on fresh networks (the zero pattern of the gradients needs no training): rates [2,4,6]×2
    see every second position of the map they read; HDC [1,2,5]×2 sees all of it."""
    from suite import registry, viz
    from suite.nets import dilated

    x = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype(np.float32)
    got = {}
    for name, rates in (("dilated_gridding", [2, 4, 6]), ("dilated_hdc", [1, 2, 5])):
        cov = viz.coverage_maps(registry.build(name, (16, 16, 1), 10, width=0.25), x)
        assert cov["rates"] == rates * 2 and cov["stack"].shape == (8, 8)
        offsets = np.array(dilated.coverage(rates * 2))  # 1-D offsets one output sees, from the rates alone
        line = np.isin(np.arange(8) - cov["centre"][0], offsets)
        np.testing.assert_array_equal(cov["stack"] > 0, np.outer(line, line))
        got[name] = cov["fraction"]
    assert got == {"dilated_gridding": 0.25, "dilated_hdc": 1.0}
    assert viz.coverage_maps(registry.build("lenet5_modern", (32, 32, 1), 10), x[:, :, :, :1]) is None


def test_cli_coverage_for_dilated_run_and_one_line_errors(runs, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    code, out, err = cli_here("viz", runs["dilated_hdc"], "--out", tmp_path / "pics")
    assert code == 0, err[-2000:]
    lines = out.strip().splitlines()
    names = ["filters", "feature_maps", "gradcam", "coverage"]
    assert lines[:4] == [str(tmp_path / "pics" / f"{n}.png") for n in names]
    assert lines[4] == ("see them in TensorBoard (run 'viz', Images tab): python -m suite board --logdir "
                        f"{runs['dilated_hdc']}")
    for n in names:
        _png(tmp_path / "pics" / f"{n}.png")
    code, _, err = cli_here("viz", runs["lenet5_modern"], notes)
    assert code == 2 and "Traceback" not in err
    err = err.strip().splitlines()
    assert len(err) == 1 and "is not an image Pillow can read" in err[0] and "give a PNG or JPEG file" in err[0], err


def test_missing_run_dir_is_one_line_exit_2(tmp_path, capsys):
    from suite import cli

    assert cli.main(["viz", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
