"""ResNeXt (Xie, Girshick, Dollár, Tu, He, 2017, "Aggregated residual transformations for deep neural
networks", CVPR).

A ResNet whose bottleneck 3×3 conv is split into `cardinality` groups (Fig. 3c, the grouped-convolution
form, equivalent to the paper's aggregated branches): 1×1 conv to C·d channels → 3×3 conv with C
groups → 1×1 conv to the block's output, BN after every conv, ReLU after the first two and after the
addition. Shortcuts are identities, with 1×1 projections only where the shape changes (option B, §5.1).
Downsampling is done by the stride-2 3×3 conv of the first block of a stage (§5.1), so the blocks are
`resnet.bottleneck_block(..., groups=C, bottleneck_stride="3x3")`.

ImageNet (`resnext`, Table 1): ResNet-50/101 layout ([3,4,6,3] / [3,4,23,3] blocks), conv1 64@7×7/2,
maxpool 3×3/2, stage outputs 256/512/1024/2048, group width d doubling per stage (32×4d: 128, 256, 512,
1024 channels in the grouped conv). `resnext50_32x4d` (25.0 M parameters, 22.2 % top-1 error, Table 3)
and `resnext101_32x4d` (44.2 M, 21.2 %).

CIFAR (`resnext_cifar`, §5.3 and the authors' Torch code, facebookresearch/ResNeXt): one 3×3 conv of 64
filters, 3 stages of n blocks on 32/16/8 maps with outputs 256/512/1024 and group width d, 2d, 4d,
global average pooling, FC: depth = 9n + 2 (29 for n = 3). `resnext29_8x64d` is the paper's
ResNeXt-29 8×64d (34.4 M parameters, 3.65 % error on CIFAR-10, Table 7). For quick runs, lower
`cardinality`/`bottleneck_width` or `width`.

Small images: the ImageNet builder's `stem="cifar"` (auto under 64 px) swaps the 7×7/2 conv and pool
for a 3×3/1 conv of 64 filters, exactly the CIFAR network's stem (facebookresearch/ResNeXt, the same
adaptation kuangliu/pytorch-cifar uses for ResNet). `width` scales every conv (group width and outputs).

`group_conv`: "native" is one Conv2D(groups=C); "split" computes it as C convs on channel slices
(custom.SplitGroupConv2D: the same kernel, names and function); "auto" (default) picks "split" on
TensorFlow without a GPU, whose grouped-conv gradient is ~30-60× slower than the split form on CPU,
and "native" otherwise. Parameter counts and checkpoints are identical either way.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks
from .resnet import bottleneck_block, stack, stem_block

IMAGENET_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _stages(x, counts, cardinality, bottleneck_width, group_conv, f, kw):
    for i, n in enumerate(counts):
        mid = cardinality * f(bottleneck_width * 2 ** i)
        x = stack(x, bottleneck_block, f(256 * 2 ** i), n, 1 if i == 0 else 2, shortcut="B",
                  mid_filters=mid, groups=cardinality, bottleneck_stride="3x3", group_conv=group_conv,
                  name=f"conv{i + 2}", **kw)
    return x


def _head(x, inp, num_classes, weight_decay, name):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inp, blocks.classifier(x, num_classes, weight_decay=weight_decay), name=name)


def resnext(input_shape=(224, 224, 3), num_classes=1000, *, depth=50, cardinality=32, bottleneck_width=4,
            stem="auto", activation="relu", batch_norm=True, weight_decay=0.0, initializer="he_normal",
            width=1.0, group_conv="auto", name="resnext"):
    """ResNeXt for ImageNet (Xie et al. 2017, Table 1): depth 50/101/152, C×d grouped bottlenecks."""
    if depth not in IMAGENET_DEPTHS:
        raise blocks.KnobError(f"ImageNet ResNeXt depth must be one of {sorted(IMAGENET_DEPTHS)}, not {depth}")
    stem = blocks.pick_stem(stem, input_shape, "cifar")
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = blocks.inputs(input_shape)
    x = stem_block(x, stem, f(64), kw)
    x = _stages(x, IMAGENET_DEPTHS[depth], cardinality, bottleneck_width, group_conv, f, kw)
    return _head(x, inp, num_classes, weight_decay, name)


def resnext_cifar(input_shape=(32, 32, 3), num_classes=10, *, depth=29, cardinality=8, bottleneck_width=64,
                  activation="relu", batch_norm=True, weight_decay=0.0, initializer="he_normal", width=1.0,
                  group_conv="auto", name="resnext_cifar"):
    """ResNeXt for CIFAR (Xie et al. 2017 §5.3): depth = 9n+2, 3 stages with outputs 256/512/1024."""
    if depth < 11 or (depth - 2) % 9:
        raise blocks.KnobError(f"CIFAR ResNeXt depth must be 9n+2 (11, 20, 29, 38, …), not {depth}")
    n = (depth - 2) // 9
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = blocks.inputs(input_shape)
    x = blocks.conv(x, f(64), 3, name="conv1", **kw)
    x = _stages(x, [n] * 3, cardinality, bottleneck_width, group_conv, f, kw)
    return _head(x, inp, num_classes, weight_decay, name)


register("resnext50_32x4d", family="resnext", depth=50, cardinality=32, bottleneck_width=4,
         summary="ResNeXt-50 32×4d (Xie et al. 2017, Table 1/3)")(resnext)
register("resnext101_32x4d", family="resnext", depth=101, cardinality=32, bottleneck_width=4,
         summary="ResNeXt-101 32×4d (Xie et al. 2017, Table 3)")(resnext)
register("resnext29_8x64d", family="resnext", input_shape=(32, 32, 3), depth=29, cardinality=8,
         bottleneck_width=64, summary="ResNeXt-29 8×64d for CIFAR (Xie et al. 2017 §5.3, Table 7)")(resnext_cifar)
