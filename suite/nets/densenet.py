"""DenseNet (Huang, Liu, van der Maaten, Weinberger, 2017, "Densely connected convolutional networks", CVPR).

Inside a dense block every layer receives the concatenation of all earlier feature maps and adds
`growth_rate` (k) new ones. Layers are pre-activation: BN → ReLU → conv. DenseNet-B ("bottleneck")
layers are BN-ReLU-Conv1×1(4k)-BN-ReLU-Conv3×3(k); DenseNet-C ("compression") transitions are
BN-ReLU-Conv1×1(⌊θm⌋)-AvgPool2×2/2 with θ = `compression`; DenseNet-BC has both. After the last block:
BN → ReLU → global average pool → FC → softmax. Optional dropout after each conv (the paper's 0.2 for
runs without augmentation).

ImageNet (`densenet`, Table 1, k = 32, BC, θ = 0.5): conv 2k@7×7/2 → maxpool 3×3/2 → 4 dense blocks
(`blocks`: 121 = [6,12,24,16], 169 = [6,12,32,32], 201 = [6,12,48,32]) with 3 transitions.

CIFAR (`densenet_cifar`, §3 "Implementation details"): a 3×3 conv (16 filters, or 2k for DenseNet-BC)
→ 3 dense blocks on 32/16/8 maps with equal layer counts → 8×8 global pool. `depth` L counts the
conv layers: (L-4)/3 layers per block, halved with bottlenecks, so DenseNet-BC-100 (k = 12) has 3×16
bottleneck layers (0.8 M parameters, 4.51 % error on C10+, Table 2).

Small-image adaptation of the ImageNet networks (`stem`): "cifar" replaces the 7×7/2 conv and the max
pool with one 3×3/1 conv of 2k filters (the paper's own CIFAR stem, above; also kuangliu/pytorch-cifar
models/densenet.py), so 32×32 inputs reach the fourth block at 4×4. `stem="auto"` picks it under 64 px.
`width` multiplies k (and so every layer); the growth rate itself is the paper's width knob.
No `padding` knob: 3×3 convs must be "same" for the concatenations.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks as nb  # `blocks` is the knob (layers per dense block), as in keras.applications


def _bn_act(x, activation, batch_norm, name):
    if batch_norm:
        x = nb.bn(x, name=f"{name}_bn")
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def _conv(x, filters, k, *, activation, batch_norm, dropout, weight_decay, initializer, name):
    """Pre-activation conv: BN → activation → Conv2D (no bias: the following BN or FC makes it redundant
    when batch_norm is on; a bias is added when it is off) → (dropout)."""
    x = _bn_act(x, activation, batch_norm, name)
    x = nb.conv(x, filters, k, activation=None, batch_norm=False, use_bias=not batch_norm,
                    weight_decay=weight_decay, initializer=initializer, name=name)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def conv_block(x, growth_rate, *, bottleneck=True, name, **kw):
    """One dense layer: (1×1 conv to 4k →) 3×3 conv to k, concatenated to its input."""
    y = x
    if bottleneck:
        y = _conv(y, 4 * growth_rate, 1, name=f"{name}_1", **kw)
    y = _conv(y, growth_rate, 3, name=f"{name}_2", **kw)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def dense_block(x, n, growth_rate, *, name, **kw):
    for i in range(1, n + 1):
        x = conv_block(x, growth_rate, name=f"{name}_block{i}", **kw)
    return x


def transition_block(x, compression, *, name, bottleneck=None, **kw):
    """BN → ReLU → 1×1 conv to ⌊θ·m⌋ channels → 2×2 average pool."""
    x = _conv(x, int(x.shape[-1] * compression), 1, name=name, **kw)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _body(x, inp, counts, growth_rate, compression, num_classes, kw, name):
    for i, n in enumerate(counts):
        x = dense_block(x, n, growth_rate, name=f"conv{i + 2}", **kw)
        if i < len(counts) - 1:
            x = transition_block(x, compression, name=f"pool{i + 2}", **kw)
    x = _bn_act(x, kw["activation"], kw["batch_norm"], name="final")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inp, nb.classifier(x, num_classes, weight_decay=kw["weight_decay"]), name=name)


def densenet(input_shape=(224, 224, 3), num_classes=1000, *, blocks=[6, 12, 24, 16], growth_rate=32,
             compression=0.5, bottleneck=True, stem="auto", activation="relu", batch_norm=True, dropout=0.0,
             weight_decay=0.0, initializer="he_normal", width=1.0, name="densenet"):
    """DenseNet-BC for ImageNet (Huang et al. 2017, Table 1): 4 dense blocks, k = 32."""
    stem = nb.pick_stem(stem, input_shape, "cifar")
    if not blocks or not all(isinstance(n, int) and n > 0 for n in blocks):
        raise nb.KnobError(f"blocks must be a list of positive layer counts, not {blocks}")
    k = max(1, int(round(growth_rate * width)))
    kw = dict(activation=activation, batch_norm=batch_norm, dropout=dropout, weight_decay=weight_decay,
              initializer=initializer, bottleneck=bottleneck)
    ckw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = nb.inputs(input_shape)
    if stem == "imagenet":
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = nb.conv(x, 2 * k, 7, strides=2, padding="valid", name="conv1", **ckw)
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = nb.pool(x, "max", 3, 2, name="pool1")
    else:
        # Pre-activation layers follow, so the stem is a bare conv (as in the paper's CIFAR networks).
        x = nb.conv(x, 2 * k, 3, activation=None, use_bias=not batch_norm, weight_decay=weight_decay,
                        initializer=initializer, name="conv1")
    return _body(x, inp, list(blocks), k, compression, num_classes, kw, name)


def densenet_cifar(input_shape=(32, 32, 3), num_classes=10, *, depth=100, growth_rate=12, compression=0.5,
                   bottleneck=True, activation="relu", batch_norm=True, dropout=0.0, weight_decay=0.0,
                   initializer="he_normal", width=1.0, name="densenet_cifar"):
    """DenseNet(-BC) for CIFAR (Huang et al. 2017 §3): 3 equal dense blocks, depth L."""
    per = 6 if bottleneck else 3
    if depth < 4 + per or (depth - 4) % per:
        raise nb.KnobError(f"CIFAR DenseNet depth must be {per}n+4 ({'with' if bottleneck else 'without'} "
                           f"bottlenecks), e.g. {'100, 190, 250' if bottleneck else '40, 100'}; not {depth}")
    n = (depth - 4) // per
    k = max(1, int(round(growth_rate * width)))
    kw = dict(activation=activation, batch_norm=batch_norm, dropout=dropout, weight_decay=weight_decay,
              initializer=initializer, bottleneck=bottleneck)
    x = inp = nb.inputs(input_shape)
    stem_filters = 2 * k if (bottleneck and compression < 1) else 16  # DenseNet-BC: 2k; DenseNet: 16
    x = nb.conv(x, stem_filters, 3, activation=None, use_bias=not batch_norm, weight_decay=weight_decay,
                    initializer=initializer, name="conv1")
    return _body(x, inp, [n] * 3, k, compression, num_classes, kw, name)


for _d, _b in ((121, [6, 12, 24, 16]), (169, [6, 12, 32, 32]), (201, [6, 12, 48, 32])):
    register(f"densenet{_d}", family="densenet", blocks=_b,
             summary=f"DenseNet-{_d} (BC, k=32; Huang et al. 2017 Table 1)")(densenet)
register("densenet_bc100", family="densenet", input_shape=(32, 32, 3), depth=100, growth_rate=12,
         summary="DenseNet-BC-100, k=12, for CIFAR (Huang et al. 2017 Table 2)")(densenet_cifar)
register("densenet40", family="densenet", input_shape=(32, 32, 3), depth=40, growth_rate=12, bottleneck=False,
         compression=1.0, summary="DenseNet-40, k=12, no bottleneck/compression (Huang et al. 2017 Table 2)")(
    densenet_cifar)
