"""Using a trained run: `suite eval` (with test-time augmentation), `suite predict`, and `[eval] tta` in `run`."""

import json
import shutil

import numpy as np
import pytest

from conftest import cli_here
from suite import evaluate

TINY = ["--epochs", "3", "--set", "train.optimizer=adam", "--set", "train.lr=0.003", "--set", "train.verbose=0"]


def _run(logdir, *extra):
    code, out, err = cli_here("run", "lenet5_modern", "--logdir", logdir, *TINY, *extra)
    assert code == 0, err[-2000:]
    return max((logdir / "lenet5_modern").iterdir())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("logs"), "--set", "data.augment_on=device", "--set", "data.flip=true")


def _reference(run_dir):
    """Softmax of best.keras on the test set through the training code path (runner.prepare/datasets)."""
    import keras

    from suite import runner
    from suite.nets import custom_layers

    custom_layers()
    cfg = json.loads((run_dir / "config.json").read_text())
    parts = runner.prepare(cfg)
    ds = runner.datasets(cfg, parts)
    model = keras.models.load_model(run_dir / "best.keras", safe_mode=True, compile=False)
    return np.concatenate([np.asarray(model.predict_on_batch(x)) for x, _ in ds["test"]]), parts["data"].y_test


def test_views():
    x = np.random.default_rng(0).integers(0, 256, (3, 6, 5, 1), dtype=np.uint8)
    assert len(evaluate.views(x, "none", 1)) == 1
    f = evaluate.views(x, "flip", 1)
    np.testing.assert_array_equal(f[1], x[:, :, ::-1])
    v = evaluate.views(x, "10crop", 2)
    assert len(v) == 10 and all(w.shape == x.shape for w in v)
    np.testing.assert_array_equal(v[0], x)  # the centre view is the image
    pad = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    np.testing.assert_array_equal(v[4], pad[:, 4:10, 4:9])  # bottom-right corner
    np.testing.assert_array_equal(v[1 + 5], v[1][:, :, ::-1])  # mirrors follow in the same order


def test_metrics_on_known_probabilities():
    p = np.tile(np.arange(1, 11) / 1000, (4, 1))  # no ties: class 9 is the runner-up, then 8, 7, …
    p[[0, 1, 2, 3], [3, 3, 5, 9]] = 0.91
    m = evaluate.metrics(p, np.array([3, 4, 5, 0]))  # rows 1 and 3: the label is outside the top 5
    assert m["accuracy"] == 0.5 and m["top5"] == 0.5
    assert m["loss"] == pytest.approx(-(2 * np.log(0.91) + np.log(0.005) + np.log(0.001)) / 4)
    assert "top5" not in evaluate.metrics(p[:, :5] / p[:, :5].sum(1, keepdims=True), np.array([3, 4, 0, 0]))


@pytest.mark.parametrize("which", ["host", "device"])
def test_eval_matches_the_training_path_and_keeps_results(which, run_dir, device_run):
    run = run_dir if which == "host" else device_run
    before = (run / "results.json").read_bytes()
    code, out, err = cli_here("eval", run)
    assert code == 0, err[-2000:]
    got = json.loads((run / "eval.json").read_text())["digits"]["none"]
    probs, y = _reference(run)
    assert got["accuracy"] == pytest.approx(float(np.mean(probs.argmax(-1) == y)), abs=1e-9)
    assert got["examples"] == len(y) and "accuracy" in out
    code, out, err = cli_here("eval", run, "--tta", "flip")
    assert code == 0, err[-2000:]
    saved = json.loads((run / "eval.json").read_text())["digits"]
    assert set(saved) == {"none", "flip"} and saved["flip"]["views"] == 2  # both kept
    assert saved["flip"]["single_view"]["accuracy"] == pytest.approx(got["accuracy"])
    assert "points over the image alone" in out
    assert (run / "results.json").read_bytes() == before  # eval never touches results.json


