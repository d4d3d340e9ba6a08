"""GoogLeNet, ResNet (+ plain twins), ResNeXt, DenseNet: parameter counts pinned to published figures,
shortcut semantics, the GoogLeNet auxiliary-output convention, and small-image builds.

Conventions, stated per test: "trainable" = weights + biases + BN γ/β (what torchvision's
`sum(p.numel() for p in model.parameters())` counts; its BN running statistics are buffers);
"total" = Keras `count_params()`, which also counts the BN moving mean/variance (non-trainable).
The 224² tests only build the model (no forward pass), so they stay quick.
"""

import numpy as np
import pytest
from keras import layers

from suite import registry
from suite.nets import custom, densenet, googlenet, resnet, resnext


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def total(model):
    return model.count_params()


def convs(model):
    return [lay for lay in model.layers if isinstance(lay, layers.Conv2D)]


def count(model, cls):
    return sum(isinstance(lay, cls) for lay in model.layers)


# ---- parameter counts against published figures ---------------------------------------------------

def test_resnet50_matches_keras_applications_and_torchvision():
    m = resnet.resnet((224, 224, 3), 1000, depth=50)
    # torchvision resnet50: 25,557,032 (bias-free convs, BN γ/β; running stats are buffers, not counted).
    assert trainable(m) == 25_557_032
    # keras.applications.ResNet50: 25,636,712, counting BN moving stats AND a bias on every conv
    # (its convs keep use_bias=True before BN). Ours are bias-free (BN's β makes the bias redundant),
    # so add one bias per conv output channel to compare.
    conv_biases = sum(c.filters for c in convs(m))
    assert conv_biases == 26_560
    assert total(m) + conv_biases == 25_636_712
    assert count(m, layers.Add) == 16  # 3 + 4 + 6 + 3 residual additions


def test_resnet18_matches_torchvision():
    # torchvision resnet18: 11,689,512 (option B projections, bias-free convs, BN γ/β, FC with bias).
    m = resnet.resnet((224, 224, 3), 1000, depth=18)
    assert trainable(m) == 11_689_512
    assert count(m, layers.Add) == 8


def test_resnet20_and_110_match_he_2016_table6():
    # He et al. 2016 Table 6 quotes 0.27 M and 1.7 M parameters (option A, so no shortcut weights);
    # exact trainable counts (weights + FC bias + BN γ/β, convs bias-free): 269,722 and 1,727,962,
    # as in the widely used akamaster/pytorch_resnet_cifar10 port. Totals add BN moving stats.
    m20 = resnet.resnet_cifar((32, 32, 3), 10, depth=20)
    assert trainable(m20) == 269_722 and total(m20) == 271_098
    assert round(trainable(m20) / 1e6, 2) == 0.27
    m110 = resnet.resnet_cifar((32, 32, 3), 10, depth=110)
    assert trainable(m110) == 1_727_962
    assert round(trainable(m110) / 1e6, 1) == 1.7
    assert count(m20, layers.Add) == 9 and count(m110, layers.Add) == 54


def test_densenet121_matches_keras_applications_and_torchvision():
    m = densenet.densenet((224, 224, 3), 1000)
    # keras.applications.DenseNet121: 8,062,504 including BN moving stats (its convs are bias-free too).
    assert total(m) == 8_062_504
    # torchvision densenet121: 7,978,856 (BN running stats are buffers).
    assert trainable(m) == 7_978_856
    assert count(m, layers.Concatenate) == 6 + 12 + 24 + 16


def test_densenet_bc100_k12_matches_huang_2017_table2():
    # Huang et al. 2017 Table 2: DenseNet-BC (L=100, k=12) has 0.8 M parameters; exact trainable count
    # (bias-free convs, BN γ/β, 10-way FC with bias): 769,162.
    m = densenet.densenet_cifar((32, 32, 3), 10, depth=100, growth_rate=12)
    assert trainable(m) == 769_162
    assert round(trainable(m) / 1e6, 1) == 0.8
    assert count(m, layers.Concatenate) == 48


# 5×5 branches: torchvision's googlenet has 3×3 kernels there (a known bug kept for its weights), we have the
# paper's 5×5. Σ (#5×5 reduce × #5×5) over the nine modules = 23,808, so ours has (25 − 9) × 23,808 more.
_FIVE_BY_FIVE_EXTRA = 16 * sum(r * f for _, _, _, r, f, _ in googlenet.INCEPTION.values())


