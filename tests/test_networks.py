"""Every registered network: builds at a small input, runs forward, trains one step.
New networks are covered without touching this file (the timm pattern)."""

import numpy as np
import pytest

from suite import registry

SMALL = (32, 32, 3)


@pytest.mark.parametrize("name", registry.list_models())
def test_builds_forward_and_trains_one_step(name):
    import keras

    keras.utils.set_random_seed(0)
    model = registry.build(name, SMALL, 10)
    x = np.random.default_rng(0).random((2, *SMALL), dtype=np.float32)
    y = np.array([1, 7])
    outs = model(x, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    main = keras.ops.convert_to_numpy(outs[0])
    assert main.shape == (2, 10)
    np.testing.assert_allclose(main.sum(axis=1), 1.0, rtol=1e-4)  # softmax probabilities
    n = len(model.outputs)
    # Eager: one step of a deep net is otherwise dominated by graph tracing (DenseNet-201: ~97 s vs ~5 s).
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=["sparse_categorical_crossentropy"] * n, run_eagerly=True)
    before = [w.copy() for w in model.get_weights()[:2]]
    logs = model.train_on_batch(x, [y] * n if n > 1 else y, return_dict=True)
    assert np.isfinite(logs["loss"])
    after = model.get_weights()[:2]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "a training step changed no weight"


@pytest.mark.parametrize("name", registry.list_models())
def test_layer_names_are_unique_and_readable(name):
    model = registry.build(name, SMALL, 10)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    generic = [n for n in names if n.split("_")[0] in ("conv2d", "dense", "activation", "max", "batch")]
    assert not generic, f"unnamed layers (give them a prefix): {generic[:5]}"


def test_registry_unknown_name_suggests():
    from suite.errors import UserError

    with pytest.raises(UserError, match="did you mean alexnet"):
        registry.get("alexnett")


def test_variant_keeps_knobs_overridable():
    d = registry.get("lenet5_modern").defaults()
    assert d["activation"] == "relu" and d["pooling"] == "max"
    m = registry.build("lenet5_modern", (32, 32, 1), 10, activation="sigmoid")
    assert any(layer.name == "c1_sigmoid" for layer in m.layers)


def test_same_vs_valid_changes_shapes():
    valid = registry.build("lenet5", (32, 32, 1), 10, padding="valid")
    same = registry.build("lenet5", (32, 32, 1), 10, padding="same")
    assert valid.get_layer("c1_conv").output.shape[1:3] == (28, 28)  # (32 − 5 + 0)/1 + 1
    assert same.get_layer("c1_conv").output.shape[1:3] == (32, 32)
    assert valid.get_layer("c5_conv").output.shape[1:3] == (1, 1)
    assert same.get_layer("c5_conv").output.shape[1:3] == (8, 8)
    a_same = registry.build("alexnet", (227, 227, 3), 1000, padding="same")
    a_valid = registry.build("alexnet", (227, 227, 3), 1000, padding="valid")
    assert a_same.get_layer("conv1_conv").output.shape[1:3] == (55, 55)  # (227 − 11)/4 + 1
    assert a_same.get_layer("pool5").output.shape[1:3] == (6, 6)
    assert a_valid.get_layer("conv2_conv").output.shape[1:3] == (23, 23)  # (27 − 5)/1 + 1
    assert a_valid.get_layer("pool5").output.shape[1:3] == (2, 2)


def test_alexnet_parameter_count():
    # Single-tower AlexNet at 227×227×3, 1000 classes, biases included: 62,378,344 (the figure usually quoted
    # for the merged two-GPU network, e.g. the d2l.ai / torchvision-style count with 96/256/384/384/256 filters).
    assert registry.build("alexnet", (227, 227, 3), 1000).count_params() == 62_378_344


def test_lenet5_parameter_count():
    # LeNet-5 with a full C3 (no sparse connection table) and a Dense output: 61,706 (the usual modern count).
    assert registry.build("lenet5", (32, 32, 1), 10).count_params() == 61_706


def test_alexnet_small_stem_is_chosen_for_small_images():
    m = registry.build("alexnet", (8, 8, 1), 10)
    assert m.get_layer("conv1_conv").kernel_size == (3, 3)
    assert registry.build("alexnet", (227, 227, 3), 10).get_layer("conv1_conv").kernel_size == (11, 11)


def test_local_response_norm_formula_and_safe_mode_round_trip(tmp_path):
    import keras

    from suite.nets.custom import LocalResponseNorm

    x = np.random.default_rng(0).standard_normal((1, 2, 2, 7)).astype("float32")
    got = keras.ops.convert_to_numpy(LocalResponseNorm(5, k=2.0, alpha=1e-4, beta=0.75)(x))
    sq = np.pad(x ** 2, [(0, 0), (0, 0), (0, 0), (2, 2)])
    want = x / (2.0 + 1e-4 * sum(sq[..., i:i + 7] for i in range(5))) ** 0.75  # Krizhevsky et al. 2012, §3.3
    np.testing.assert_allclose(got, want, rtol=1e-5)
    model = registry.build("alexnet", (8, 8, 1), 10, lrn=True, width=0.125, fc_units=64)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)  # no Lambda layers to refuse
    xb = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(xb)), keras.ops.convert_to_numpy(model(xb)),
                               rtol=1e-5)
