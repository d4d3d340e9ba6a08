"""AlexNet (Krizhevsky, Sutskever, Hinton, 2012), single-tower form with 96/256/384/384/256 filters.

ImageNet stem (227×227): conv1 96@11×11/4 → maxpool 3/2 → conv2 256@5×5 → maxpool 3/2 → conv3-5 →
maxpool 3/2 → FC 4096 → FC 4096 → classes. Local response normalisation after conv1 and conv2 is optional (`lrn`,
off by default: the notes and later work found it adds little accuracy). experiments/alexnet.toml turns it on,
as the paper did: without BN, it also keeps early SGD at lr 0.01 from stalling (on digits, 2 of 4 seeds
stalled near 30 % without it; 4 of 4 reached ≥ 98 % with it).

Small-image adaptation (a small-image *stem*, not an input resize): for inputs under 64 px (digits,
MNIST, CIFAR) conv1 becomes 96@3×3 stride 1 and pools use SAME (VALID in the ImageNet stem, as in the paper), as in common CIFAR ports of AlexNet,
so an 8×8 digit still reaches conv5 at 1×1. `stem="auto"` picks it by input size; "imagenet"/"small"
force one. `width` scales every layer (0.25 trains fast on a laptop CPU).
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks


def lrn_layer(x, name):
    """The paper's LRN (k=2, n=5, α=1e-4, β=0.75) after conv1 and conv2."""
    from .custom import LocalResponseNorm

    return LocalResponseNorm(5, k=2.0, alpha=1e-4, beta=0.75, name=name)(x)


def alexnet(input_shape=(227, 227, 3), num_classes=1000, *, padding="same", activation="relu", dropout=0.5,
            batch_norm=False, weight_decay=0.0, initializer="he_normal", stem="auto", lrn=False,
            width=1.0, fc_units=4096, name="alexnet"):
    """AlexNet: five convs, three max pools, two 4096-unit FC layers with dropout."""
    stem = blocks.pick_stem(stem, input_shape, "small")
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    pool_pad = "same" if stem == "small" else "valid"  # the paper's overlapping pools: 55→27→13→6
    x = inp = blocks.inputs(input_shape)
    if stem == "imagenet":
        x = blocks.conv(x, f(96), 11, strides=4, padding="valid", name="conv1", **kw)
    else:
        x = blocks.conv(x, f(96), 3, padding="same", name="conv1", **kw)
    if lrn:
        x = lrn_layer(x, "conv1_lrn")
    x = blocks.pool(x, "max", 3, 2, padding=pool_pad, name="pool1")
    x = blocks.conv(x, f(256), 5, padding=padding, name="conv2", **kw)
    if lrn:
        x = lrn_layer(x, "conv2_lrn")
    x = blocks.pool(x, "max", 3, 2, padding=pool_pad, name="pool2")
    x = blocks.conv(x, f(384), 3, padding=padding, name="conv3", **kw)
    x = blocks.conv(x, f(384), 3, padding=padding, name="conv4", **kw)
    x = blocks.conv(x, f(256), 3, padding=padding, name="conv5", **kw)
    x = blocks.pool(x, "max", 3, 2, padding=pool_pad, name="pool5")
    return keras.Model(inp, fc_head(x, num_classes, f(fc_units), dropout, kw), name=name)


def fc_head(x, num_classes, units, dropout, kw):
    """Flatten → FC6 → FC7 (ReLU, dropout) → classifier: AlexNet's head, shared with ZFNet."""
    x = layers.Flatten(name="flatten")(x)
    x = blocks.dense(x, units, dropout=dropout, name="fc6", **kw)
    x = blocks.dense(x, units, dropout=dropout, name="fc7", **kw)
    return blocks.classifier(x, num_classes, weight_decay=kw["weight_decay"])


register("alexnet", input_shape=(227, 227, 3))(alexnet)
