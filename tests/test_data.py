import numpy as np
import pytest

from suite import data, pipeline
from suite.errors import UserError

DATA_CFG = dict(crop=0, flip=False, shuffle=True, cache=True, batched_augment=True)


def tiny_npz(path, n=40, shape=(12, 12), classes=4):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (n, *shape), dtype=np.uint8), y_train=np.arange(n) % classes,
             x_test=rng.integers(0, 255, (n // 2, *shape), dtype=np.uint8), y_test=np.arange(n // 2) % classes)
    return path


def test_digits_is_embedded_and_split_is_fixed():
    d = data.load("digits")
    assert d.shape == (8, 8, 1) and d.num_classes == 10
    assert len(d.x_train) + len(d.x_test) == 1797
    a = data.split(d, 0.1, seed=0)
    b = data.split(d, 0.1, seed=0)
    c = data.split(d, 0.1, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[3], c[3])
    assert len(a[2]) == round(len(d.x_train) * 0.1)


def test_npz_loader(tmp_path):
    d = data.load(str(tiny_npz(tmp_path / "t.npz")))
    assert d.shape == (12, 12, 1) and d.num_classes == 4 and len(d.x_test) == 20


def test_npz_missing_keys(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, x_train=np.zeros((2, 4, 4)), y_train=np.zeros(2))
    with pytest.raises(UserError, match="lacks x_test, y_test"):
        data.load(str(p))


def test_keras_sets_read_from_data_dir(tmp_path, monkeypatch):
    tiny_npz(tmp_path / "mnist.npz")
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path))
    assert data.load("mnist").shape == (12, 12, 1)


def test_a_keras_set_that_cannot_be_fetched_is_one_line_naming_the_ways_out(tmp_path, monkeypatch):
    # `suite run allcnn_c` offline: the experiment is CIFAR-10's, and Keras cannot download it here.
    import keras

    def offline():
        raise Exception("URL fetch failure on https://example.invalid/cifar-10-python.tar.gz: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path))  # a folder without cifar10.npz
    with pytest.raises(UserError) as e:
        data.load("cifar10")
    msg = str(e.value)
    assert "\n" not in msg and "Temporary failure in name resolution" in msg, msg
    assert "SUITE_DATA_DIR" in msg and "--data digits" in msg, msg


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = data.load(str(tmp_path))
    assert d.class_names == ["cat", "dog"] and d.shape == (10, 10, 3)
    assert len(d.x_train) + len(d.x_test) == 10 and len(d.x_test) == 2


@pytest.mark.parametrize("src, dst", [(1, 3), (3, 1), (1, 1), (3, 3)])
def test_grey_and_rgb_convert(src, dst):
    x = np.random.default_rng(0).integers(0, 255, (6, 8, 8, src), dtype=np.uint8)
    mean, std = pipeline.channel_stats(x, dst)
    ds = pipeline.make(x, np.zeros(6, np.int64), shape=(16, 16, dst), batch_size=3, training=False,
                       data_cfg=DATA_CFG, seed=0, mean=mean, std=std)
    xb, yb = next(iter(ds))
    assert tuple(xb.shape) == (3, 16, 16, dst)
    assert yb.dtype == "int32"  # int64 ids would be truncated by JAX (no x64) with a warning at every compile


def test_normalisation_uses_training_statistics():
    x = np.random.default_rng(0).integers(0, 255, (64, 8, 8, 3), dtype=np.uint8)
    mean, std = pipeline.channel_stats(x, 3)
    ds = pipeline.make(x, np.zeros(64, np.int64), shape=(8, 8, 3), batch_size=64, training=False,
                       data_cfg=DATA_CFG, seed=0, mean=mean, std=std)
    xb = next(iter(ds))[0].numpy()
    np.testing.assert_allclose(xb.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(xb.std(axis=(0, 1, 2)), 1, atol=1e-3)


@pytest.mark.parametrize("batched", [True, False])
def test_augmentation_only_on_training(batched):
    x = np.arange(8 * 8 * 16, dtype=np.float32).reshape(16, 8, 8, 1) / (8 * 8 * 16)
    cfg = {**DATA_CFG, "crop": 2, "flip": True, "shuffle": False, "batched_augment": batched}
    kw = dict(shape=(8, 8, 1), batch_size=16, data_cfg=cfg, seed=3, mean=np.zeros(1, np.float32),
              std=np.ones(1, np.float32))
    train = next(iter(pipeline.make(x, np.zeros(16, np.int64), training=True, **kw)))[0].numpy()
    test = next(iter(pipeline.make(x, np.zeros(16, np.int64), training=False, **kw)))[0].numpy()
    np.testing.assert_array_equal(test, x)  # evaluation data untouched
    assert not np.array_equal(train, x)  # training data cropped/flipped
    assert train.shape == x.shape


def test_augmentation_differs_between_epochs_but_repeats_with_seed():
    import tensorflow as tf

    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    cfg = {**DATA_CFG, "crop": 2, "flip": True, "shuffle": False}
    kw = dict(shape=(8, 8, 1), batch_size=32, data_cfg=cfg, mean=np.zeros(1, np.float32),
              std=np.ones(1, np.float32), training=True)
    first = lambda ds: next(iter(ds))[0].numpy()  # noqa: E731
    e0, e1 = (first(pipeline.make(x, np.zeros(32, np.int64), seed=5, epoch=e, **kw)) for e in (0, 1))
    again = first(pipeline.make(x, np.zeros(32, np.int64), seed=5, **kw))
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(e0, again)
    # an epoch variable (what the runner sets at every epoch start) selects the same streams
    var = tf.Variable(1, dtype=tf.int64)
    ds = pipeline.make(x, np.zeros(32, np.int64), seed=5, epoch=var, **kw)
    np.testing.assert_array_equal(first(ds), e1)
    var.assign(0)
    np.testing.assert_array_equal(first(ds), e0)


@pytest.mark.parametrize("batched", [True, False])
def test_stream_resumes_at_any_batch(batched):
    """The training stream is a function of (seed, epoch, batch): starting at batch k of epoch e gives exactly the
    batches k, k+1, … of that epoch's full stream — shuffle order and augmentation draws alike (exact resume)."""
    rng = np.random.default_rng(2)
    x, y = rng.random((50, 8, 8, 3), dtype=np.float32), np.arange(50)
    pca = pipeline.colour_pca(x, 3)
    cfg = {**DATA_CFG, "crop": 2, "flip": True, "shuffle": True, "pca_colour": 0.1, "batched_augment": batched}
    kw = dict(shape=(8, 8, 3), batch_size=8, data_cfg=cfg, seed=11, mean=np.zeros(3, np.float32),
              std=np.ones(3, np.float32), training=True, pca=pca)
    full = [(a.numpy(), b.numpy()) for a, b in pipeline.make(x, y, epoch=3, **kw)]
    assert len(full) == 7 and sorted(np.concatenate([b for _, b in full])) == list(range(50))
    for k in (1, 4, 6):
        rest = pipeline.make(x, y, epoch=3, skip=k, **kw)
        assert rest.cardinality() == 7 - k
        got = [(a.numpy(), b.numpy()) for a, b in rest]
        assert len(got) == 7 - k
        for (xa, ya), (xb, yb) in zip(full[k:], got):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)
    other = [b.numpy() for _, b in pipeline.make(x, y, epoch=4, **kw)]
    assert not all(np.array_equal(a, b) for (_, a), b in zip(full, other))  # another epoch, another order


@pytest.mark.parametrize("batched", [True, False])
def test_autotune_off_yields_the_same_batches(batched):
    """data.autotune (off on a CPU) changes tf.data's threads and buffers, not what the training sees."""
    rng = np.random.default_rng(3)
    x, y = rng.random((60, 8, 8, 3), dtype=np.float32), np.arange(60)
    cfg = {**DATA_CFG, "crop": 2, "flip": True, "shuffle": True, "batched_augment": batched}
    kw = dict(shape=(8, 8, 3), batch_size=8, data_cfg=cfg, seed=4, mean=np.zeros(3, np.float32),
              std=np.ones(3, np.float32), training=True, epoch=2)
    on, off = (pipeline.make(x, y, autotune=a, **kw) for a in (True, False))
    assert on.options().autotune.enabled is not False and off.options().autotune.enabled is False
    for (xa, ya), (xb, yb) in zip(on, off, strict=True):
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())


