"""ZFNet, VGG, NiN, All-CNN, dilated nets, RNNs and the notes' 代码练习二 CNN: sizes, shapes, the RNN toy.

The generic build-and-train-a-step test for every registered network is tests/test_networks.py;
this file pins published parameter counts and the layouts the papers describe.
"""

import numpy as np
import keras
import pytest

from suite import registry
from suite.nets import dilated, rnn

MINE = ["exercise2_cnn", "zfnet", "zfnet_fig3", "nin", "allcnn_c", "model_c", "strided_cnn_c", "convpool_cnn_c",
        "dilated_gridding", "dilated_hdc", "rnn", "lstm", "gru"] + [
    f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def spatial(model, layer):
    return tuple(model.get_layer(layer).output.shape[1:3])


# --- published parameter counts -------------------------------------------------------------------------

# 224×224×3, 1000 classes, Keras convention (weights + biases; these nets have no non-trainable weights).
# VGG-16/19: keras.applications.VGG16/VGG19 (include_top=True) report 138,357,544 / 143,667,240.
# VGG-11/13: torchvision.models.vgg11/vgg13 (documented "num_params"), same convention: 132,863,336 / 133,047,848.
# initializer="zeros" only skips the slow random init of the 102 M-weight FC6; it does not change the count.
@pytest.mark.parametrize("name,count", [("vgg11", 132_863_336), ("vgg13", 133_047_848),
                                        ("vgg16", 138_357_544), ("vgg19", 143_667_240)])
def test_vgg_imagenet_parameter_counts(name, count):
    model = registry.build(name, (224, 224, 3), 1000, initializer="zeros")
    assert model.count_params() == count


def test_vgg16_bn_matches_torchvision_up_to_redundant_conv_biases():
    # torchvision vgg16_bn: 138,365,992 parameters (conv biases kept, BN γ/β counted, running stats not).
    # Here the 13 conv biases (4,224 values) are dropped because BN's β replaces them.
    model = registry.build("vgg16_bn", (224, 224, 3), 1000, initializer="zeros")
    assert trainable(model) == 138_365_992 - 4_224
    assert model.count_params() == 138_365_992 - 4_224 + 2 * 4_224  # + moving mean/variance


def test_vgg16_cifar_head_matches_chenyaofo_port():
    # chenyaofo/pytorch-cifar-models cifar10_vgg16_bn: "n_params=15.25M" (15,253,578 in PyTorch's count:
    # conv biases + BN γ/β + FC 512-512-10). Without BN: 14,714,688 conv + 530,442 head = 15,245,130.
    assert registry.build("vgg16", (32, 32, 3), 10).count_params() == 15_245_130
    assert trainable(registry.build("vgg16_bn", (32, 32, 3), 10)) == 15_253_578 - 4_224


def test_nin_cifar10_parameter_count():
    # The authors' released NIN-CIFAR10 model: 192-160-96 / 192-192-192 / 192-192-10 → 966,986 weights+biases.
    assert registry.build("nin", (32, 32, 3), 10).count_params() == 966_986


def test_allcnn_c_parameter_count():
    # All-CNN-C (Springenberg et al. 2015, Table 2): 3×(3×3 96) + 3×(3×3 192) + 3×3 192 + 1×1 192 + 1×1 10,
    # about 1.37 M parameters; model C (pools instead of the stride-2 convs) has two convs fewer.
    allcnn = registry.build("allcnn_c", (32, 32, 3), 10).count_params()
    assert allcnn == 1_369_738
    assert allcnn - registry.build("model_c", (32, 32, 3), 10).count_params() == (9 * 96 * 96 + 96) + (
        9 * 192 * 192 + 192)


@pytest.mark.parametrize("name", ["nin", "allcnn_c"])
def test_class_relu_false_leaves_the_class_maps_linear(name):
    """The recipes drop the ReLU on the class maps (experiments/nin.toml says why): GAP reads the maps' raw values."""
    import keras

    for relu in (True, False):
        m = registry.build(name, (32, 32, 3), 10, class_relu=relu)
        gap = m.get_layer("gap")
        maps = keras.Model(m.inputs, gap.input)(np.random.default_rng(0).normal(size=(4, 32, 32, 3)))
        assert (np.asarray(maps).min() < 0) == (not relu)  # a ReLU leaves nothing below 0


def test_exercise2_cnn_parameter_count():
    # The PyTorch CIFAR-10 tutorial Net (= the notes' 代码练习二): 456 + 2,416 + 48,120 + 10,164 + 850 = 62,006.
    assert registry.build("exercise2_cnn", (32, 32, 3), 10).count_params() == 62_006


# --- layouts, SAME vs VALID ------------------------------------------------------------------------------

def test_zfnet_paper_map_sizes_and_same_padding():
    # Fig. 3 of Zeiler & Fergus: 224 → 110 → 55 → 26 → 13 → 13 → 6 (padding="valid", the default).
    m = registry.build("zfnet", (224, 224, 3), 1000, width=0.125, fc_units=64)
    assert [spatial(m, n) for n in ("conv1_relu", "pool1", "conv2_relu", "pool2", "conv5_relu", "pool5")] == [
        (110, 110), (55, 55), (26, 26), (13, 13), (13, 13), (6, 6)]
    assert m.get_layer("conv1_conv").kernel.shape[:2] == (7, 7)
    assert [m.get_layer(f"conv{i}_conv").filters for i in (3, 4, 5)] == [64, 128, 64]  # 512/1024/512 × 1/8
    s = registry.build("zfnet", (224, 224, 3), 1000, width=0.125, fc_units=64, padding="same")
    assert spatial(s, "conv1_relu") == (112, 112) and spatial(s, "pool5") == (7, 7)


def test_zfnet_lrn_option_builds():
    m = registry.build("zfnet", (32, 32, 3), 10, lrn=True, width=0.125, fc_units=32)
    assert m.get_layer("pool1_lrn") is not None
    assert m(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)


def test_vgg_valid_padding_shrinks_and_small_input_raises():
    same = registry.build("vgg11", (224, 224, 3), 10, width=0.0625, fc_units=16)
    valid = registry.build("vgg11", (224, 224, 3), 10, width=0.0625, fc_units=16, padding="valid")
    assert spatial(same, "block1_conv1_relu") == (224, 224) and spatial(valid, "block1_conv1_relu") == (222, 222)
    assert spatial(same, "block5_pool") == (7, 7) and spatial(valid, "block5_pool") != (7, 7)
    with pytest.raises(ValueError, match="block.*_conv.*VALID"):
        registry.build("vgg16", (32, 32, 3), 10, padding="valid")


def test_vgg_heads():
    small = registry.build("vgg16", (32, 32, 3), 10, width=0.125)
    assert small.get_layer("fc1_dense").units == 512  # CIFAR head picked automatically below 64 px
    assert registry.build("vgg16", (32, 32, 3), 10, width=0.125, head="imagenet").get_layer(
        "fc1_dense").units == 4096
    bn = registry.build("vgg11_bn", (32, 32, 3), 10, width=0.125)
    assert any(layer.name.endswith("_bn") for layer in bn.layers)


def test_vgg13_single_stacks_is_the_papers_shallow_net():
    # §4.1: B (VGG-13) with each pair of 3×3 convs replaced by one 5×5 conv of the pair's width. Its conv weights,
    # counted by hand from Table 1's widths (biases included): Σ (25·c_in + 1)·c_out over the five stages.
    def convs(model):
        return [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]

    deep = registry.build("vgg13", (32, 32, 3), 10)
    shallow = registry.build("vgg13", (32, 32, 3), 10, stacks="single")
    assert [c.kernel_size for c in convs(shallow)] == [(5, 5)] * 5
    assert [c.filters for c in convs(shallow)] == [64, 128, 256, 512, 512]
    widths = [3, 64, 128, 256, 512, 512]
    by_hand = sum((25 * a + 1) * b for a, b in zip(widths, widths[1:]))
    head = deep.count_params() - sum(c.count_params() for c in convs(deep))
    assert shallow.count_params() == by_hand + head
    for name in ("block1_conv1_relu", "block5_pool"):  # the same map sizes at every stage
        assert spatial(shallow, name) == spatial(deep, name)
    # VGG-16's stacks of three become 7×7 convs; a single 3×3 (VGG-11's first stages) stays 3×3
    for depth, kernels in ((16, [5, 5, 7, 7, 7]), (11, [3, 3, 5, 5, 5])):
        m = registry.build(f"vgg{depth}", (32, 32, 3), 10, width=0.125, stacks="single")
        assert [c.kernel_size[0] for c in convs(m)] == kernels, depth
    with pytest.raises(ValueError, match="stacks must be"):
        registry.build("vgg13", (32, 32, 3), 10, stacks="5x5")


def test_exercise2_cnn_valid_vs_same():
    valid = registry.build("exercise2_cnn", (32, 32, 3), 10)
    same = registry.build("exercise2_cnn", (32, 32, 3), 10, padding="same")
    assert spatial(valid, "pool2") == (5, 5) and spatial(same, "pool2") == (8, 8)  # 16·5·5 = 400 FC inputs
    with pytest.raises(ValueError, match="conv2.*5×5"):
        registry.build("exercise2_cnn", (8, 8, 1), 10)
    assert registry.build("exercise2_cnn", (8, 8, 1), 10, padding="same").output.shape[-1] == 10


def test_allcnn_downsample_is_one_setting():
    # The notes' "pooling vs strided conv": same net, max pooling or a stride-2 3×3 conv.
    stride = registry.build("allcnn_c", (32, 32, 3), 10, width=0.25)
    pool = registry.build("allcnn_c", (32, 32, 3), 10, width=0.25, downsample="pool")
    assert not any("pool" in layer.name for layer in stride.layers if layer.name != "gap")
    assert any(layer.name == "pool1" for layer in pool.layers)
    for m in (stride, pool):  # 32 → 16 → 8, then the VALID 3×3 conv → 6×6 global average pooling
        assert spatial(m, "top_conv_relu") == (6, 6)
    same = registry.build("allcnn_c", (32, 32, 3), 10, width=0.25, padding="same")
    assert spatial(same, "top_conv_relu") == (8, 8)
    with pytest.raises(ValueError, match="top_conv"):
        registry.build("allcnn_c", (8, 8, 1), 10)


def test_nin_has_no_dense_layers_and_global_pooling():
    m = registry.build("nin", (32, 32, 3), 10)
    assert not any(type(layer).__name__ == "Dense" for layer in m.layers)
    assert m.get_layer("cccp6_conv").filters == 10 and spatial(m, "cccp6_relu") == (8, 8)


# --- dilation: the gridding effect --------------------------------------------------------------------------

def test_gridding_vs_hdc_coverage():
    # Wang et al. 2018 §3.2: rates with a common factor leave holes; HDC's [1,2,5] covers every pixel.
    assert dilated.has_gridding([2, 4, 6]) and all(o % 2 == 0 for o in dilated.coverage([2, 4, 6]))
    assert not dilated.has_gridding([1, 2, 5])
    assert dilated.coverage([1, 2, 5]) == list(range(-8, 9))
    assert dilated.hdc_max_distance([1, 2, 5]) == 2  # ≤ K = 3: satisfies HDC
    assert dilated.hdc_max_distance([1, 2, 9]) == 5  # > 3: the paper's counter-example
    assert dilated.hdc_max_distance([2, 4, 6]) == 4


def test_dilated_rates_are_a_setting_and_valid_raises():
    g = registry.build("dilated_gridding", (32, 32, 3), 10, filters=8, stem_filters=8)
    h = registry.build("dilated_hdc", (32, 32, 3), 10, filters=8, stem_filters=8)
    rates = lambda m: [layer.dilation_rate[0] for layer in m.layers if layer.name.startswith("dil")  # noqa: E731
                       and layer.name.endswith("_conv")]
    assert rates(g) == [2, 4, 6, 2, 4, 6] and rates(h) == [1, 2, 5, 1, 2, 5]
    assert g.count_params() == h.count_params()
    with pytest.raises(ValueError, match="rate 6.*VALID"):
        registry.build("dilated_gridding", (32, 32, 3), 10, padding="valid")


# --- RNNs --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [("rnn", "SimpleRNN"), ("lstm", "LSTM"), ("gru", "GRU")])
def test_rnn_reads_image_rows(name, cls):
    m = registry.build(name, (28, 28, 1), 10, units=16)
    assert tuple(m.get_layer("rows").output.shape[1:]) == (28, 28)
    assert any(type(layer).__name__ == cls for layer in m.layers)


def test_rnn_reads_pixels_in_raster_order():
    # read="pixels": H·W steps of C features (sequential MNIST); step t is pixel (t // W, t % W), channels together
    m = registry.build("gru", (4, 5, 2), 10, units=4, read="pixels")
    seq = keras.Model(m.input, m.get_layer("pixels").output)
    x = np.arange(4 * 5 * 2, dtype="float32").reshape(1, 4, 5, 2)
    out = np.asarray(seq(x))
    assert out.shape == (1, 20, 2)
    assert out[0, 7].tolist() == x[0, 1, 2].tolist()
    with pytest.raises(ValueError, match="read must be one of rows, pixels"):
        registry.build("rnn", (8, 8, 1), 10, read="columns")


def test_rnn_token_input_embedding_vs_one_hot():
    onehot = rnn.rnn((5,), 4, cell="simple", units=4, sequence_output=True)
    emb = rnn.rnn((5,), 4, cell="simple", units=4, embedding=10, sequence_output=True)
    assert tuple(onehot.get_layer("one_hot").output.shape[1:]) == (5, 4)
    assert tuple(emb.get_layer("embedding").output.shape[1:]) == (5, 10)
    x = np.array([rnn.encode("hello")], "int32")
    assert onehot(x).shape == emb(x).shape == (1, 5, 4)


@pytest.mark.parametrize("cell,embedding", [("simple", 0), ("lstm", 10)])
def test_rnn_learns_hello_to_ohlol(cell, embedding):
    # The notes' toy (seed 002): one sequence, 4-letter vocabulary, per-character softmax.
    assert rnn.hello_ohlol(cell=cell, embedding=embedding) == "ohlol"


# --- every builder on small images ---------------------------------------------------------------------------

SMALL = dict(vgg=dict(width=0.125, fc_units=32), zfnet=dict(width=0.125, fc_units=32), nin=dict(width=0.25),
             allcnn=dict(width=0.25), dilated=dict(filters=8, stem_filters=8), rnn=dict(units=8), lenet={})


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize("name", MINE)
def test_forward_pass_on_small_images(name, shape):
    kw = SMALL[registry.get(name).family]
    m = registry.build(name, shape, 10, **kw)
    out = np.asarray(m(np.random.default_rng(0).random((2, *shape), dtype="float32"), training=False))
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