def test_googlenet_counts_against_torchvision():
    assert _FIVE_BY_FIVE_EXTRA == 380_928
    # torchvision googlenet(aux_logits=False): 6,624,904, with BN after every conv (bias-free convs, γ/β).
    m = googlenet.googlenet((224, 224, 3), 1000, aux_logits=False, batch_norm=True)
    assert trainable(m) == 6_624_904 + _FIVE_BY_FIVE_EXTRA
    # torchvision googlenet(aux_logits=True): 13,004,888; its aux heads (4×4 pool, 1×1 conv 128 + BN,
    # FC 2048→1024, FC 1024→1000) have the same shapes as the paper's at 224².
    m = googlenet.googlenet((224, 224, 3), 1000, aux_logits=True, batch_norm=True)
    assert trainable(m) == 13_004_888 + _FIVE_BY_FIVE_EXTRA


def test_googlenet_paper_version_is_about_7m():
    # The paper's network (no BN, biased convs): 6,998,552 parameters without the auxiliary heads, i.e.
    # 7.0 M (the sum of Table 1's weight column is 6.8 M in units of 1024, weights only). All trainable.
    m = googlenet.googlenet((224, 224, 3), 1000, aux_logits=False)
    assert trainable(m) == total(m) == 6_998_552


def test_googlenet_naive_inception_fig2a():
    # reduce=False: no 1×1 reductions or pool projections; each module's output = its 1×1 + 3×3 + 5×5 maps plus the
    # input it passes through the pool, so the channels add up from the stem's 192 (Fig. 2(a), §4's blow-up)
    m = googlenet.googlenet((32, 32, 3), 10, aux_logits=False, reduce=False)
    paper = googlenet.googlenet((32, 32, 3), 10, aux_logits=False)
    assert not [layer for layer in m.layers if "_reduce" in layer.name or "_pool_proj" in layer.name]
    assert "inception_3a_3x3_reduce_conv" in [layer.name for layer in paper.layers]
    assert m.get_layer("inception_5b_output").output.shape[-1] == 192 + sum(
        f1 + f3 + f5 for f1, _, f3, _, f5, _ in googlenet.INCEPTION.values()) == 4944
    # the 3×3 of 3a reads the stem's 192 maps directly: 3·3·192·128 weights + 128 biases
    assert m.get_layer("inception_3a_3x3_conv").count_params() == 9 * 192 * 128 + 128
    assert total(m) > 10 * total(paper)


def test_resnext50_32x4d_matches_torchvision():
    # torchvision resnext50_32x4d: 25,028,904 (bias-free convs, BN γ/β). Xie et al. 2017 Table 1: 25.0 M.
    m = resnext.resnext((224, 224, 3), 1000, depth=50, cardinality=32, bottleneck_width=4, group_conv="native")
    assert trainable(m) == 25_028_904
    grouped = [c for c in convs(m) if c.groups > 1]
    assert len(grouped) == 16 and all(c.groups == 32 for c in grouped)


def test_resnext29_8x64d_matches_xie_2017_table7():
    # Xie et al. 2017 Table 7: ResNeXt-29 8×64d has 34.4 M parameters (trainable, 10 classes).
    m = resnext.resnext_cifar((32, 32, 3), 10, depth=29, cardinality=8, bottleneck_width=64)
    assert round(trainable(m) / 1e6, 1) == 34.4


# ---- shortcuts ------------------------------------------------------------------------------------

def _conv_signature(model, exclude_shortcuts=False):
    return sorted((c.name, tuple(c.kernel.shape)) for c in convs(model)
                  if not (exclude_shortcuts and c.name.endswith("_0_conv")))


def test_option_a_is_parameter_free_and_b_c_add_projections():
    a = resnet.resnet_cifar((32, 32, 3), 10, depth=20, shortcut="A")
    b = resnet.resnet_cifar((32, 32, 3), 10, depth=20, shortcut="B")
    c = resnet.resnet_cifar((32, 32, 3), 10, depth=20, shortcut="C")
    plain = resnet.resnet_cifar((32, 32, 3), 10, depth=20, shortcut="none")
    assert total(a) == total(plain)
    assert total(plain) < total(a) + 1 <= total(b) < total(c)
    # A: no shortcut convs; B: projections only in the 2 blocks that change shape; C: one per block (9).
    shortcut_convs = lambda m: sum(x.name.endswith("_0_conv") for x in convs(m))  # noqa: E731
    assert [shortcut_convs(m) for m in (a, b, c, plain)] == [0, 2, 9, 0]
    assert count(a, custom.ZeroPadShortcut) == 2


def test_plain_twin_has_the_same_conv_layers():
    r20, p20 = registry.build("resnet20", (32, 32, 3), 10), registry.build("plain20", (32, 32, 3), 10)
    assert _conv_signature(r20) == _conv_signature(p20)
    assert total(r20) == total(p20)
    assert count(r20, layers.Add) == 9 and count(p20, layers.Add) == 0
    # ImageNet twins: option-B ResNet-18 = plain-18's convs + its projection shortcuts (Table 2 uses A).
    r18, p18 = registry.build("resnet18", (224, 224, 3), 1000), registry.build("plain18", (224, 224, 3), 1000)
    assert _conv_signature(r18, exclude_shortcuts=True) == _conv_signature(p18)
    assert count(p18, layers.Add) == 0 and count(r18, layers.Add) == 8
    r18a = resnet.resnet((224, 224, 3), 1000, depth=18, shortcut="A")
    assert total(r18a) == total(p18)


