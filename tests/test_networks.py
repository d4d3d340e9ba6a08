"""Every registered network, built once at a small input: the layer names, one forward pass, the table of
`suite show`, and one training step. New networks are covered without touching this file (the timm pattern).

One build per network serves all four checks because building is most of the cost (DenseNet-201 has ~700
layers). The build is at 32×32×3 with `width` 0.25 and `fc_units` 64 where the network has those knobs: they
change channel counts only; the published parameter counts at full width are pinned in test_nets_a/b.
The table check: one forward pass of two random images through every layer's output (the network's own output
among them, checked to be softmax probabilities); the table's output shapes must equal the real outputs, the
(N − F + 2P)/S + 1 column the real spatial size, the parameter totals model.count_params(), and each conv/dense MAC
count H_out·W_out·(size of the kernel tensor) computed from the layer's actual weights.
"""

import keras
import numpy as np
import pytest

from suite import registry, show

SMALL = (32, 32, 3)


def small_kw(name):
    kw = {}
    defaults = registry.get(name).defaults()
    if "width" in defaults:
        kw["width"] = 0.25
    if "fc_units" in defaults:
        kw["fc_units"] = 64
    return kw


def real_outputs(model, rows, x):
    """{row name: [real output shapes without batch]} and the network's own outputs, from one forward pass of x
    through every layer's output (one pass for both: deep networks are slow to run eagerly)."""
    names, tensors = [], []
    for r in rows:
        if "/" in r["name"]:
            continue  # inside a nested model: not a tensor of this graph
        layer = model.get_layer(r["name"])
        if len(layer._inbound_nodes) != 1:
            continue
        outs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        names.append(r["name"])
        tensors.append(list(outs))
    flat = [t for ts in tensors for t in ts]
    probe = keras.Model(model.inputs, flat + list(model.outputs))
    ys = probe([x], training=False)  # a list, as the probe's inputs are
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    real, k = {}, 0
    for n, ts in zip(names, tensors):
        real[n] = [tuple(np.shape(y)[1:]) for y in ys[k:k + len(ts)]]
        k += len(ts)
    return real, ys[len(flat):]


def _all_layers(model):
    for layer in model.layers:
        yield from _all_layers(layer) if isinstance(layer, keras.Model) else [layer]


def check_layer_names(model):
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    generic = [n for n in names if n.split("_")[0] in ("conv2d", "dense", "activation", "max", "batch")]
    assert not generic, f"unnamed layers (give them a prefix): {generic[:5]}"
    # PyTorch's BN momentum (0.1 there, 0.9 here), not Keras' 0.99, whose moving statistics trail the weights on
    # short runs (suite/nets/blocks.py); every BatchNorm is made by blocks.bn.
    slow_bn = [(layer.name, layer.momentum) for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum != 0.9]
    assert not slow_bn, f"BatchNorm not made by blocks.bn (name, momentum): {slow_bn[:5]}"


def check_show_table(model, name, x):
    """Returns the network's outputs for x (the forward pass this check makes)."""
    rows = show.layer_rows(model)
    real, outs = real_outputs(model, rows, x)
    assert len(real) >= len(model.layers) - 1
    for r in rows:
        if r["name"] not in real:
            continue
        shapes = r["shape"] if isinstance(r["shape"], list) else [r["shape"]]
        assert [tuple(s) for s in shapes] == real[r["name"]], r["name"]
        if r["rule_out"] is not None:
            assert tuple(r["rule_out"]) == real[r["name"]][0][:-1], (r["name"], r["rule"])
        layer = model.get_layer(r["name"])
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            # independent of show's formula: one MAC per kernel weight per output position
            positions = int(np.prod(real[r["name"]][0][:-1]))
            assert r["macs"] == positions * int(np.prod(layer.kernel.shape)), r["name"]
    t = show.totals(rows)
    assert t["params"] == model.count_params()
    assert t["trainable"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert sum(1 for r in rows if r["rule"]) == sum(
        1 for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)))
    # where the parameters are: the kinds partition them; fully connected = the Dense layers' own count
    kinds = show.params_by_kind(rows)
    assert sum(kinds.values()) == t["params"]
    dense = sum(layer.count_params() for layer in _all_layers(model) if isinstance(layer, keras.layers.Dense))
    assert kinds.get("fully connected", 0) == dense
    text = show.render(rows, name)
    assert "MACs" in text and f"{model.count_params():,}" in text and "Params by kind" in text
    return outs


def check_forward_and_one_step(model, x, outs):
    y = np.array([1, 7])
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
def test_every_network(name):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = registry.build(name, SMALL, 10, **small_kw(name))
    check_layer_names(model)
    x = np.random.default_rng(0).random((2, *SMALL), dtype=np.float32)
    outs = check_show_table(model, name, x)
    check_forward_and_one_step(model, x, outs)


def test_registry_unknown_name_suggests():
    from suite.errors import UserError

    with pytest.raises(UserError, match="did you mean alexnet"):
        registry.get("alexnett")


# One bad value per knob check in the builders: wrong whatever the input, so the CLI says it without advice about
# the images' size (runner.build_error, show.build).
BAD_KNOBS = [("resnet20", dict(depth=21)), ("resnet18", dict(depth=19)), ("resnet20", dict(shortcut="b2")),
             ("resnet50", dict(bottleneck_stride="2x2")), ("resnext50_32x4d", dict(group_conv="fast")),
             ("resnext50_32x4d", dict(depth=51)), ("resnext29_8x64d", dict(depth=30)), ("vgg16", dict(depth=17)),
             ("vgg16", dict(stacks="5x5")), ("vgg16", dict(head="big")), ("densenet_bc100", dict(depth=101)),
             ("densenet121", dict(blocks=[6, 0])), ("nin", dict(kernels=[5])), ("allcnn_c", dict(downsample="no")),
             ("allcnn_c", dict(pooling="min")), ("rnn", dict(cell="tanh")), ("rnn", dict(read="columns")),
             ("dilated_hdc", dict(rates=[])), ("exercise2_cnn", dict(head="mlp")), ("zfnet", dict(conv_filters=[8])),
             ("alexnet", dict(stem="tiny"))]


@pytest.mark.parametrize("name, knobs", BAD_KNOBS, ids=[f"{n}-{next(iter(k))}" for n, k in BAD_KNOBS])
def test_a_bad_knob_value_is_a_knob_error(name, knobs):
    from suite.nets.blocks import KnobError
    from suite.runner import build_error

    with pytest.raises(KnobError) as e:
        registry.build(name, SMALL, 10, **knobs)
    said = str(build_error(e.value, name, SMALL))
    assert said.startswith(f"cannot build {name}: ") and "images" not in said


def test_a_map_too_small_is_not_a_knob_error():
    from suite.nets.blocks import KnobError

    with pytest.raises(ValueError, match="needs a map of at least") as e:
        registry.build("vgg16", (8, 8, 1), 10, padding="valid")
    assert not isinstance(e.value, KnobError)


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
