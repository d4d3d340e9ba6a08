"""ResNet (He, Zhang, Ren, Sun, 2016, "Deep residual learning for image recognition", CVPR) and its
plain twins (the same stack of layers without shortcuts, the paper's §4.1 control).

ImageNet networks (`resnet`, paper Table 1): conv1 64@7×7/2 → maxpool 3×3/2 → stages conv2_x…conv5_x
with 64/128/256/512 filters (×4 at the output of bottleneck blocks), the first block of conv3…conv5
downsampling by stride 2 → global average pool → FC → softmax.
  depth 18, 34: basic blocks (3×3, 3×3), [2,2,2,2] and [3,4,6,3];
  depth 50, 101, 152: bottleneck blocks (1×1, 3×3, 1×1), [3,4,6,3], [3,4,23,3], [3,8,36,3].
Post-activation ("v1"): conv → BN → ReLU, the last BN before the addition, ReLU after it. As in the
paper's Caffe models (and keras.applications) the stride of a downsampling bottleneck sits on its first
1×1 conv; `bottleneck_stride="3x3"` moves it to the 3×3 ("ResNet v1.5", torchvision). Parameter counts
are identical.

Shortcuts (paper §3.3, §4.1, Table 3), knob `shortcut`:
  "A": identity; where the shape changes, a parameter-free shortcut: stride-2 subsampling plus
       zero channels appended (the Torch implementation's concat-with-zeros). No extra parameters.
  "B": identity, and a 1×1 projection conv (+ BN) only where the shape changes (the paper's default
       for ResNet-50/101/152 and Keras/torchvision's).
  "C": a projection on every block.
  "none": no shortcut at all: the plain network (plain18…plain152, plain20…plain110).

CIFAR-10 networks (`resnet_cifar`, paper §4.2): a 3×3 conv with 16 filters, then 3 stages of n basic
blocks (6n 3×3 layers) with 16/32/64 filters on 32×32/16×16/8×8 maps (stride-2 first conv in stages 2
and 3), global average pooling, a 10-way FC: depth = 6n + 2 (20, 32, 44, 56, 110, 1202), option A
shortcuts everywhere, so ResNet-n and plain-n have exactly the same parameters.

Small-image adaptation of the ImageNet networks (`stem`): "imagenet" is the paper's 7×7/2 conv and
3×3/2 max pool, which would shrink a 32×32 image to 1×1 by conv5; "cifar" replaces them with one
3×3/1 conv of 64 filters and no pool, the CIFAR port of ResNet-18/34/50 in kuangliu/pytorch-cifar
(models/resnet.py), also used e.g. by DeVries & Taylor 2017 (Cutout). Maps are then 32/16/8/4.
`stem="auto"` picks "cifar" for inputs under 64 px.

`width` multiplies every layer's filter count (1.0 = the paper). No `padding` knob: every conv is
"same" (the ImageNet stem pads explicitly, as the reference models) because the residual addition
needs matching shapes.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks

SHORTCUTS = ("A", "B", "C", "none")
# depth → (block kind, blocks per stage), He et al. 2016 Table 1.
IMAGENET_DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}


def _group_impl(group_conv):
    if group_conv not in ("auto", "native", "split"):
        raise blocks.KnobError(f"group_conv must be auto, native or split, not {group_conv!r}")
    if group_conv == "auto":
        if keras.backend.backend() != "tensorflow":
            return "native"
        import tensorflow as tf

        return "native" if tf.config.list_physical_devices("GPU") else "split"
    return group_conv


def grouped_conv(x, filters, kernel_size, *, strides=1, groups=1, group_conv="auto", activation="relu",
                 batch_norm=True, weight_decay=0.0, initializer="he_normal", name):
    """blocks.conv with a grouped Conv2D that is `custom.SplitGroupConv2D` where that is faster (see there).
    Both forms have the same layer names and weight shapes, so weights move freely between them."""
    if groups == 1 or _group_impl(group_conv) == "native":
        return blocks.conv(x, filters, kernel_size, strides=strides, groups=groups, activation=activation,
                           batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer, name=name)
    from .custom import SplitGroupConv2D

    x = SplitGroupConv2D(filters, kernel_size, strides=strides, padding="same", groups=groups,
                         use_bias=not batch_norm, kernel_initializer=initializer,
                         kernel_regularizer=blocks.regularizer(weight_decay), name=f"{name}_conv")(x)
    if batch_norm:
        x = blocks.bn(x, name=f"{name}_bn")
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def shortcut_branch(x, filters, strides, shortcut, *, batch_norm, weight_decay, initializer, name, **_):
    """The shortcut of one block: a tensor of shape (H/strides, W/strides, filters), or None for "none"."""
    if shortcut not in SHORTCUTS:
        raise blocks.KnobError(f"shortcut must be one of {', '.join(SHORTCUTS)}, not {shortcut!r}")
    if shortcut == "none":
        return None
    changes = strides != 1 or x.shape[-1] != filters
    if shortcut == "C" or (shortcut == "B" and changes):
        return blocks.conv(x, filters, 1, strides=strides, activation=None, batch_norm=batch_norm,
                           weight_decay=weight_decay, initializer=initializer, name=f"{name}_0")
    if changes:  # option A
        from .custom import ZeroPadShortcut

        return ZeroPadShortcut(filters, strides, name=f"{name}_0_pad")(x)
    return x


def _merge(x, shortcut, activation, name):
    if shortcut is not None:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation(activation, name=f"{name}_out")(x)


def basic_block(x, filters, strides=1, *, shortcut="B", activation="relu", name, **kw):
    """Two 3×3 convs; the output has `filters` channels."""
    sc = shortcut_branch(x, filters, strides, shortcut, name=name, **kw)
    x = blocks.conv(x, filters, 3, strides=strides, activation=activation, name=f"{name}_1", **kw)
    x = blocks.conv(x, filters, 3, activation=None, name=f"{name}_2", **kw)
    return _merge(x, sc, activation, name)


def bottleneck_block(x, filters, strides=1, *, shortcut="B", activation="relu", mid_filters=None, groups=1,
                     bottleneck_stride="1x1", group_conv="auto", name, **kw):
    """1×1 (mid_filters, default filters/4) → 3×3 (grouped when groups > 1) → 1×1 (filters)."""
    if bottleneck_stride not in ("1x1", "3x3"):
        raise blocks.KnobError(f"bottleneck_stride must be 1x1 or 3x3, not {bottleneck_stride!r}")
    mid = mid_filters or max(1, filters // 4)
    s1, s3 = (strides, 1) if bottleneck_stride == "1x1" else (1, strides)
    sc = shortcut_branch(x, filters, strides, shortcut, name=name, **kw)
    x = blocks.conv(x, mid, 1, strides=s1, activation=activation, name=f"{name}_1", **kw)
    x = grouped_conv(x, mid, 3, strides=s3, groups=groups, group_conv=group_conv, activation=activation,
                     name=f"{name}_2", **kw)
    x = blocks.conv(x, filters, 1, activation=None, name=f"{name}_3", **kw)
    return _merge(x, sc, activation, name)


def stack(x, block, filters, n, strides, *, name, **kw):
    """`n` blocks; the first one has stride `strides`. Blocks are named {name}_block1 … {name}_block{n}."""
    x = block(x, filters, strides, name=f"{name}_block1", **kw)
    for i in range(2, n + 1):
        x = block(x, filters, 1, name=f"{name}_block{i}", **kw)
    return x


def _head(x, inp, num_classes, weight_decay, name):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = blocks.classifier(x, num_classes, weight_decay=weight_decay)
    return keras.Model(inp, out, name=name)


def stem_block(x, stem, filters, kw):
    """ImageNet: conv1 7×7/2 (explicit 3-px padding) → max pool 3×3/2, 224 → 112 → 56. CIFAR: one 3×3 conv.
    Shared with ResNeXt."""
    if stem != "imagenet":
        return blocks.conv(x, filters, 3, name="conv1", **kw)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = blocks.conv(x, filters, 7, strides=2, padding="valid", name="conv1", **kw)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return blocks.pool(x, "max", 3, 2, name="pool1_pool")


def resnet(input_shape=(224, 224, 3), num_classes=1000, *, depth=50, shortcut="B", stem="auto",
           activation="relu", batch_norm=True, weight_decay=0.0, initializer="he_normal", width=1.0,
           bottleneck_stride="1x1", name="resnet"):
    """ResNet for ImageNet (He et al. 2016, Table 1): depth 18/34 (basic) or 50/101/152 (bottleneck)."""
    if depth not in IMAGENET_DEPTHS:
        raise blocks.KnobError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, not {depth} "
                               "(for CIFAR ResNets with depth 6n+2 use resnet20…resnet110)")
    stem = blocks.pick_stem(stem, input_shape, "cifar")
    kind, counts = IMAGENET_DEPTHS[depth]
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = blocks.inputs(input_shape)
    x = stem_block(x, stem, f(64), kw)
    if kind == "basic":
        block, expansion, extra = basic_block, 1, {}
    else:
        block, expansion, extra = bottleneck_block, 4, {"bottleneck_stride": bottleneck_stride}
    for i, n in enumerate(counts):
        x = stack(x, block, f(64 * 2 ** i) * expansion, n, 1 if i == 0 else 2, shortcut=shortcut,
                  name=f"conv{i + 2}", **extra, **kw)
    return _head(x, inp, num_classes, weight_decay, name)


def resnet_cifar(input_shape=(32, 32, 3), num_classes=10, *, depth=20, shortcut="A", activation="relu",
                 batch_norm=True, weight_decay=0.0, initializer="he_normal", width=1.0, name="resnet_cifar"):
    """ResNet for CIFAR-10 (He et al. 2016 §4.2): depth = 6n+2, 3 stages of 16/32/64 filters."""
    if depth < 8 or (depth - 2) % 6:
        raise blocks.KnobError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, …), not {depth}")
    n = (depth - 2) // 6
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = blocks.inputs(input_shape)
    x = blocks.conv(x, f(16), 3, name="conv1", **kw)
    for i in range(3):
        x = stack(x, basic_block, f(16 * 2 ** i), n, 1 if i == 0 else 2, shortcut=shortcut,
                  name=f"conv{i + 2}", **kw)
    return _head(x, inp, num_classes, weight_decay, name)


_T3 = "He et al. 2016 Table 3"
for _d in IMAGENET_DEPTHS:
    register(f"resnet{_d}", family="resnet", depth=_d,
             summary=f"ResNet-{_d}, ImageNet layout, option-B shortcuts ({_T3}); stem='cifar' on small inputs")(resnet)
    register(f"plain{_d}", family="resnet", depth=_d, shortcut="none",
             summary=f"Plain-{_d}: ResNet-{_d}'s layers without shortcuts (He et al. 2016 §4.1)")(resnet)
for _d in (20, 32, 44, 56, 110):
    register(f"resnet{_d}", family="resnet", input_shape=(32, 32, 3), depth=_d,
             summary=f"ResNet-{_d} for CIFAR-10, option A (He et al. 2016 §4.2, Table 6)")(resnet_cifar)
    register(f"plain{_d}", family="resnet", input_shape=(32, 32, 3), depth=_d, shortcut="none",
             summary=f"Plain-{_d} for CIFAR-10: ResNet-{_d} without shortcuts (He et al. 2016 Fig. 6)")(resnet_cifar)