def test_zero_pad_shortcut_subsamples_and_pads():
    lay = custom.ZeroPadShortcut(8, 2)
    x = np.arange(2 * 5 * 5 * 4, dtype="float32").reshape(2, 5, 5, 4)
    y = np.asarray(lay(x))
    assert y.shape == (2, 3, 3, 8) == lay.compute_output_shape(x.shape)
    np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, :])
    assert not y[..., 4:].any()
    assert custom.ZeroPadShortcut.from_config(lay.get_config()).get_config() == lay.get_config()


def test_residual_forward_is_identity_plus_branch():
    # The shortcut really carries the input: with every conv zeroed (and BN off) a block outputs relu(x).
    m = resnet.resnet_cifar((8, 8, 3), 4, depth=8, batch_norm=False, width=0.25)
    for c in convs(m):
        c.kernel.assign(np.zeros(c.kernel.shape))
    probe = type(m)(m.input, m.get_layer("conv2_block1_out").output)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32")
    stem = type(m)(m.input, m.get_layer("conv1_relu").output)(x)
    np.testing.assert_allclose(np.asarray(probe(x)), np.maximum(np.asarray(stem), 0), atol=1e-6)


# ---- GoogLeNet auxiliary outputs ------------------------------------------------------------------

def test_googlenet_training_and_inference_models():
    assert googlenet.AUX_LOSS_WEIGHT == 0.3
    m = googlenet.googlenet((32, 32, 3), 10, width=0.25)
    assert len(m.outputs) == 3
    assert m.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    assert [m.get_layer(n).output is t for n, t in zip(m.output_names, m.outputs)] == [True] * 3
    inf = googlenet.inference_model(m)
    assert len(inf.outputs) == 1
    ids = {id(w) for w in m.weights}
    assert all(id(w) in ids for w in inf.weights)  # the same variables, not copies
    assert total(inf) < total(m)
    # the inference model has exactly the aux-free network's parameters
    assert total(inf) == total(googlenet.googlenet((32, 32, 3), 10, width=0.25, aux_logits=False))
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    main, aux1, aux2 = (np.asarray(t) for t in m(x, training=False))
    np.testing.assert_allclose(np.asarray(inf(x, training=False)), main, rtol=1e-5, atol=1e-6)
    assert aux1.shape == aux2.shape == (2, 10)
    np.testing.assert_allclose(main.sum(axis=1), 1.0, rtol=1e-5)
    single = googlenet.googlenet((32, 32, 3), 10, width=0.25, aux_logits=False)
    assert len(single.outputs) == 1


def test_googlenet_aux_heads_use_the_paper_pool_on_small_images():
    # 32×32 with the small stem: 4a/4d are 16×16, so the paper's 5×5/3 pool gives its 4×4 maps;
    # 28×28 MNIST: 14×14 → 4×4; 8×8 digits: 4×4 → global pool (1×1).
    for shape, hw in (((32, 32, 3), 4), ((28, 28, 1), 4), ((8, 8, 1), 1)):
        m = googlenet.googlenet(shape, 10, width=0.125)
        assert m.get_layer("aux1_ave_pool").output.shape[1:3] == (hw, hw)
        assert m.get_layer("aux2_ave_pool").output.shape[1:3] == (hw, hw)


# ---- small images, knobs and errors -------------------------------------------------------------

@pytest.mark.parametrize("name,kw", [
    ("googlenet", dict(width=0.125)),
    ("resnet18", dict(width=0.125)),
    ("resnet50", dict(width=0.125)),
    ("plain20", {}),
    ("resnet20", dict(activation="elu", batch_norm=False)),
    ("resnext29_8x64d", dict(cardinality=2, bottleneck_width=4, width=0.125)),
    ("resnext50_32x4d", dict(cardinality=4, width=0.125)),
    ("densenet121", dict(blocks=[2, 2, 2, 2], width=0.25)),
    ("densenet_bc100", dict(depth=40)),
])
def test_small_images_forward(name, kw):
    # MNIST-sized grey input (the lead's test_networks.py covers every network at 32×32×3).
    shape = (28, 28, 1)
    m = registry.build(name, shape, 10, **kw)
    x = np.random.default_rng(0).random((2,) + shape).astype("float32")
    out = m(x, training=False)
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert tuple(out.shape) == (2, 10)
    assert np.isfinite(np.asarray(out)).all()


