"""LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

C1 6@5×5 → S2 2×2 subsampling → C3 16@5×5 → S4 → C5 120@5×5 → F6 84 → output.
Classic: tanh-like squashing and average-pool subsampling. Modern: ReLU and max pooling.
Small-input adaptation (the paper's own): MNIST's 28×28 digits were centred in a 32×32 field,
so inputs smaller than 32×32 are zero-padded to 32×32 (`pad_to=32`; 0 turns it off).
"""

from keras import layers

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


def _model(inp, out, name):
    import keras

    return keras.Model(inp, out, name=name)


register("lenet5", family="lenet", input_shape=(32, 32, 1),
         summary="LeNet-5 classic: tanh, average-pool subsampling (LeCun 1998)")(lenet)
register("lenet5_modern", family="lenet", input_shape=(32, 32, 1), activation="relu", pooling="max",
         summary="LeNet-5 with ReLU and max pooling")(lenet)
