"""Augmentation on the device (suite/augment.py) against the host pipeline, and the "auto" settings."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cli_here, run_cli
from suite import augment, config, data, hardware, pipeline

HOST = dict(crop=0, flip=False, shuffle=False, cache=True, batched_augment=True)


def _images(n=16, shape=(8, 8, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_crop_windows_are_the_padded_image_at_the_offsets():
    import keras

    x = _images(5)
    offsets = np.array([[0, 0], [4, 4], [2, 3], [1, 0], [4, 0]], np.int32)
    got = keras.ops.convert_to_numpy(augment.crop_windows(x.astype("float32"), offsets, 2))
    pad = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)]).astype("float32")
    want = np.stack([pad[i, r:r + 8, c:c + 8] for i, (r, c) in enumerate(offsets)])
    np.testing.assert_array_equal(got, want)


def test_reflected_crops_are_windows_of_the_reflected_image_at_the_same_offsets():
    """data.crop_fill = "reflect" (Page 2018, airbench): NumPy's reflect padding, on the host and the device; the
    offsets a seed draws are the ones of zero padding."""
    import keras
    import tensorflow as tf

    x = _images(64, (6, 6, 3)).astype("float32") / 255
    offsets = np.random.default_rng(0).integers(0, 5, (64, 2)).astype(np.int32)
    padr = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    want = np.stack([padr[i, r:r + 6, c:c + 6] for i, (r, c) in enumerate(offsets)])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(augment.crop_windows(x, offsets, 2, "reflect")), want)
    seed = tf.constant([4, 2], tf.int64)
    zeros, refl = (pipeline.augment(tf.constant(x), seed, 2, crop_fill=f).numpy() for f in ("constant", "reflect"))
    padz = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    for i in range(len(x)):
        same = [(r, c) for r in range(5) for c in range(5) if np.array_equal(zeros[i], padz[i, r:r + 6, c:c + 6])
                and np.array_equal(refl[i], padr[i, r:r + 6, c:c + 6])]
        assert same, f"image {i}: no offset gives both crops"
    assert not np.array_equal(zeros, refl)
    layer = augment.Augment(np.zeros(3), np.ones(3), crop=2, seed=1, crop_fill="reflect")
    assert augment.Augment.from_config(json.loads(json.dumps(layer.get_config()))).crop_fill == "reflect"


def test_uint8_feed_gives_the_host_pipelines_normalised_pixels():
    """Raw uint8 batches through the Augment layer at inference == the host pipeline's float batches."""
    x, y = _images(40), np.arange(40) % 4
    mean, std = pipeline.channel_stats(x, 3)
    kw = dict(shape=(8, 8, 3), batch_size=16, training=False, data_cfg=HOST, seed=0, mean=mean, std=std)
    host = np.concatenate([b.numpy() for b, _ in pipeline.make(x, y, **kw)])
    raw_batches = [b.numpy() for b, _ in pipeline.make(x, y, raw=True, **kw)]
    assert raw_batches[0].dtype == np.uint8
    assert pipeline.raw_format(x, (8, 8, 3)) == ("uint8", 1 / 255)
    layer = augment.Augment(mean, std, crop=2, flip=True, seed=0)
    dev = np.concatenate([np.asarray(layer(b, training=False)) for b in raw_batches])
    np.testing.assert_allclose(dev, host, rtol=0, atol=1e-5)


def test_grey_to_rgb_and_resize_take_the_float_feed():
    x = _images(4, (8, 8, 1))
    assert pipeline.raw_format(x, (8, 8, 3)) == ("uint8", 1 / 255)  # a channel copy is exact in uint8
    assert pipeline.raw_format(x, (16, 16, 1)) == ("float32", 1.0)  # resizing is not
    assert pipeline.raw_format(_images(4), (8, 8, 1)) == ("float32", 1.0)  # nor is RGB → grey


