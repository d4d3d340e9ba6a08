"""ZFNet (Zeiler & Fergus, 2014, "Visualizing and Understanding Convolutional Networks", ECCV; arXiv 1311.2901).

AlexNet with the two changes the notes list (CS231n's summary of the paper):
  1. conv1 is 7×7 stride 2 instead of 11×11 stride 4 (the paper's Fig. 3; the visualisations showed
     aliasing and dead filters with the large stride), and
  2. conv3–5 have 512/1024/512 filters instead of 384/384/256 — the paper's Table 2 row "1 convnet as
     per Fig. 3 but with layers 3,4,5: 512,1024,512 maps" (model (b), 37.5 % top-1 / 16.0 % top-5
     error on ImageNet-2012 val). `conv_filters=[384, 384, 256]` gives the Fig. 3 model ("zfnet_fig3").

ImageNet layout (`stem="imagenet"`, 224×224×3), map sizes as in Fig. 3:
  conv1 96@7×7/2 → 110 → maxpool 3/2 → 55 → [LRN] → conv2 256@5×5/2 → 26 → maxpool 3/2 → 13 → [LRN]
  → conv3–5 3×3 → 13 → maxpool 3/2 → 6 → FC 4096 → FC 4096 → classes (dropout 0.5 on both FCs).
  `padding="valid"` (default) reproduces those sizes: conv1 sees a 1-pixel zero border (224→110),
  conv2 is VALID (55→26), conv3–5 keep their size (3×3 with a 1-pixel border) and the pools use
  cuda-convnet/Caffe "ceil mode" (110→55, 26→13, 13→6). `padding="same"` makes every conv and pool
  SAME: 224→112→56→28→14→14→7, so the FC input grows from 6×6 to 7×7.
The paper "contrast normalizes" after pool1 and pool2; `lrn=True` adds AlexNet's LRN there
(alexnet.lrn_layer). Off by default, as in alexnet.py. The paper initialises weights with N(0, 10⁻²) and
renormalises conv filters whose RMS exceeds 10⁻¹; neither is reproduced here (initializer knob instead).

Small-image adaptation (`stem="small"`, chosen by `stem="auto"` below 64 px): the same CIFAR stem as
alexnet.py — conv1 3×3 stride 1, conv2 5×5 stride 1, pools 3/2 SAME — so 32→16→8→4 and an 8×8 digit
still reaches the FC layers at 1×1; the ZF-specific widths are kept. `width` scales every layer.
"""

from ..lazy import keras, layers

from ..registry import register
from . import alexnet as _alexnet
from . import blocks


def _ceil_pool(x, name, pool_size=3, strides=2):
    """Max pool with cuda-convnet/Caffe output size ceil((n-k)/s)+1 (Keras: VALID or SAME, whichever matches)."""
    n = x.shape[1]
    want = -(-(n - pool_size) // strides) + 1
    padding = "valid" if (n - pool_size) // strides + 1 == want else "same"
    return blocks.pool(x, "max", pool_size, strides, padding=padding, name=name)


def zfnet(input_shape=(224, 224, 3), num_classes=1000, *, padding="valid", activation="relu", dropout=0.5,
          batch_norm=False, weight_decay=0.0, initializer="he_normal", stem="auto", lrn=False,
          conv_filters=[512, 1024, 512], width=1.0, fc_units=4096, name="zfnet"):
    """ZFNet: conv1 7×7/2, conv2 5×5/2, conv3–5 (512/1024/512), two 4096-unit FC layers."""
    stem = blocks.pick_stem(stem, input_shape, "small")
    if len(conv_filters) != 3:
        raise blocks.KnobError(f"conv_filters needs the three widths of conv3, conv4, conv5, got {conv_filters}")
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = blocks.inputs(input_shape)

    def need(x, k, layer):
        h, w = x.shape[1:3]
        if min(h, w) < k:
            raise ValueError(f"zfnet: {layer} ({k}×{k}, {padding.upper()}) needs a map of at least {k}×{k}, got "
                             f"{h}×{w} from input {tuple(input_shape)} (stem={stem}); use padding='same', "
                             f"stem='small' or a larger input")

    def pool(x, name):
        if stem == "small" or padding == "same":
            return blocks.pool(x, "max", 3, 2, padding="same", name=name)
        need(x, 3, name)
        return _ceil_pool(x, name)

    if stem == "imagenet":
        if padding == "valid":
            x = layers.ZeroPadding2D(1, name="conv1_pad")(x)
        need(x, 7, "conv1")
        x = blocks.conv(x, f(96), 7, strides=2, padding=padding, name="conv1", **kw)
    else:
        x = blocks.conv(x, f(96), 3, padding="same", name="conv1", **kw)
    x = pool(x, "pool1")
    if lrn:
        x = _alexnet.lrn_layer(x, "pool1_lrn")
    conv2_pad = padding if stem == "imagenet" else "same"
    if conv2_pad == "valid":
        need(x, 5, "conv2")
    x = blocks.conv(x, f(256), 5, strides=2 if stem == "imagenet" else 1, padding=conv2_pad, name="conv2", **kw)
    x = pool(x, "pool2")
    if lrn:
        x = _alexnet.lrn_layer(x, "pool2_lrn")
    for i, n in enumerate(conv_filters, 3):
        x = blocks.conv(x, f(n), 3, padding="same", name=f"conv{i}", **kw)
    x = pool(x, "pool5")
    return keras.Model(inp, _alexnet.fc_head(x, num_classes, f(fc_units), dropout, kw), name=name)


register("zfnet", input_shape=(224, 224, 3),
         summary="ZFNet (Zeiler & Fergus 2014): 7×7/2 conv1, conv3-5 512/1024/512 (Table 2 model b)")(zfnet)
register("zfnet_fig3", family="zfnet", input_shape=(224, 224, 3), conv_filters=[384, 384, 256],
         summary="ZFNet as in the paper's Fig. 3 (conv3-5 384/384/256)")(zfnet)
