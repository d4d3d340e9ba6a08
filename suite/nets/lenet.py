"""LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

C1 6@5×5 → S2 2×2 subsampling → C3 16@5×5 → S4 → C5 120@5×5 → F6 84 → output.
Classic: tanh-like squashing and average-pool subsampling. Modern: ReLU and max pooling.
Small-input adaptation (the paper's own): MNIST's 28×28 digits were centred in a 32×32 field,
so inputs smaller than 32×32 are zero-padded to 32×32 (`pad_to=32`; 0 turns it off).

`exercise2_cnn` is the notes' "代码练习二" network (seed 000: OUC deep-learning course, week-3 code
exercise 2, CIFAR-10 classification; the net is the PyTorch "Training a classifier" tutorial's `Net`):
conv 6@5×5 → ReLU → maxpool 2 → conv 16@5×5 → ReLU → maxpool 2 → FC 120 → FC 84 → classes,
62,006 parameters on 32×32×3. The notes' answer to "how does it differ from LeNet?" is ReLU + max
pooling instead of squashing + average subsampling; it also has no C5 conv and no 32×32 padding.
Its convs are VALID, so an 8×8 digit is too small (use padding="same" there; the builder says so).
"""

from ..lazy import layers

from ..registry import register
from . import blocks


def lenet(input_shape=(32, 32, 1), num_classes=10, *, padding="valid", activation="tanh", pooling="avg",
          batch_norm=False, dropout=0.0, weight_decay=0.0, initializer="glorot_uniform", pad_to=32,
          name="lenet5"):
    """LeNet-5: two conv/subsampling stages, C5 120, F6 84."""
    kw = dict(padding=padding, activation=activation, batch_norm=batch_norm, weight_decay=weight_decay,
              initializer=initializer)
    x = inp = blocks.inputs(input_shape)
    h, w = input_shape[:2]
    if pad_to and (h < pad_to or w < pad_to):
        ph, pw = max(pad_to - h, 0), max(pad_to - w, 0)
        x = layers.ZeroPadding2D(((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), name="pad_to_32")(x)
    x = blocks.conv(x, 6, 5, name="c1", **kw)
    x = blocks.pool(x, pooling, 2, padding=padding, name="s2")
    x = blocks.conv(x, 16, 5, name="c3", **kw)
    x = blocks.pool(x, pooling, 2, padding=padding, name="s4")
    x = blocks.conv(x, 120, 5, name="c5", **kw)
    x = layers.Flatten(name="flatten")(x)
    x = blocks.dense(x, 84, activation=activation, dropout=dropout, batch_norm=batch_norm,
                     weight_decay=weight_decay, initializer=initializer, name="f6")
    return _model(inp, blocks.classifier(x, num_classes, weight_decay=weight_decay), name)


def exercise2_cnn(input_shape=(32, 32, 3), num_classes=10, *, padding="valid", activation="relu", pooling="max",
                  filters=[6, 16], units=[120, 84], kernel_size=5, batch_norm=False, dropout=0.0,
                  weight_decay=0.0, initializer="glorot_uniform", width=1.0, conv_blocks=0, head="fc",
                  name="exercise2_cnn"):
    """The notes' 代码练习二 CNN: two conv-ReLU-maxpool blocks, then FC 120 → FC 84 → classes.

    conv_blocks: how many conv-ReLU-maxpool blocks (0 = one per entry of `filters`); extra blocks double the
    last block's filters. The depth knob `suite tune` varies for LeNet-like nets.
    head: "fc" (the notes' net: flatten → FC `units` → Dense classes) or "gap" (Network in Network, Lin et al.
    2014 §3.2: a 1×1 conv to one map per class after the last conv stage, global average pooling, softmax; no
    FC layers, so `units` and `dropout` are unused)."""
    if head not in ("fc", "gap"):
        raise blocks.KnobError(f"exercise2_cnn: head must be 'fc' or 'gap', not {head!r}")
    filters = list(filters)
    if conv_blocks:
        while len(filters) < conv_blocks:
            filters.append(filters[-1] * 2)
        filters = filters[:conv_blocks]
    kw = dict(padding=padding, activation=activation, batch_norm=batch_norm, weight_decay=weight_decay,
              initializer=initializer)
    f = blocks.scaler(width)
    x = inp = blocks.inputs(input_shape)
    for i, n in enumerate(filters, 1):
        size = x.shape[1:3]
        if padding == "valid" and min(size) < kernel_size:
            raise ValueError(f"exercise2_cnn: conv{i} ({kernel_size}×{kernel_size}, VALID) needs a map of at least "
                             f"{kernel_size}×{kernel_size}, got {size[0]}×{size[1]} from input {tuple(input_shape)}; "
                             f"use padding='same' or a larger input")
        x = blocks.conv(x, f(n), kernel_size, name=f"conv{i}", **kw)
        x = blocks.pool(x, pooling, 2, padding=padding, name=f"pool{i}")
    if head == "gap":  # as suite/nets/nin.py: class maps → global average pooling → softmax
        x = blocks.conv(x, num_classes, 1, name="class_conv", activation=None, batch_norm=False,
                        weight_decay=weight_decay, initializer=initializer)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        return _model(inp, layers.Activation("softmax", dtype="float32", name="predictions")(x), name)
    x = layers.Flatten(name="flatten")(x)
    for i, n in enumerate(units, 1):
        x = blocks.dense(x, f(n), activation=activation, dropout=dropout, batch_norm=batch_norm,
                         weight_decay=weight_decay, initializer=initializer, name=f"fc{i}")
    return _model(inp, blocks.classifier(x, num_classes, weight_decay=weight_decay), name)


def _model(inp, out, name):
    import keras

    return keras.Model(inp, out, name=name)


register("lenet5", family="lenet", input_shape=(32, 32, 1),
         summary="LeNet-5 classic: tanh, average-pool subsampling (LeCun 1998)")(lenet)
register("lenet5_modern", family="lenet", input_shape=(32, 32, 1), activation="relu", pooling="max",
         summary="LeNet-5 with ReLU and max pooling")(lenet)
register("exercise2_cnn", family="lenet", input_shape=(32, 32, 3),
         summary="The notes' 代码练习二 CNN (PyTorch CIFAR-10 tutorial Net): 2×(conv-ReLU-maxpool) + FC")(exercise2_cnn)
