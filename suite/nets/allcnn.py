"""All-CNN-C and its model-C siblings (Springenberg, Dosovitskiy, Brox & Riedmiller, 2015, "Striving for
Simplicity: The All Convolutional Net", ICLR workshop; arXiv 1412.6806).

The notes' question "pooling or strided convolution?" is the paper's own experiment, one setting here
(`downsample`), Table 2 of the paper for base model C (32×32 CIFAR input):
  "pool"     Model C          conv 96, conv 96,            maxpool 3×3/2, … (two such stages)
  "stride"   All-CNN-C        conv 96, conv 96, conv 96/2  (the pool becomes a 3×3 stride-2 conv)
  "strided"  Strided-CNN-C    conv 96, conv 96/2           (pool removed, previous conv strided)
  "convpool" ConvPool-CNN-C   conv 96, conv 96, conv 96,   maxpool 3×3/2 (same depth as All-CNN-C)
`pooling="avg"` makes the pool of "pool"/"convpool" a 3×3/2 average pool (not in the paper; max vs average vs
strided conv in one family, for experiments/studies/pooling.toml).
Then the same top for all: conv 192@3×3 (VALID: 8→6), conv 192@1×1, conv classes@1×1, each with ReLU,
global average pooling over 6×6 and softmax. Every other 3×3 conv is SAME; stride-2 convs and pools
take 32→16→8. Dropout: 20 % on the input, 50 % after each pooling layer or the layer replacing it.
Reported CIFAR-10 test error (Table 3): All-CNN-C 9.08 % without augmentation, 7.25 % (92.75 %
accuracy) with translation + flip augmentation; trained with SGD momentum 0.9, weight decay 0.001,
lr ∈ {0.25, 0.1, 0.05, 0.01} multiplied by 0.1 after epochs 200, 250, 300, 350 epochs in all.

`class_relu=False` leaves the class maps linear (the paper has a ReLU on them: experiments/allcnn_c.toml says why
its recipe drops it). `padding` sets the top 3×3 conv's padding ("valid" as in the paper). For inputs smaller than
12×12 (an 8×8 digit: 8→4→2) a VALID top conv does not fit and the builder raises; padding="same" works.
At 28×28 the map is 28→14→7→5; at 224×224 the same net simply runs on 112/56/54 maps (the paper's
ImageNet model is a different, larger network, not reproduced here).
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks

DOWNSAMPLE = ("stride", "pool", "strided", "convpool")


def allcnn(input_shape=(32, 32, 3), num_classes=10, *, downsample="stride", pooling="max", filters=[96, 192],
           padding="valid", activation="relu", batch_norm=False, input_dropout=0.2, dropout=0.5, weight_decay=0.0,
           initializer="he_normal", class_relu=True, width=1.0, name="allcnn_c"):
    """Model C family: two 3×3 conv stages with pooling or strided-conv downsampling, 1×1 convs, GAP."""
    if downsample not in DOWNSAMPLE:
        raise blocks.KnobError(f"downsample must be one of {', '.join(DOWNSAMPLE)}, not {downsample!r}")
    if pooling not in ("max", "avg"):
        raise blocks.KnobError(f"pooling must be max or avg (the pool of downsample=pool/convpool), not {pooling!r}")
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    f = blocks.scaler(width)
    x = inp = blocks.inputs(input_shape)
    if input_dropout:
        x = layers.Dropout(input_dropout, name="input_dropout")(x)
    for s, n in enumerate(filters, 1):
        c = f(n)
        x = blocks.conv(x, c, 3, name=f"conv{s}_1", **kw)
        if downsample == "strided":
            x = blocks.conv(x, c, 3, strides=2, name=f"conv{s}_2", **kw)
        else:
            x = blocks.conv(x, c, 3, name=f"conv{s}_2", **kw)
            if downsample == "stride":
                x = blocks.conv(x, c, 3, strides=2, name=f"conv{s}_3", **kw)
            else:
                if downsample == "convpool":
                    x = blocks.conv(x, c, 3, name=f"conv{s}_3", **kw)
                x = blocks.pool(x, pooling, 3, 2, padding="same", name=f"pool{s}")
        if dropout:
            x = layers.Dropout(dropout, name=f"stage{s}_dropout")(x)
    h, w = x.shape[1:3]
    if padding == "valid" and min(h, w) < 3:
        raise ValueError(f"allcnn: top_conv (3×3 VALID) needs a map of at least 3×3, got {h}×{w} from input "
                         f"{tuple(input_shape)}; use padding='same' or an input of at least 12×12")
    x = blocks.conv(x, f(filters[-1]), 3, padding=padding, name="top_conv", **kw)
    x = blocks.conv(x, f(filters[-1]), 1, name="top_cccp", **kw)
    x = blocks.conv(x, num_classes, 1, name="class_conv", activation=activation if class_relu else None,
                    batch_norm=False, weight_decay=weight_decay, initializer=initializer)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inp, out, name=name)


_CIFAR = (32, 32, 3)
register("allcnn_c", family="allcnn", input_shape=_CIFAR, downsample="stride",
         summary="All-CNN-C: strided 3×3 convs instead of max pooling (Springenberg et al. 2015)")(allcnn)
register("model_c", family="allcnn", input_shape=_CIFAR, downsample="pool",
         summary="Base model C of Springenberg et al. 2015: 3×3 convs + 3×3/2 max pooling")(allcnn)
register("strided_cnn_c", family="allcnn", input_shape=_CIFAR, downsample="strided",
         summary="Strided-CNN-C: model C with pooling removed and the preceding conv strided")(allcnn)
register("convpool_cnn_c", family="allcnn", input_shape=_CIFAR, downsample="convpool",
         summary="ConvPool-CNN-C: model C with an extra 3×3 conv before each pool")(allcnn)