def test_a_seed_fixes_the_crops_and_flips():
    x = _images(32)
    mean, std = np.zeros(3, "float32"), np.ones(3, "float32")

    def draw(seed):
        return np.asarray(augment.Augment(mean, std, crop=3, flip=True, seed=seed)(x, training=True))

    a, b, c = draw(1), draw(1), draw(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    layer = augment.Augment(mean, std, crop=3, flip=True, seed=1)
    first, second = np.asarray(layer(x, training=True)), np.asarray(layer(x, training=True))
    assert not np.array_equal(first, second), "every batch must get new draws"
    # every output is a window of the zero-padded image, possibly mirrored
    pad = np.pad(x, [(0, 0), (3, 3), (3, 3), (0, 0)]).astype("float32") / 255
    for i in range(len(x)):
        windows = [pad[i, r:r + 8, q:q + 8] for r in range(7) for q in range(7)]
        assert any(np.allclose(a[i], w) or np.allclose(a[i], w[:, ::-1]) for w in windows)


def test_flip_only_mirrors_about_half():
    x = _images(200)
    mean, std = np.zeros(3, "float32"), np.ones(3, "float32")
    out = np.asarray(augment.Augment(mean, std, flip=True, seed=0)(x, training=True))
    src = x.astype("float32") / 255
    mirrored = [np.allclose(o, s[:, ::-1]) for o, s in zip(out, src)]
    same = [np.allclose(o, s) for o, s in zip(out, src)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert 60 < sum(mirrored) < 140


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_device_augmentation_on_jax_matches_and_is_seeded():
    """The same checks under Keras' JAX backend (the GPU machine's): uint8 → the host's normalised pixels,
    and a seed fixes the draws."""
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import numpy as np, keras
assert keras.backend.backend() == "jax"
from suite import augment, pipeline
x = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
mean, std = pipeline.channel_stats(x, 3)
host = (x.astype("float32") / 255 - mean) / std
layer = augment.Augment(mean, std, crop=2, flip=True, seed=5)
np.testing.assert_allclose(np.asarray(layer(x, training=False)), host, atol=1e-5)
a = np.asarray(augment.Augment(mean, std, crop=2, flip=True, seed=5)(x, training=True))
b = np.asarray(augment.Augment(mean, std, crop=2, flip=True, seed=5)(x, training=True))
c = np.asarray(augment.Augment(mean, std, crop=2, flip=True, seed=6)(x, training=True))
assert np.array_equal(a, b) and not np.array_equal(a, c)
off = np.array([[0, 4], [3, 1]], np.int32)  # reflect padding under JAX: NumPy's
padr = np.pad(x[:2].astype("float32"), [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
want = np.stack([padr[i, r:r + 8, q:q + 8] for i, (r, q) in enumerate(off)])
np.testing.assert_array_equal(np.asarray(augment.crop_windows(x[:2].astype("float32"), off, 2, "reflect")), want)
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], env={**os.environ, "KERAS_BACKEND": "jax"},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-2000:]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_run_with_device_augmentation(tmp_path, backend):
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    args = ["run", "lenet5_modern", "--epochs", "4", "--logdir", tmp_path, "--set", "train.verbose=0",
            "--set", "train.optimizer=adam", "--set", "train.lr=0.003", "--set", "data.augment_on=device",
            "--set", "data.crop=1", "--set", "data.flip=true"]
    if backend == "tensorflow":  # this process's backend: no start-up of its own
        code, _, err = cli_here(*args)
    else:
        p = run_cli(*args, env={"KERAS_BACKEND": backend})
        code, err = p.returncode, p.stderr
    assert code == 0, err[-2000:]
    run = next((tmp_path / "lenet5_modern").iterdir())
    res = json.loads((run / "results.json").read_text())
    rt = res["runtime"]
    assert rt["augment_on"] == "device" and rt["device_kind"] == "cpu" and rt["precision"] == "float32"
    assert rt["steps_per_execution"] == 8 and rt["batch_size"] == 128  # "auto" on a CPU
    assert res["test"]["accuracy"] > 0.4, res["test"]  # it learns (host augmentation: about the same)
    # the saved model takes raw pixels and normalises them itself; it loads in safe mode
    from suite import runner

    model = runner.load_model(run / "best.keras")
    assert model.input.dtype == "uint8" and model.get_layer("augment").crop == 1
    d = data.load("digits")
    probs = np.asarray(model.predict(d.x_test[:8], verbose=0))
    assert probs.shape == (8, 10) and np.allclose(probs.sum(-1), 1, atol=1e-4)


def test_auto_settings_follow_the_device():
    cfg = config.resolve("resnet20", ["data.crop=4"])
    gpu = {"kind": "gpu", "name": "NVIDIA H100", "count": 1, "bf16": True, "backend": "jax"}
    old_gpu = {**gpu, "bf16": False}
    cpu = {"kind": "cpu", "name": "x", "count": 1, "bf16": False, "backend": "tensorflow"}
    assert hardware.effective(cfg, 352, gpu) == {"precision": "mixed_bfloat16", "jit_compile": "auto",
                                                 "steps_per_execution": 32, "augment_on": "device",
                                                 "commit_interval": "30s", "autotune": True}
    assert hardware.effective(cfg, 3, gpu)["steps_per_execution"] == 3  # never more than an epoch
    assert hardware.effective(cfg, 352, old_gpu)["precision"] == "float32"
    assert hardware.effective(cfg, 352, cpu) == {"precision": "float32", "jit_compile": "auto",
                                                 "steps_per_execution": 8, "augment_on": "host",
                                                 "commit_interval": "epoch", "autotune": False}
    forced = config.resolve("resnet20", ["train.precision=float32", "train.steps_per_execution=4",
                                         "data.augment_on=host", "train.jit_compile=false",
                                         "log.commit_interval=epoch", "data.autotune=false"])
    assert hardware.effective(forced, 352, gpu) == {"precision": "float32", "jit_compile": False,
                                                    "steps_per_execution": 4, "augment_on": "host",
                                                    "commit_interval": "epoch", "autotune": False}
    assert hardware.effective(config.resolve("resnet20", ["data.autotune=true"]), 352, cpu)["autotune"] is True
    assert hardware.accelerator()["kind"] == "cpu"  # the test machine


@pytest.mark.parametrize("setting, needle", [
    ("train.steps_per_execution=fast", 'expected an integer or "auto"'),
    ("train.steps_per_execution=0", "out of range"),
    ("data.augment_on=gpu", "not one of: auto, host, device"),
    ("train.precision=half", "not one of: auto, float32"),
    ("data.autotune=sometimes", "data.autotune = 'sometimes' is not one of: auto, True, False"),
    ("log.commit_interval=soon", "log.commit_interval = 'soon' is not a time, 'epoch' or 'auto'"),
    ('log.commit_interval="5 steps"', "log.commit_interval = '5 steps' is not a time"),
])
def test_auto_settings_reject_bad_values(setting, needle):
    with pytest.raises(config.UserError, match=needle):
        config.resolve("resnet20", [setting])


# AlexNet's PCA colour noise (data.pca_colour, §4.1)

def _pca():
    """A known (eigenvalues, eigenvectors): distinct λ, an orthonormal rotation as the components."""
    vecs, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    return np.array([0.05, 0.01, 0.002], np.float32), vecs.astype(np.float32)


def _check_shift(diff, pca, sigma):
    """`diff` [N, H, W, 3] is one RGB shift per image, Σ_i α_i λ_i p_i with α_i ~ N(0, sigma)."""
    shift = diff[:, :1, :1, :]
    np.testing.assert_allclose(diff, np.broadcast_to(shift, diff.shape), rtol=0, atol=1e-6)
    vals, vecs = pca
    alpha = shift.reshape(-1, 3) @ vecs / vals  # the shift in the components' basis, divided by λ: α
    assert np.abs(alpha.mean(0)).max() < 4 * sigma / np.sqrt(len(alpha)), alpha.mean(0)
    np.testing.assert_allclose(alpha.std(0), sigma, rtol=0.15)


def test_colour_pca_is_the_eigen_decomposition_of_the_pixel_covariance():
    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.6, 0.3], [0.0, 0.5, 0.2], [0.0, 0.0, 0.15]])
    x = np.clip(128 + 40 * rng.standard_normal((5000, 2, 2, 3)) @ mix, 0, 255).astype(np.uint8)  # 2 chunks
    cov = np.cov(x.reshape(-1, 3).astype(np.float64) / 255, rowvar=False, bias=True)
    want_vals, want_vecs = np.linalg.eigh(cov)
    vals, vecs = pipeline.colour_pca(x, 3)
    assert vals.dtype == vecs.dtype == np.float32 and vals.shape == (3,) and vecs.shape == (3, 3)
    np.testing.assert_allclose(vals, want_vals[::-1], rtol=1e-4)  # largest first
    np.testing.assert_allclose(np.abs(vecs.T @ want_vecs[:, ::-1]), np.eye(3), atol=1e-4)  # up to sign
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, cov, atol=1e-6)
    f_vals, _ = pipeline.colour_pca(x.astype(np.float32) / 255, 3)  # floats in [0, 1]: the same
    np.testing.assert_allclose(f_vals, vals, rtol=1e-4)
    assert pipeline.colour_pca(x, 1) is None and pipeline.colour_pca(x[..., :1], 1) is None
    grey = pipeline.colour_pca(x[..., :1], 3)  # made RGB: one component, brightness
    var = np.var(x[..., 0].astype(np.float64) / 255)
    np.testing.assert_allclose(grey[0], [3 * var, 0, 0], atol=1e-6)
    np.testing.assert_allclose(np.abs(grey[1][:, 0]), np.full(3, 3 ** -0.5), atol=1e-5)


