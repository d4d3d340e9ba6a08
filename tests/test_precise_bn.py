"""eval.precise_bn (suite/precise_bn.py): BatchNorm's statistics recomputed with the current weights are those of
the layers' inputs over the given training images, in training mode; nothing else of the network changes; a run
tests and saves its network with them, and trains exactly as without them."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from conftest import cli_here


def _net(keras):
    """conv → BN → ReLU → dense → BN → dropout: the second BN's input depends on the first normalising with each
    batch's own statistics (training mode); the dropout has a seed state that must not move."""
    x = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", name="conv")(x)
    h = keras.layers.BatchNormalization(name="bn_a")(h)
    h = keras.layers.Flatten()(keras.layers.ReLU()(h))
    h = keras.layers.Dense(5, name="hidden")(h)
    h = keras.layers.BatchNormalization(momentum=0.9, name="bn_b")(h)
    h = keras.layers.Dropout(0.5, seed=1)(h)
    return keras.Model(x, keras.layers.Dense(2)(h))


def test_statistics_are_the_pooled_ones_of_the_training_images():
    import keras
    import tensorflow as tf

    from suite.precise_bn import PreciseBN

    keras.utils.set_random_seed(0)
    net = _net(keras)
    rng = np.random.default_rng(0)
    # batch means far apart, a short last batch: the pooled variance differs from the mean of the batch variances
    x = np.concatenate([rng.normal(loc, 1.0, (n, 4, 4, 2)) for loc, n in ((0.0, 8), (3.0, 8), (-2.0, 5))])
    x = x.astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x), "int64"))).batch(8)

    probe = keras.Model(net.input, [net.get_layer("bn_a").input, net.get_layer("bn_b").input])
    seen = [probe(x[i:i + 8], training=True) for i in range(0, len(x), 8)]
    inputs = [np.concatenate([keras.ops.convert_to_numpy(s[k]) for s in seen]) for k in (0, 1)]
    expect = {"bn_a": inputs[0].reshape(-1, 3), "bn_b": inputs[1]}

    for layer in ("bn_a", "bn_b"):  # far from the answer, so a layer left alone fails
        bn = net.get_layer(layer)
        bn.moving_mean.assign(np.full(bn.moving_mean.shape, 50.0, "float32"))
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, 1e4, "float32"))
    weights = [keras.ops.convert_to_numpy(v) for v in net.trainable_variables]
    others = {v.path: keras.ops.convert_to_numpy(v) for v in net.non_trainable_variables if "moving" not in v.path}
    assert any("seed" in p for p in others)  # the dropout's seed state is among them

    assert PreciseBN(net, batches)() == len(x)
    for layer, values in expect.items():
        bn = net.get_layer(layer)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), values.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), values.var(0), rtol=1e-4,
                                   atol=1e-5)
    assert [net.get_layer(n).momentum for n in ("bn_a", "bn_b")] == [0.99, 0.9]  # put back
    for before, v in zip(weights, net.trainable_variables):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(v))
    for v in net.non_trainable_variables:
        if v.path in others:
            np.testing.assert_array_equal(others[v.path], keras.ops.convert_to_numpy(v), err_msg=v.path)


def test_a_network_without_batch_norm_is_left_alone():
    import keras
    import tensorflow as tf

    from suite.precise_bn import PreciseBN

    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert PreciseBN(net, tf.data.Dataset.from_tensor_slices((np.ones((4, 3), "float32"), [0] * 4)).batch(2))() == 0


# lenet5_modern with batch norm after each conv and dense layer: the same code path as resnet20's, built and
# traced in a fraction of the time; the runs train in this process
NET = ("lenet5_modern", "--set", "model.batch_norm=true")


def _run(logs, *sets):
    code, _, err = cli_here("run", *NET, "--data", "digits", "--epochs", "2", "--logdir", logs, "--set",
                            "data.limit=512", "--set", "data.crop=1", "--set", "data.flip=true", *sets)
    assert code == 0, err[-2000:]
    (run,) = (logs / NET[0]).iterdir()
    return run, json.loads((run / "results.json").read_text())


@pytest.fixture(scope="module")
def off(tmp_path_factory):
    """A run trained with eval.precise_bn=0 (the moving averages); tests copy it before touching it."""
    return _run(tmp_path_factory.mktemp("off"), "--set", "eval.precise_bn=0")


def _copy(run, tmp_path):
    return pathlib.Path(shutil.copytree(run, tmp_path / run.name))


def _bn_stats(model):
    import keras

    from suite.precise_bn import bn_layers

    return [keras.ops.convert_to_numpy(v) for b in bn_layers(model) for v in (b.moving_mean, b.moving_variance)]


def _gap(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def test_a_run_tests_and_saves_its_network_with_recomputed_statistics(tmp_path, off):
    from suite import trained

    on, r_on = _run(tmp_path)
    off, r_off = _copy(off[0], tmp_path), off[1]
    assert r_on["history"]["loss"] == r_off["history"]["loss"]  # the training itself is the same
    assert r_on["history"]["accuracy"] == r_off["history"]["accuracy"]
    assert r_on["history"]["val_accuracy"] != r_off["history"]["val_accuracy"]  # validation reads the new ones
    saved = _bn_stats(trained.load(on, "last").net)  # the same weights as off's last.keras: the same training
    old = trained.load(off, "last")
    assert _gap(saved, _bn_stats(old.net)) > 1e-2  # off saved the moving averages: the check can tell them apart
    # `suite eval --precise-bn` on a run trained without it: what the run with it saved (same images, same pass)
    assert old.bn == "moving averages" and old.recompute_bn(8192) == 512 and old.bn == "recomputed"
    assert _gap(saved, _bn_stats(old.net)) < 1e-4


def test_eval_recomputes_an_old_runs_statistics_and_leaves_its_files(tmp_path, off):
    off = _copy(off[0], tmp_path)
    files = {p.name: p.read_bytes() for p in off.iterdir() if p.is_file()}
    code, out, _ = cli_here("eval", off)
    assert code == 0 and "moving averages" in out and "--precise-bn 8192" in out
    code, out, err = cli_here("eval", off, "--precise-bn", "8192")
    assert code == 0 and "recomputed over 512 training images" in out, err[-2000:]
    saved = json.loads((off / "eval.json").read_text())["digits"]
    assert saved["none"]["batch_norm"] == "moving averages" and saved["none"]["precise_bn"] == 0
    assert saved["none+precise_bn"]["batch_norm"] == "recomputed" and saved["none+precise_bn"]["precise_bn"] == 512
    assert {p.name: p.read_bytes() for p in off.iterdir() if p.is_file() and p.name != "eval.json"} == files
    # predict (and viz, through the same trained.note_bn) say so, and recompute on request
    picture = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(picture)
    code, plain, err = cli_here("predict", off, picture)
    assert code == 0 and "moving averages" in err, err[-2000:]
    code, out, err = cli_here("predict", off, picture, "--precise-bn", "8192")
    assert code == 0 and "recomputed over 512 training images" in err, err[-2000:]
    assert out != plain  # the probabilities moved
    assert {p.name: p.read_bytes() for p in off.iterdir() if p.is_file() and p.name != "eval.json"} == files


@pytest.mark.parametrize("images", ["-1", "1.5", "\"many\""])
def test_a_bad_precise_bn_is_one_line(tmp_path, images):
    code, _, err = cli_here("run", *NET, "--data", "digits", "--logdir", tmp_path, "--set", f"eval.precise_bn={images}")
    assert code == 2 and "eval.precise_bn" in err and "Traceback" not in err and not list(tmp_path.iterdir())