def test_crop_is_a_translation_of_the_padded_image():
    x = np.random.default_rng(1).random((4, 6, 6, 1)).astype(np.float32)
    out = pipeline.augment(x, np.array([1, 2], np.int64), crop=2, flip=False).numpy()
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(4):
        assert any(np.array_equal(out[i], padded[i, r:r + 6, c:c + 6]) for r in range(5) for c in range(5))


def test_shuffle_off_keeps_order():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(2, 1).repeat(2, 2)
    cfg = {**DATA_CFG, "shuffle": False}
    ds = pipeline.make(x, np.arange(10), shape=(2, 2, 1), batch_size=10, training=True, data_cfg=cfg, seed=0,
                       mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))
    assert list(next(iter(ds))[1].numpy()) == list(range(10))
    ds = pipeline.make(x, np.arange(10), shape=(2, 2, 1), batch_size=10, training=True,
                       data_cfg={**cfg, "shuffle": True}, seed=0,
                       mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))
    assert list(next(iter(ds))[1].numpy()) != list(range(10))


def test_files_are_read_once_while_unchanged(tmp_path):
    p = tiny_npz(tmp_path / "c.npz")
    a, b = data.load(str(p)), data.load(str(p))
    assert a is b  # tuner trials do not re-read the file
    import os
    import time

    time.sleep(0.01)
    tiny_npz(p, n=60)  # rewritten: a new size and mtime
    os.utime(p, ns=(time.time_ns(), time.time_ns()))
    c = data.load(str(p))
    assert c is not a and len(c.x_train) == 60


def test_channel_stats_match_numpy():
    x = np.random.default_rng(2).integers(0, 255, (5000, 4, 4, 3), dtype=np.uint8)
    mean, std = pipeline.channel_stats(x, 3)
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, f.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, f.std(axis=(0, 1, 2)), rtol=1e-5)