def test_host_colour_noise_is_a_per_image_shift_and_keeps_the_crops():
    import tensorflow as tf

    x, pca = tf.constant(_images(512, (4, 4, 3)).astype("float32") / 255), _pca()
    seed = tf.constant([1, 2], tf.int64)
    plain = pipeline.augment(x, seed, 1, True).numpy()
    for off in (dict(pca=pca, sigma=0.0), dict(pca=None, sigma=0.1)):  # off: the old call's crops and flips
        np.testing.assert_array_equal(pipeline.augment(x, seed, 1, True, **off).numpy(), plain)
    noisy = pipeline.augment(x, seed, 1, True, pca=pca, sigma=0.1).numpy()
    _check_shift(noisy - plain, pca, 0.1)  # the same crops and flips: only the colour shift differs
    np.testing.assert_array_equal(pipeline.augment(x, seed, 1, True, pca=pca, sigma=0.1).numpy(), noisy)
    other = pipeline.augment(x, tf.constant([1, 3], tf.int64), 1, True, pca=pca, sigma=0.1).numpy()
    assert not np.array_equal(other, noisy)


@pytest.mark.parametrize("batched", [True, False])
def test_pipeline_adds_colour_noise_to_training_batches_only(batched):
    x, y = _images(64, (4, 4, 3)), np.arange(64) % 4
    pca, ones = _pca(), (np.zeros(3, "float32"), np.ones(3, "float32"))
    old = {**HOST, "crop": 1, "flip": True, "batched_augment": batched}  # no pca_colour key: an old config
    kw = dict(shape=(4, 4, 3), batch_size=16, seed=0, mean=ones[0], std=ones[1])

    def run(data_cfg, **more):
        return np.concatenate([b.numpy() for b, _ in pipeline.make(x, y, data_cfg=data_cfg, **kw, **more)])

    plain = run(old, training=True)
    np.testing.assert_array_equal(run({**old, "pca_colour": 0.0}, training=True, pca=pca), plain)
    diff = run({**old, "pca_colour": 0.1}, training=True, pca=pca) - plain
    shift = diff[:, :1, :1, :]
    np.testing.assert_allclose(diff, np.broadcast_to(shift, diff.shape), rtol=0, atol=1e-6)
    assert np.all(np.abs(shift) > 0)
    assert np.array_equal(run({**old, "pca_colour": 0.1}, training=False, pca=pca), run(old, training=False))
    only = {**HOST, "pca_colour": 0.1, "batched_augment": batched}  # colour noise alone turns augmentation on
    diff = run(only, training=True, pca=pca) - x.astype("float32") / 255
    np.testing.assert_allclose(diff, np.broadcast_to(diff[:, :1, :1, :], diff.shape), rtol=0, atol=1e-6)
    grey = dict(kw, shape=(4, 4, 1), mean=ones[0][:1], std=ones[1][:1])  # a grey network: left as is
    ds = pipeline.make(x, y, data_cfg={**HOST, "pca_colour": 0.1}, training=True, pca=pca, **grey)
    assert next(iter(ds))[0].shape == (16, 4, 4, 1)


