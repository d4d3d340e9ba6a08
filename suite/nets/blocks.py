"""Small building blocks shared by the network families (Keras layers only, so any backend works)."""

from ..lazy import keras, layers


def regularizer(weight_decay):
    # Papers quote SGD weight decay λ (grad += λ·w); Keras' L2(l) adds l·Σw², whose gradient is 2l·w.
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


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
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def dense(x, units, *, activation="relu", dropout=0.0, batch_norm=False, weight_decay=0.0,
          initializer="he_normal", name):
    """Dense → (BatchNorm) → activation → (Dropout)."""
    x = layers.Dense(units, use_bias=not batch_norm, kernel_initializer=initializer,
                     kernel_regularizer=regularizer(weight_decay), name=f"{name}_dense")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
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
        raise ValueError(f"{knob} must be auto, {small} or imagenet, not {value!r}")
    return value
