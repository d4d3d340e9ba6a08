"""GoogLeNet / Inception v1 (Szegedy et al., 2015, "Going deeper with convolutions", CVPR).

ImageNet layout (paper Table 1, 224×224): conv1 64@7×7/2 → maxpool 3×3/2 → (LRN) → conv2 64@1×1 →
conv2 192@3×3 → (LRN) → maxpool 3×3/2 → inception 3a, 3b → maxpool → 4a…4e → maxpool → 5a, 5b →
global average pool (7×7) → dropout 0.4 → linear → softmax. Each inception module concatenates
1×1 | 1×1→3×3 | 1×1→5×5 | 3×3 max pool→1×1 ("pool proj") branches, with the table's filter counts
(INCEPTION below). Every conv, reductions included, is followed by ReLU. Layer names follow the
authors' Caffe model (bvlc_googlenet): inception_4a_3x3_reduce, …

Auxiliary classifiers (§5), on the outputs of 4a and 4d: 5×5/3 average pool → 1×1 conv 128 + ReLU →
FC 1024 + ReLU → dropout 0.7 → linear → softmax. They exist only for training, where their losses are
added with weight AUX_LOSS_WEIGHT = 0.3; at inference they are discarded. Convention of this suite:
with `aux_logits=True` (default) the built model is the *training* model, with three outputs
[main, aux1, aux2] named "predictions", "aux1_predictions", "aux2_predictions";
`inference_model(model)` is `keras.Model(model.input, model.outputs[0])`, sharing the weights.
With `aux_logits=False` the model has the main output only (the same layers as the inference model).

Not in the paper, optional: `batch_norm` (off by default: GoogLeNet predates BN; on, every conv is
conv → BN → ReLU as in torchvision's googlenet and Inception-v2), `lrn` (off by default, as in
torchvision and most re-implementations; on, Caffe's LRN: size 5, α = 1e-4, β = 0.75, k = 1).
Note torchvision's googlenet uses 3×3 kernels in the "5×5" branch (a known bug kept for its weights);
here the branch is 5×5 as in the paper.

Small-image adaptation (`stem`): "small" replaces everything before inception 3a (7×7/2 conv, pools,
conv2) by a single 3×3/1 conv of 192 filters, the CIFAR port in kuangliu/pytorch-cifar
(models/googlenet.py). A 32×32 input then runs 3a-3b at 32×32, 4a-4e at 16×16 and 5a-5b at 8×8; MNIST
28×28 at 28/14/7. `stem="auto"` picks "small" for inputs under 64 px. The auxiliary heads keep the
paper's 5×5/3 average pool whenever the map at 4a/4d is at least 5×5 (16×16 → 4×4 on CIFAR, 14×14 → 4×4
on MNIST, exactly the paper's 4×4 on ImageNet); on smaller maps (e.g. 64-px inputs with the ImageNet
stem, or 8×8 digits) the pool becomes a global average pool, so the head still sees a 1×1×C map.
`width` multiplies every filter count (1.0 = the paper; 0.25 trains quickly on a CPU).

`reduce=False` builds every module as the paper's "naive" Inception (Fig. 2(a)): the 3×3 and 5×5 convs read the
module's input directly and the max-pool branch passes it through, with no 1×1 reductions or projection. §4's
reason for the reductions shows: the pool branch carries each module's input channels into its output, so the
maps thicken from module to module and the parameters and multiply-adds grow with them.

No `padding` knob: branches must keep their size to be concatenated.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks

AUX_LOSS_WEIGHT = 0.3  # §5: the auxiliary losses are added to the total loss with weight 0.3

# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _lrn(x, name):
    # Caffe's across-channel LRN (local_size 5, alpha 1e-4, beta 0.75, k 1; Caffe divides alpha by the size).
    from .custom import LocalResponseNorm

    return LocalResponseNorm(5, k=1.0, alpha=1e-4 / 5, beta=0.75, name=name)(x)


def inception_block(x, filters, *, name, reduce=True, **kw):
    """The four-branch inception module; `filters` = (1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool proj).
    reduce=False: the naive module of Fig. 2(a), without the 1×1 reductions and the pool projection."""
    f1, r3, f3, r5, f5, fp = filters
    b1 = blocks.conv(x, f1, 1, name=f"{name}_1x1", **kw)
    b2 = blocks.conv(x, r3, 1, name=f"{name}_3x3_reduce", **kw) if reduce else x
    b2 = blocks.conv(b2, f3, 3, name=f"{name}_3x3", **kw)
    b3 = blocks.conv(x, r5, 1, name=f"{name}_5x5_reduce", **kw) if reduce else x
    b3 = blocks.conv(b3, f5, 5, name=f"{name}_5x5", **kw)
    b4 = blocks.pool(x, "max", 3, 1, padding="same", name=f"{name}_pool")
    if reduce:
        b4 = blocks.conv(b4, fp, 1, name=f"{name}_pool_proj", **kw)
    return layers.Concatenate(name=f"{name}_output")([b1, b2, b3, b4])


def aux_head(x, num_classes, *, filters=128, units=1024, dropout=0.7, name, **kw):
    """Auxiliary classifier: 5×5/3 avg pool (global on maps under 5×5) → 1×1 conv → FC → dropout → softmax."""
    h, w = x.shape[1], x.shape[2]
    if h >= 5 and w >= 5:
        x = blocks.pool(x, "avg", 5, 3, name=f"{name}_ave_pool")
    else:
        x = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_ave_pool")(x)
    x = blocks.conv(x, filters, 1, name=f"{name}_conv", **kw)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = blocks.dense(x, units, dropout=dropout, activation=kw["activation"], batch_norm=False,
                     weight_decay=kw["weight_decay"], initializer=kw["initializer"], name=f"{name}_fc")
    return blocks.classifier(x, num_classes, weight_decay=kw["weight_decay"], name=f"{name}_predictions")


def googlenet(input_shape=(224, 224, 3), num_classes=1000, *, aux_logits=True, stem="auto", activation="relu",
              batch_norm=False, lrn=False, dropout=0.4, aux_dropout=0.7, weight_decay=0.0,
              initializer="glorot_uniform", width=1.0, reduce=True, name="googlenet"):
    """GoogLeNet (Inception v1): nine inception modules; two auxiliary classifiers while training."""
    stem = blocks.pick_stem(stem, input_shape, "small")
    f = blocks.scaler(width)
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    x = inp = blocks.inputs(input_shape)
    if stem == "imagenet":
        x = blocks.conv(x, f(64), 7, strides=2, name="conv1_7x7_s2", **kw)
        x = blocks.pool(x, "max", 3, 2, padding="same", name="pool1_3x3_s2")
        if lrn:
            x = _lrn(x, "pool1_norm1")
        x = blocks.conv(x, f(64), 1, name="conv2_3x3_reduce", **kw)
        x = blocks.conv(x, f(192), 3, name="conv2_3x3", **kw)
        if lrn:
            x = _lrn(x, "conv2_norm2")
        x = blocks.pool(x, "max", 3, 2, padding="same", name="pool2_3x3_s2")
    else:
        x = blocks.conv(x, f(192), 3, name="pre_3x3", **kw)
    aux = []
    for stage in ("3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b"):
        if stage.startswith("pool"):
            x = blocks.pool(x, "max", 3, 2, padding="same", name=f"{stage}_3x3_s2")
            continue
        x = inception_block(x, [f(n) for n in INCEPTION[stage]], name=f"inception_{stage}", reduce=reduce, **kw)
        if aux_logits and stage in ("4a", "4d"):
            aux.append(aux_head(x, num_classes, filters=f(128), units=f(1024), dropout=aux_dropout,
                                name=f"aux{len(aux) + 1}", **kw))
    x = layers.GlobalAveragePooling2D(name="pool5_7x7_s1")(x)
    if dropout:
        x = layers.Dropout(dropout, name="pool5_drop")(x)
    out = blocks.classifier(x, num_classes, weight_decay=weight_decay)
    return keras.Model(inp, [out] + aux if aux_logits else out, name=name)


def inference_model(model):
    """The inference network of a (training) GoogLeNet: the main output only, the same weight objects."""
    return keras.Model(model.input, model.outputs[0], name=model.name)


register("googlenet", family="googlenet", summary="GoogLeNet / Inception v1 with auxiliary classifiers "
         "(Szegedy et al. 2015, Table 1)")(googlenet)