def test_device_colour_noise_is_a_per_image_shift_and_round_trips():
    x, (vals, vecs) = _images(512, (4, 4, 3)), _pca()
    mean, std = np.zeros(3, "float32"), np.ones(3, "float32")
    pca = dict(pca_vals=vals, pca_vecs=vecs, pca_sigma=0.1)
    plain = np.asarray(augment.Augment(mean, std, crop=1, flip=True, seed=3)(x, training=True))
    off = augment.Augment(mean, std, crop=1, flip=True, seed=3, **{**pca, "pca_sigma": 0.0})
    np.testing.assert_array_equal(np.asarray(off(x, training=True)), plain)
    layer = augment.Augment(mean, std, crop=1, flip=True, seed=3, **pca)
    noisy = np.asarray(layer(x, training=True))
    _check_shift(noisy - plain, (vals, vecs), 0.1)  # drawn after the crops and flips, which stay as they were
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), x / 255, atol=1e-6)  # inference: none
    cfg = layer.get_config()
    assert json.loads(json.dumps(cfg))["pca_sigma"] == 0.1 and isinstance(cfg["pca_vecs"][0][0], float)
    clone = augment.Augment.from_config(cfg)
    assert clone.pca_vals == layer.pca_vals and clone.pca_vecs == layer.pca_vecs and clone.pca_sigma == 0.1
    np.testing.assert_array_equal(np.asarray(clone(x, training=True)), noisy)  # same seed, same draws
    alone = augment.Augment(mean, std, seed=3, **pca)  # colour noise alone needs the seed generator too
    diff = np.asarray(alone(x, training=True)) - x / 255
    np.testing.assert_allclose(diff, np.broadcast_to(diff[:, :1, :1, :], diff.shape), rtol=0, atol=1e-6)
    grey = _images(4, (4, 4, 1))  # grey input: left as is
    out = augment.Augment(mean[:1], std[:1], seed=3, **pca)(grey, training=True)
    np.testing.assert_allclose(np.asarray(out), grey / 255, atol=1e-6)


