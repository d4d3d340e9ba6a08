"""Small building blocks shared by the network families (Keras layers only, so any backend works)."""

from ..lazy import keras, layers


class KnobError(ValueError):
    """A knob's value the builder cannot take (a depth, a choice, a list of the wrong length), whatever the input;
    the message names the knob and what it may be. The CLI says it as it is, while a plain ValueError from a builder
    (a map too small for a layer) gets advice about the input's size (runner.build_error)."""


def regularizer(weight_decay):
    # Papers quote SGD weight decay λ (grad += λ·w); Keras' L2(l) adds l·Σw², whose gradient is 2l·w.
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


# BatchNorm's moving averages keep 0.9 of the old value per step: PyTorch's and Torch's default (momentum=0.1), as in
# the DenseNet and ResNeXt authors' code, fb.resnet.torch's ResNet reproduction and torchvision. Keras' default, 0.99,
# averages over ~100 steps, so on a short run the statistics used at inference trail the weights: vgg13_bn on the
# digits (32×32, 10 epochs, 230 steps) trained to 98 % but tested at 15.6 %; with 0.9 it tested at 98.9 %.
BN_MOMENTUM = 0.9


def bn(x, *, epsilon=1e-3, name):
    """BatchNormalization with the suite's momentum (above); ε stays Keras' 1e-3 unless a network says otherwise."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=epsilon, name=name)(x)


def conv(x, filters, kernel_size, *, strides=1, padding="same", dilation_rate=1, groups=1,
         activation="relu", batch_norm=False, weight_decay=0.0, initializer="he_normal",
         use_bias=None, name):
    """Conv2D → (BatchNorm) → activation, named `{name}_conv`, `{name}_bn`, `{name}_{activation}`."""
    if use_bias is None:
        use_bias = not batch_norm  # BN's beta makes a conv bias redundant
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                      groups=groups, use_bias=use_bias, kernel_initializer=initializer,
                      kernel_regularizer=regularizer(weight_decay), name=f"{name}_conv")(x)
    if batch_norm:
        x = bn(x, name=f"{name}_bn")
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def dense(x, units, *, activation="relu", dropout=0.0, batch_norm=False, weight_decay=0.0,
          initializer="he_normal", name):
    """Dense → (BatchNorm) → activation → (Dropout)."""
    x = layers.Dense(units, use_bias=not batch_norm, kernel_initializer=initializer,
                     kernel_regularizer=regularizer(weight_decay), name=f"{name}_dense")(x)
    if batch_norm:
        x = bn(x, name=f"{name}_bn")
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def pool(x, kind="max", pool_size=2, strides=None, padding="valid", *, name):
    cls = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}[kind]
    return cls(pool_size, strides=strides, padding=padding, name=name)(x)


def classifier(x, num_classes, *, weight_decay=0.0, initializer="glorot_uniform", name="predictions"):
    """Final Dense + softmax. Kept float32 so mixed precision never computes the loss in half precision."""
    x = layers.Dense(num_classes, kernel_initializer=initializer,
                     kernel_regularizer=regularizer(weight_decay), name=f"{name}_dense")(x)
    return layers.Activation("softmax", dtype="float32", name=name)(x)


def inputs(input_shape, name="input"):
    return keras.Input(shape=tuple(input_shape), name=name)


def is_small(input_shape, threshold=64):
    """True for MNIST/CIFAR-sized inputs, where ImageNet stems would shrink the map to nothing."""
    return min(input_shape[0], input_shape[1]) < threshold


def scaler(width):
    """The `width` knob: n channels → round(n·width), at least 1."""
    return lambda n: max(1, int(round(n * width)))


def pick_stem(value, input_shape, small, knob="stem"):
    """Resolve a stem/head option: "auto" picks `small` (e.g. "cifar") for small inputs, else "imagenet"."""
    if value == "auto":
        return small if is_small(input_shape) else "imagenet"
    if value not in (small, "imagenet"):
        raise KnobError(f"{knob} must be auto, {small} or imagenet, not {value!r}")
    return value
