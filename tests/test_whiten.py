"""data.whiten = "zca": global contrast normalisation + ZCA whitening (suite/whiten.py): the fit, the layer, a run."""

import json

import keras
import numpy as np
import pytest

from conftest import cli_here
from suite import config, evaluate, registry, runner, trained, whiten


def _images(n=300, shape=(4, 4, 3), seed=0):
    """Correlated pixels in [0, 1]: a smooth random field per image plus noise, like natural images' neighbours."""
    rng = np.random.default_rng(seed)
    base = rng.random((n, 1, 1, shape[2]))
    return np.clip(base + 0.15 * rng.standard_normal((n, *shape)), 0, 1).astype(np.float32)


def _gcn(x, scale):
    """pylearn2's global_contrast_normalize (subtract_mean, L2 norm, no sqrt_bias), in float64: the reference."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    return x / (np.sqrt((x * x).sum(axis=1, keepdims=True)) / scale)


def test_gcn_centres_each_image_and_scales_it_to_the_norm():
    x = _images().reshape(300, -1)
    g = np.asarray(whiten.gcn(x, 7.0))
    assert np.allclose(g, _gcn(x, 7.0), atol=1e-5)
    assert np.allclose(g.mean(axis=1), 0, atol=1e-5)
    assert np.allclose(np.linalg.norm(g, axis=1), 7.0, rtol=1e-5)
    flat = np.asarray(whiten.gcn(np.full((1, 48), 0.3, np.float32), 7.0))  # float32 leaves ~1e-8: not blown up
    assert np.abs(flat).max() < 1e-6
    assert whiten.gcn_scale(3072) == 55.0  # pylearn2's CIFAR-10 figure


def test_fit_is_the_inverse_square_root_of_the_biased_covariance():
    x = _images()
    d = x[0].size
    mean, p = whiten.fit([x[i:i + 64] for i in range(0, len(x), 64)], d)  # in chunks, as from tf.data
    g = _gcn(x.reshape(len(x), d), whiten.gcn_scale(d))
    cov = np.cov(g, rowvar=False, bias=True)
    assert np.allclose(mean, g.mean(axis=0), atol=1e-5)
    assert np.allclose(p, p.T, atol=1e-5)  # zero-phase: the whitened image stays an image
    # P = (Σ + 0.1·I)^(-1/2): P·(Σ + 0.1·I)·P = I
    assert np.allclose(p @ (cov + whiten.FILTER_BIAS * np.eye(d)) @ p, np.eye(d), atol=1e-3)
    # whitened training images: covariance Σ·(Σ + 0.1·I)⁻¹, each eigenvalue λ/(λ + 0.1) < 1, mean 0
    out = (g - mean) @ p
    lam = np.linalg.eigvalsh(cov)
    assert np.allclose(np.sort(np.linalg.eigvalsh(np.cov(out, rowvar=False, bias=True))),
                       np.sort(lam / (lam + whiten.FILTER_BIAS)), atol=1e-3)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-4)
    one = whiten.fit([x], d)  # one chunk or many: the same sums
    assert np.allclose(one[1], p, atol=1e-4)


def test_the_layer_undoes_the_channel_normalisation_then_whitens():
    x = _images(n=40)
    d = x[0].size
    zca = whiten.fit([x], d)
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
    layer = whiten.Whiten(mean, std)
    layer.build((None, *x.shape[1:]))
    layer.centre.assign(zca[0])
    layer.matrix.assign(zca[1])
    got = np.asarray(layer((x - mean) / std))
    want = ((_gcn(x.reshape(40, d), whiten.gcn_scale(d)) - zca[0]) @ zca[1]).reshape(x.shape)
    assert got.shape == x.shape and np.allclose(got, want, atol=1e-4)


def test_wrap_puts_the_layer_in_front_of_the_networks_layers_and_round_trips(tmp_path):
    net = registry.build("lenet5", (32, 32, 1), 10)
    x = _images(n=32, shape=(32, 32, 1))
    zca = whiten.fit([x], 1024)
    mean, std = np.array([0.5], np.float32), np.array([0.25], np.float32)
    model = whiten.wrap(net, zca, mean, std)
    assert isinstance(model.layers[1], whiten.Whiten) and model.name == net.name
    assert [a.name for a in model.layers[2:]] == [b.name for b in net.layers[1:]]
    assert model.count_params() - whiten.extra_params(model) == net.count_params()
    xn = (x[:4] - mean) / std
    white = np.asarray(model.layers[1](xn))
    assert np.allclose(np.asarray(model(xn)), np.asarray(net(white)), atol=1e-5)  # net's weights
    probe = keras.Model(model.inputs, model.get_layer("c1_conv").output)  # the layers are the model's own
    first = keras.Model(net.inputs, net.get_layer("c1_conv").output)
    assert np.allclose(np.asarray(probe(xn)), np.asarray(first(white)), atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    back = runner.load_model(path)  # safe mode
    assert np.allclose(back.get_layer("whiten").matrix.numpy(), zca[1])
    assert np.allclose(np.asarray(back(xn)), np.asarray(model(xn)), atol=1e-5)


def test_the_papers_files_whiten_and_the_setting_is_checked():
    for name in ("nin", "allcnn_c"):
        assert config.resolve(name)["data"]["whiten"] == "zca"
    assert config.resolve("resnet20")["data"]["whiten"] == "none"
    with pytest.raises(config.UserError, match="data.whiten"):
        config.resolve("lenet5", ["data.whiten=pca"])


@pytest.mark.parametrize("where", ["host", "device"])
def test_run_whitens_and_eval_of_the_saved_model_agrees(tmp_path, where):
    code, _, err = cli_here("run", "lenet5", "--epochs", "2", "--logdir", tmp_path, "--set", "train.verbose=0",
                            "--set", "data.whiten=zca", "--set", "data.limit=512", "--set", "data.crop=1",
                            "--set", "train.optimizer=adam", "--set", "train.lr=0.002",
                            "--set", f"data.augment_on={where}")
    assert code == 0, err[-2000:]
    run = next((tmp_path / "lenet5").iterdir())
    res = json.loads((run / "results.json").read_text())
    assert res["runtime"]["augment_on"] == where
    assert res["params"] == registry.build("lenet5", (8, 8, 1), 10).count_params()  # the network's own
    assert res["test"]["accuracy"] > 0.3, res["test"]  # it learns from whitened digits (chance: 0.1)
    t = trained.load(run, "last")
    assert isinstance(t.net.get_layer("whiten"), whiten.Whiten)  # the Augment layer split off, Whiten kept
    d = t.data()  # `suite eval`'s path, on the model training ended with: the figure training reported
    r = evaluate.with_tta(t.net, t.batches(d.x_test, d.y_test, raw=True), "none", 0, False, t.shape, t.mean, t.std)
    assert abs(r["accuracy"] - res["test"]["accuracy"]) < 1e-6, (r, res["test"])