def test_pca_colour_setting():
    assert config.resolve("lenet5")["data"]["pca_colour"] == 0
    assert config.resolve("alexnet")["data"]["pca_colour"] == 0.1  # the paper's σ; a no-op on grey digits
    with pytest.raises(config.UserError, match="out of range"):
        config.resolve("lenet5", ["data.pca_colour=-0.1"])


# Cutout (data.cutout; DeVries & Taylor 2017, placed inside the image as Page 2018 did)

def _cutout_places(out, plain, fill, s):
    """The (row, col) of the one s × s square of `fill` that makes each image of `plain` into `out`'s."""
    places = []
    for i in range(len(out)):
        hits = []
        for r in range(out.shape[1] - s + 1):
            for c in range(out.shape[2] - s + 1):
                want = plain[i].copy()
                want[r:r + s, c:c + s] = fill
                if np.allclose(out[i], want, rtol=0, atol=1e-6):
                    hits.append((r, c))
        assert len(hits) == 1, f"image {i}: squares at {hits}"
        places.append(hits[0])
    return places


def _check_places(places, h, s):
    """Uniform over every place inside the image: all of them drawn, none drawn much too often."""
    counts = np.bincount([r * (h - s + 1) + c for r, c in places], minlength=(h - s + 1) ** 2)
    assert counts.min() > 0 and counts.max() < 4 * len(places) / len(counts), counts


def test_host_cutout_puts_one_mean_square_inside_each_image_and_keeps_the_crops():
    import tensorflow as tf

    x = tf.constant(_images(512, (6, 6, 3)).astype("float32") / 255)
    seed, fill = tf.constant([1, 2], tf.int64), np.array([0.25, 0.5, 0.75], np.float32)
    plain = pipeline.augment(x, seed, 1, True).numpy()
    out = pipeline.augment(x, seed, 1, True, cutout=3, fill=fill.reshape(1, 1, 1, 3)).numpy()
    _check_places(_cutout_places(out, plain, fill, 3), 6, 3)  # the crops and flips are the ones without cutout
    again = pipeline.augment(x, seed, 1, True, cutout=3, fill=fill.reshape(1, 1, 1, 3)).numpy()
    other = pipeline.augment(x, tf.constant([1, 3], tf.int64), 1, True, cutout=3, fill=fill.reshape(1, 1, 1, 3))
    assert np.array_equal(again, out) and not np.array_equal(other.numpy(), out)
    whole = pipeline.augment(x, seed, cutout=6, fill=fill.reshape(1, 1, 1, 3)).numpy()  # as large as the image
    np.testing.assert_array_equal(whole, np.broadcast_to(fill, whole.shape))


