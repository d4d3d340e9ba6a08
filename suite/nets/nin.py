"""Network in Network (Lin, Chen & Yan, 2014, "Network In Network", ICLR; arXiv 1312.4400).

An mlpconv layer is a k×k conv followed by 1×1 convs (a small MLP slid over the image, "cccp" layers
in the authors' Caffe code), each with ReLU. There is no FC classifier: the last mlpconv layer
produces one map per class and global average pooling + softmax reads them out (§3.2).

CIFAR-10 configuration (§4.2, the authors' released Caffe model "NIN CIFAR10" in the Caffe model zoo):
  conv 192@5×5 → cccp 160 → cccp 96 → maxpool 3/2 → dropout 0.5
  conv 192@5×5 → cccp 192 → cccp 192 → avgpool 3/2 → dropout 0.5
  conv 192@3×3 → cccp 192 → cccp classes → global average pool → softmax
(966,986 parameters for 10 classes.) The paper's text says each mlpconv is followed by max pooling;
the released model uses average pooling after the second — `pools=["max", "avg"]` follows the
released model, `pools=["max", "max"]` the text. The released model also puts a ReLU on the class
maps (`class_relu=True`). Pools are SAME (Caffe's ceil mode): 32→16→8, 28→14→7, 8→4→2.
Reported CIFAR-10 test error (Table 1): 10.41 % with dropout, 8.81 % (91.19 % accuracy) with dropout
*and* translation/flip augmentation; both after global contrast normalisation + ZCA whitening.

`maps` lists each mlpconv's widths (the last block's final 1×1 is the class layer and is added
automatically); `kernels` its first conv's size. NiN has no input-size limit (GAP), so 224×224 builds
as-is (the authors' ImageNet NIN is a different, 4-block model, not reproduced here).
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks


def nin(input_shape=(32, 32, 3), num_classes=10, *, maps=[[192, 160, 96], [192, 192, 192], [192, 192]],
        kernels=[5, 5, 3], pools=["max", "avg"], padding="same", activation="relu", batch_norm=False,
        dropout=0.5, weight_decay=0.0, initializer="he_normal", class_relu=True, width=1.0, name="nin"):
    """Network in Network: mlpconv blocks (k×k conv + 1×1 convs), global average pooling, no FC."""
    if len(maps) != len(kernels) or len(pools) != len(maps) - 1:
        raise blocks.KnobError(f"nin needs one kernel size per mlpconv block and one pool between blocks: "
                               f"maps={maps}, kernels={kernels}, pools={pools}")
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    f = blocks.scaler(width)
    x = inp = blocks.inputs(input_shape)
    cccp = 1
    for b, (widths, k) in enumerate(zip(maps, kernels), 1):
        h, w = x.shape[1:3]
        if padding == "valid" and min(h, w) < k:
            raise ValueError(f"nin: conv{b} ({k}×{k} VALID) needs a map of at least {k}×{k}, got {h}×{w} "
                             f"from input {tuple(input_shape)}; use padding='same' or a larger input")
        x = blocks.conv(x, f(widths[0]), k, padding=padding, name=f"conv{b}", **kw)
        for n in widths[1:]:
            x = blocks.conv(x, f(n), 1, name=f"cccp{cccp}", **kw)
            cccp += 1
        if b < len(maps):
            x = blocks.pool(x, pools[b - 1], 3, 2, padding="same", name=f"pool{b}")
            if dropout:
                x = layers.Dropout(dropout, name=f"pool{b}_dropout")(x)
    # The class maps: one per class, then global average pooling instead of fully connected layers.
    x = blocks.conv(x, num_classes, 1, name=f"cccp{cccp}", activation=activation if class_relu else None,
                    batch_norm=False, weight_decay=weight_decay, initializer=initializer)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inp, out, name=name)


register("nin", input_shape=(32, 32, 3), summary="Network in Network, CIFAR-10 model (Lin et al. 2014)")(nin)
