"""A dilated-convolution classifier for the notes' gridding question (seed 003, 空洞卷积 / HDC).

Dilated (atrous) 3×3 convs grow the receptive field without pooling or extra weights (Yu & Koltun 2016,
"Multi-Scale Context Aggregation by Dilated Convolutions"). Stacking rates with a common factor
(e.g. [2, 4, 6]) only ever samples every second input pixel — the "gridding" effect. Hybrid Dilated
Convolution (HDC; Wang et al. 2018, "Understanding Convolution for Semantic Segmentation", WACV,
arXiv 1702.08502, §3.2) fixes it with rates without a common factor > 1 in a sawtooth cycle such
as [1, 2, 5, 1, 2, 5], chosen so that M_2 ≤ K, where M_n = r_n and
M_i = max(M_{i+1} − 2 r_i, M_{i+1} − 2 (M_{i+1} − r_i), r_i). `hdc_max_distance` computes M_2 and
`coverage` lists the input offsets one output pixel sees, so the effect can be checked without training.

The network is a demonstration, not a published classifier: a stem (small images: conv 3×3 then a
stride-2 3×3 conv, 32→16; ImageNet-size: 7×7/2 conv + 3×3/2 max pool, 224→56), then `repeats` cycles
of 3×3 convs with dilation `rates` at constant resolution (`filters` wide, BN by default), global
average pooling and a Dense softmax. "dilated_gridding" uses rates [2, 4, 6], "dilated_hdc" the
sawtooth [1, 2, 5]; everything else is identical, so the two differ only in the rates.
`padding="valid"` shrinks the map by 2·rate per conv and raises a ValueError once it would vanish.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks


def coverage(rates, kernel_size=3):
    """1-D input offsets (relative to the output pixel) that reach one output of the stacked dilated convs."""
    offsets = {0}
    half = kernel_size // 2
    for r in reversed(rates):  # walk back from the output through each layer
        offsets = {o + r * t for o in offsets for t in range(-half, half + 1)}
    return sorted(offsets)


def has_gridding(rates, kernel_size=3):
    """True if the stack's receptive field has holes (some input offsets inside it are never used)."""
    cov = coverage(rates, kernel_size)
    return len(cov) != cov[-1] - cov[0] + 1


def hdc_max_distance(rates):
    """M_2 of Wang et al. 2018 §3.2: the largest gap between used pixels in the second layer's view.

    HDC asks for M_2 ≤ K (the kernel size); [1, 2, 5] gives 2, [2, 4, 6] gives 4, [1, 2, 9] gives 5.
    """
    m = rates[-1]
    for r in reversed(rates[1:-1]):
        m = max(m - 2 * r, m - 2 * (m - r), r)
    return m


def dilated(input_shape=(32, 32, 3), num_classes=10, *, rates=[2, 4, 6], repeats=2, filters=64, stem_filters=32,
            stem="auto", padding="same", activation="relu", batch_norm=True, dropout=0.0, weight_decay=0.0,
            initializer="he_normal", width=1.0, name="dilated"):
    """Stem, then `repeats` × len(rates) dilated 3×3 convs at one resolution, GAP, softmax."""
    if not rates or any(int(r) < 1 for r in rates):
        raise blocks.KnobError(f"rates must be a non-empty list of positive dilation rates, not {rates}")
    stem = blocks.pick_stem(stem, input_shape, "small")
    kw = dict(activation=activation, batch_norm=batch_norm, weight_decay=weight_decay, initializer=initializer)
    f = blocks.scaler(width)
    x = inp = blocks.inputs(input_shape)
    if stem == "small":
        x = blocks.conv(x, f(stem_filters), 3, name="stem1", **kw)
        x = blocks.conv(x, f(filters), 3, strides=2, name="stem2", **kw)
    else:
        x = blocks.conv(x, f(filters), 7, strides=2, name="stem1", **kw)
        x = blocks.pool(x, "max", 3, 2, padding="same", name="stem_pool")
    i = 1
    for _ in range(repeats):
        for r in rates:
            r = int(r)
            h, w = x.shape[1:3]
            span = 2 * r + 1  # a dilated 3×3 kernel covers (k−1)·r + 1 pixels
            if padding == "valid" and min(h, w) < span:
                raise ValueError(f"dilated: dil{i} (3×3, rate {r}, VALID) spans {span}×{span} but the map is "
                                 f"{h}×{w} (input {tuple(input_shape)}); use padding='same', smaller rates "
                                 f"or a larger input")
            x = blocks.conv(x, f(filters), 3, padding=padding, dilation_rate=r, name=f"dil{i}_r{r}", **kw)
            i += 1
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="gap_dropout")(x)
    out = blocks.classifier(x, num_classes, weight_decay=weight_decay)
    return keras.Model(inp, out, name=name)


register("dilated_gridding", family="dilated", input_shape=(32, 32, 3), rates=[2, 4, 6],
         summary="Dilated 3×3 stack with rates [2,4,6]×2: shows the gridding effect (Wang et al. 2018)")(dilated)
register("dilated_hdc", family="dilated", input_shape=(32, 32, 3), rates=[1, 2, 5],
         summary="Dilated 3×3 stack with HDC sawtooth rates [1,2,5]×2 (Wang et al. 2018)")(dilated)
