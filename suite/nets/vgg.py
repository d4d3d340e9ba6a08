"""VGG (Simonyan & Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR).

Configurations A/B/D/E of the paper's Table 1 = VGG-11/13/16/19: stacks of 3×3 convs (stride 1, SAME,
i.e. the paper's 1-pixel padding) separated by five 2×2/2 max pools, then FC 4096 → FC 4096 → classes
with dropout 0.5 on the two hidden FCs. No LRN (the paper's A-LRN showed it does not help).
The paper trains the deeper nets from A's weights or, as it notes, from Glorot & Bengio's
initialisation — hence `initializer="glorot_uniform"` by default.
`batch_norm=True` (vgg11_bn … vgg19_bn) puts BatchNorm between each conv and its ReLU, as torchvision's
`vgg*_bn` do (the conv bias is then dropped: BN's β replaces it; torchvision keeps it).

Parameter counts at 224×224×3, 1000 classes (Keras convention: biases included): VGG-11 132,863,336,
VGG-13 133,047,848, VGG-16 138,357,544, VGG-19 143,667,240 (keras.applications.VGG16/19 agree;
torchvision's vgg11/vgg13 list the same numbers).

`padding="valid"` makes every 3×3 conv VALID (each shrinks the map by 2): a 224 input still fits
(VGG-16 reaches pool5 at 3×3), 32×32 does not and raises a ValueError naming the layer.
Pools are 2×2/2 in Caffe's ceil mode (Keras SAME pooling), identical to VALID on 224 and 32, but it lets
28×28 (MNIST) reach 1×1 (28→14→7→4→2→1) and an 8×8 digit too (8→4→2→1→1→1).

Small-image head (`head="cifar"`, chosen by `head="auto"` below 64 px): after five pools a 32×32 image is
1×1×512, and the classifier becomes FC 512 → FC 512 → classes with dropout 0.5 — the head of
chenyaofo/pytorch-cifar-models (`pytorch_cifar_models/vgg.py`, VGG "modified from torchvision"), whose
cifar10_vgg16_bn reaches 94.16 % CIFAR-10 test accuracy (200 epochs, SGD 0.1 Nesterov, wd 5e-4, cosine;
15.25 M parameters in PyTorch's count). `head="imagenet"` keeps the 4096-unit FCs; `fc_units` overrides
the hidden width of either head. `width` scales the conv widths.

`stacks="single"` replaces each stack of n 3×3 convs by one (2n+1)×(2n+1) conv of the stack's width: the same
receptive field in one layer. On VGG-13 (configuration B, stacks of two) that is the paper's §4.1 "shallow net
with five 5×5 conv layers", whose top-1 error was 7 % higher than B's ("a deep net with small filters
outperforms a shallow net with larger filters"). §2.3 gives the reasons: more non-linearities, and fewer weights
between C-channel layers (three 3×3: 27C² against 49C² for one 7×7; a pair: 18C² against 25C² for a 5×5).
Where a stack doubles the channels the single conv is the smaller; over all of VGG-13 it has more weights.
`suite study small_filters` asks the question again.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks

CONFIGS = {  # Table 1 of the paper: the conv widths of each stage; a 2×2 max pool ends every stage
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def vgg(input_shape=(224, 224, 3), num_classes=1000, *, depth=16, padding="same", activation="relu",
        batch_norm=False, dropout=0.5, weight_decay=0.0, initializer="glorot_uniform", head="auto",
        fc_units=0, width=1.0, stacks="3x3", name="vgg"):
    """VGG-11/13/16/19: 3×3 conv stacks, five max pools, two hidden FC layers."""
    if depth not in CONFIGS:
        raise blocks.KnobError(f"VGG depth must be one of {sorted(CONFIGS)}, not {depth}")
    head = blocks.pick_stem(head, input_shape, "cifar", knob="head")
    f = blocks.scaler(width)
    kw = dict(padding=padding, activation=activation, batch_norm=batch_norm, weight_decay=weight_decay,
              initializer=initializer)
    if stacks not in ("3x3", "single"):
        raise blocks.KnobError(f"stacks must be '3x3' (the paper's stacks) or 'single' (one (2n+1)×(2n+1) conv "
                               f"per stack of n), not {stacks!r}")
    x = inp = blocks.inputs(input_shape)
    for stage, widths in enumerate(CONFIGS[depth], 1):
        # "single": one conv with the stack's receptive field (n stacked 3×3 convs see 2n+1 pixels) and its width
        convs = [(v, 3) for v in widths] if stacks == "3x3" else [(widths[-1], 2 * len(widths) + 1)]
        for idx, (v, k) in enumerate(convs, 1):
            h, w = x.shape[1:3]
            if padding == "valid" and min(h, w) < k:
                raise ValueError(f"vgg{depth}: block{stage}_conv{idx} ({k}×{k} VALID) needs a map of at least "
                                 f"{k}×{k}, got {h}×{w} from input {tuple(input_shape)}; use padding='same' or a "
                                 "larger input")
            x = blocks.conv(x, f(v), k, name=f"block{stage}_conv{idx}", **kw)
        x = blocks.pool(x, "max", 2, 2, padding="same", name=f"block{stage}_pool")
    x = layers.Flatten(name="flatten")(x)
    units = fc_units or (4096 if head == "imagenet" else 512)
    for i in (1, 2):
        x = blocks.dense(x, units, activation=activation, dropout=dropout, weight_decay=weight_decay,
                         initializer=initializer, name=f"fc{i}")
    out = blocks.classifier(x, num_classes, weight_decay=weight_decay, initializer=initializer)
    return keras.Model(inp, out, name=name)


for _d in (11, 13, 16, 19):
    register(f"vgg{_d}", family="vgg", depth=_d, summary=f"VGG-{_d} (Simonyan & Zisserman 2015, Table 1)")(vgg)
    register(f"vgg{_d}_bn", family="vgg", depth=_d, batch_norm=True,
             summary=f"VGG-{_d} with BatchNorm after every conv (torchvision vgg{_d}_bn layout)")(vgg)