def test_device_cutout_is_a_zero_square_after_normalisation_and_round_trips():
    x = _images(512, (6, 6, 3))
    mean, std = np.array([0.25, 0.5, 0.75], "float32"), np.array([0.5, 0.25, 0.2], "float32")
    plain = np.asarray(augment.Augment(mean, std, crop=1, flip=True, seed=3)(x, training=True))
    layer = augment.Augment(mean, std, crop=1, flip=True, seed=3, cutout=3)
    out = np.asarray(layer(x, training=True))
    _check_places(_cutout_places(out, plain, 0.0, 3), 6, 3)  # drawn last: the crops and flips stay as they were
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), (x / 255 - mean) / std, atol=1e-5)
    clone = augment.Augment.from_config(json.loads(json.dumps(layer.get_config())))
    assert clone.cutout == 3
    np.testing.assert_array_equal(np.asarray(clone(x, training=True)), out)  # same seed, same squares
    alone = augment.Augment(mean, std, seed=3, cutout=2)  # cutout alone needs the seed generator too
    _cutout_places(np.asarray(alone(x, training=True)), (x / 255 - mean) / std, 0.0, 2)


@pytest.mark.parametrize("batched", [True, False])
def test_pipeline_cuts_out_training_batches_only(batched):
    x, y = _images(64, (6, 6, 3)), np.arange(64) % 4
    mean, std = pipeline.channel_stats(x, 3)
    kw = dict(shape=(6, 6, 3), batch_size=16, seed=0, mean=mean, std=std)
    cfg = {**HOST, "batched_augment": batched}

    def run(data_cfg, training):
        return np.concatenate([b.numpy() for b, _ in pipeline.make(x, y, data_cfg=data_cfg, training=training, **kw)])

    plain = run(cfg, True)  # no augmentation: the normalised images as stored
    _cutout_places(run({**cfg, "cutout": 2}, True), plain, 0.0, 2)  # the mean, i.e. 0 once normalised
    np.testing.assert_array_equal(run({**cfg, "cutout": 2}, False), run(cfg, False))


def test_cutout_setting():
    assert config.resolve("lenet5")["data"]["cutout"] == 0
    speed = config.resolve("cifar10_speedrun")["data"]
    assert speed["cutout"] == 8 and speed["crop_fill"] == "reflect"  # Page 2018's 8 × 8, his reflected crops
    with pytest.raises(config.UserError, match="out of range"):
        config.resolve("lenet5", ["data.cutout=-1"])


@pytest.mark.parametrize("where", ["host", "device"])
def test_run_with_every_augmentation_on_rgb_digits(tmp_path, where):
    """Reflected crops, flips, PCA colour noise and cutout together, through `suite run` on either path."""
    code, _, err = cli_here("run", "lenet5_modern", "--epochs", "1", "--logdir", tmp_path, "--set", "train.verbose=0",
                            "--set", "data.channels=3", "--set", "data.pca_colour=0.1", "--set", "data.cutout=4",
                            "--set", "data.crop=2", "--set", "data.crop_fill=reflect", "--set", "data.flip=true",
                            "--set", "data.limit=64", "--set", f"data.augment_on={where}")
    assert code == 0, err[-2000:]
    run = next((tmp_path / "lenet5_modern").iterdir())
    assert json.loads((run / "results.json").read_text())["runtime"]["augment_on"] == where
    assert json.loads((run / "config.json").read_text())["data"]["cutout"] == 4
    if where == "device":  # the saved model reloads with its augmentation
        from suite import runner

        layer = runner.load_model(run / "best.keras").get_layer("augment")
        assert layer.pca_sigma == 0.1 and len(layer.pca_vals) == 3 and layer.pca_vals[0] > 0
        assert layer.cutout == 4 and layer.crop_fill == "reflect" and layer.crop == 2 and layer.flip