def test_stems_and_depth_knobs():
    assert resnet.resnet((32, 32, 3), 10, depth=18).get_layer("conv5_block2_out").output.shape[1:3] == (4, 4)
    assert resnet.resnet((224, 224, 3), 10, depth=18, width=0.125).get_layer(
        "conv5_block2_out").output.shape[1:3] == (7, 7)
    assert densenet.densenet((32, 32, 3), 10, width=0.125).get_layer("final_relu").output.shape[1:3] == (4, 4)
    # depth = 6n + 2: one knob sets the CIFAR ResNet's depth
    assert count(resnet.resnet_cifar((32, 32, 3), 10, depth=32), layers.Add) == 15
    for bad in (lambda: resnet.resnet_cifar((32, 32, 3), 10, depth=21),
                lambda: resnet.resnet((32, 32, 3), 10, depth=20),
                lambda: resnet.resnet((32, 32, 3), 10, depth=18, shortcut="D"),
                lambda: resnext.resnext_cifar((32, 32, 3), 10, depth=30),
                lambda: densenet.densenet_cifar((32, 32, 3), 10, depth=101),
                lambda: googlenet.googlenet((32, 32, 3), 10, stem="cifar")):
        with pytest.raises(ValueError):
            bad()


def test_registered_names_and_knobs():
    names = set(registry.list_models())
    expected = {"googlenet", "resnext50_32x4d", "resnext101_32x4d", "resnext29_8x64d", "densenet121",
                "densenet169", "densenet201", "densenet_bc100", "densenet40"}
    expected |= {f"{k}{d}" for k in ("resnet", "plain") for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)}
    assert expected <= names
    assert registry.get("resnet56").defaults()["depth"] == 56
    assert registry.get("plain110").defaults()["shortcut"] == "none"
    assert registry.get("resnet50").defaults()["shortcut"] == "B"
    assert registry.get("googlenet").defaults()["aux_logits"] is True
    assert registry.get("densenet169").defaults()["blocks"] == [6, 12, 32, 32]
    for name in expected:
        d = registry.get(name).defaults()
        assert {"activation", "weight_decay", "initializer", "width"} <= set(d), name


def test_custom_layers_survive_save_and_load(tmp_path):
    # ModelCheckpoint writes .keras files: the option-A shortcut and the split grouped conv must reload.
    import keras

    x = np.random.default_rng(1).random((2, 16, 16, 3)).astype("float32")
    for m in (resnet.resnet_cifar((16, 16, 3), 5, depth=8, width=0.5),
              resnext.resnext_cifar((16, 16, 3), 5, depth=11, cardinality=4, bottleneck_width=2, width=0.25,
                                    group_conv="split")):
        path = tmp_path / f"{m.name}.keras"
        m.save(path)
        again = keras.saving.load_model(path)
        np.testing.assert_allclose(np.asarray(again(x)), np.asarray(m(x)), rtol=1e-5, atol=1e-6)


def test_split_grouped_conv_equals_native():
    kw = dict(depth=11, cardinality=4, bottleneck_width=4, width=0.5)
    native = resnext.resnext_cifar((16, 16, 3), 10, group_conv="native", **kw)
    split = resnext.resnext_cifar((16, 16, 3), 10, group_conv="split", **kw)
    assert [lay.name for lay in native.layers] == [lay.name for lay in split.layers]
    assert total(native) == total(split)
    split.set_weights(native.get_weights())
    x = np.random.default_rng(2).random((2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(split(x)), np.asarray(native(x)), rtol=1e-5, atol=1e-6)


def test_resnet9_parameter_count_and_layout():
    # Page 2018 (cifar10-fast `net()`): convs 3·64·9 + 64·128·9 + 2·128·128·9 + 128·256·9 + 256·512·9
    # + 2·512·512·9 = 6,563,520, BN γ/β 2·2,240 = 4,480, FC 512·10 without bias = 5,120 → 6,573,120 (the 6.57 M
    # quoted for it; PyTorch's count); Keras' total adds the 4,480 BN moving statistics.
    model = registry.build("resnet9", (32, 32, 3), 10)
    assert trainable(model) == 6_573_120 and model.count_params() == 6_573_120 + 4_480
    assert [tuple(model.get_layer(f"layer{i}_pool").output.shape[1:]) for i in (1, 2, 3)] == [
        (16, 16, 128), (8, 8, 256), (4, 4, 512)]
    assert isinstance(model.get_layer("layer3_add"), layers.Add) and "layer2_add" not in [x.name for x in model.layers]
    bn = model.get_layer("prep_bn")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)  # PyTorch's BN defaults, as in Page's code
    w = model.get_layer("layer3_conv").kernel.numpy()
    assert np.abs(w).max() <= (1 / (256 * 9)) ** 0.5  # PyTorch's default init: U(±1/√fan_in)