def test_eval_other_data_needs_the_runs_classes(run_dir, tmp_path):
    np.savez(tmp_path / "many.npz", x_train=np.zeros((4, 8, 8, 1), np.uint8), y_train=np.arange(4) * 7,
             x_test=np.zeros((2, 8, 8, 1), np.uint8), y_test=np.array([0, 21]))
    code, out, err = cli_here("eval", run_dir, "--data", tmp_path / "many.npz")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "labels up to 21" in err and "Traceback" not in err


def test_predict_reads_pictures_through_the_runs_pipeline(run_dir, tmp_path):
    """Test images saved as 8× enlarged PNGs (grey) and JPEG-free RGB PNGs come back as the same pixels, so
    predict must give the training path's probabilities for them."""
    from PIL import Image

    from suite import data

    probs, _ = _reference(run_dir)
    x = data.load("digits").x_test
    (tmp_path / "pics").mkdir()
    for i in range(3):
        im = Image.fromarray(x[i, :, :, 0]).resize((64, 64), Image.Resampling.NEAREST)
        (im if i else im.convert("RGB")).save(tmp_path / "pics" / f"{i}.png")
    code, out, err = cli_here("predict", run_dir, tmp_path / "pics", "--top", "20")
    assert code == 0, err[-2000:]
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        path, ranked = line.split(": ", 1)
        assert path.endswith(f"{i}.png")
        pairs = [s.rsplit(" ", 1) for s in ranked.split(", ")]
        assert len(pairs) == 10  # --top is capped at the number of classes
        best_name, best_p = pairs[0]
        assert best_name == str(int(probs[i].argmax()))
        assert float(best_p) == pytest.approx(float(probs[i].max()), abs=1e-3)


@pytest.mark.parametrize("case", ["not_an_image", "missing_image", "missing_run", "not_a_run", "no_best",
                                  "damaged_best", "bad_top", "bad_precise_bn",
                                  "bad_precise_bn_predict"])
def test_bad_inputs_one_line(case, run_dir, tmp_path):
    img = tmp_path / "x.png"
    img.write_text("not a picture")
    run = run_dir
    if case == "missing_run":
        run = tmp_path / "nope"
    elif case == "not_a_run":
        run = tmp_path
    elif case in ("no_best", "damaged_best"):
        run = tmp_path / "copy"
        shutil.copytree(run_dir, run)
        if case == "no_best":
            (run / "best.keras").unlink()
        else:
            (run / "best.keras").write_bytes((run / "best.keras").read_bytes()[:500])
    args = {"missing_image": ["predict", run, tmp_path / "none.png"], "bad_top": ["predict", run, img, "--top", "0"],
            "bad_precise_bn": ["eval", run, "--precise-bn", "-1"],
            "bad_precise_bn_predict": ["predict", run, img, "--precise-bn", "-1"]}
    if case in ("not_an_image",):
        args[case] = ["predict", run, img]
    before = sorted(p.name for p in run_dir.iterdir())
    for cmd in [args[case]] if case in args else [["predict", run, img], ["eval", run]]:
        if case in ("no_best", "damaged_best", "missing_run", "not_a_run") and cmd[0] == "predict":
            img = tmp_path / "ok.png"
            from PIL import Image

            Image.new("L", (8, 8)).save(img)
            cmd = ["predict", run, img]
        code, out, err = cli_here(*cmd)
        assert code == 2, (case, out, err[-1500:])
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_tta_setting_gives_runs_test_figure_and_keeps_the_run_id(run_dir, tmp_path):
    plain = run_dir  # the same settings but the test-time augmentation, in a new directory beside it
    flip = _run(run_dir.parent.parent, "--set", "eval.tta=flip", "--fresh")
    assert plain.name.split("-")[-1] == flip.name.split("-")[-1]  # evaluation is not part of the run's identity
    a = json.loads((plain / "results.json").read_text())["test"]
    b = json.loads((flip / "results.json").read_text())["test"]
    assert "tta" not in a and b["tta"] == "flip" and b["views"] == 2
    # same seed, same training: the image-alone figure equals the plain run's test accuracy
    assert b["single_view"]["accuracy"] == pytest.approx(a["accuracy"], abs=0.01)
    code, out, err = cli_here("run", "lenet5_modern", "--set", "eval.tta=5crop", "--logdir", tmp_path)
    assert code == 2 and "eval.tta" in err
