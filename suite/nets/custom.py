"""The suite's own Keras layers, registered (package "suite") so `.keras` files load in Keras' safe mode. Kept
apart from the builders so importing the registry does not import Keras (suite/lazy.py)."""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="suite")
class LocalResponseNorm(layers.Layer):
    """Across-channel local response normalisation (Krizhevsky et al. 2012, §3.3):
    b = a / (k + α·Σ a²)^β, the sum over `size` neighbouring channels. Keras has no LRN layer, so it is written
    here in keras.ops (every backend); a layer class rather than a Lambda so `.keras` files load in safe mode.
    AlexNet: k=2, α=1e-4. Caffe's models (GoogLeNet) divide α by the size: k=1, α=1e-4/5."""

    def __init__(self, size=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.size, self.k, self.alpha, self.beta = size, k, alpha, beta

    def call(self, t):
        c, half = t.shape[-1], self.size // 2
        sq = keras.ops.pad(keras.ops.square(t), [[0, 0], [0, 0], [0, 0], [half, self.size - 1 - half]])
        s = sum(sq[..., i:i + c] for i in range(self.size))
        return t / keras.ops.power(self.k + self.alpha * s, self.beta)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="suite")
class ZeroPadShortcut(layers.Layer):
    """Option A shortcut: keep every `strides`-th pixel and append zero channels up to `channels`."""

    def __init__(self, channels, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.strides = int(strides)

    def call(self, x):
        s = self.strides
        if s > 1:
            x = x[:, ::s, ::s, :]
        extra = self.channels - x.shape[-1]
        if extra > 0:
            x = keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.strides
        h = None if h is None else -(-h // s)
        w = None if w is None else -(-w // s)
        return (n, h, w, self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "strides": self.strides}


@keras.saving.register_keras_serializable(package="suite")
class SplitGroupConv2D(layers.Conv2D):
    """Conv2D(groups=g) computed as g convolutions on channel slices, concatenated: the same kernel
    (shape k×k×(in/g)×out), the same function, the paper's own equivalence (ResNeXt Fig. 3b/c).
    Why: TensorFlow's CPU gradient of a grouped Conv2D is ~30-60× slower than g plain convolutions
    (measured: 3.1 s vs 0.09 s forward+backward for 8×32×32×128, g = 32, on this suite's CI CPU)."""

    def convolution_op(self, inputs, kernel):
        g = self.groups
        if g == 1:
            return super().convolution_op(inputs, kernel)
        xs = keras.ops.split(inputs, g, axis=-1)
        ks = keras.ops.split(kernel, g, axis=-1)
        return keras.ops.concatenate(
            [keras.ops.conv(x, k, strides=list(self.strides), padding=self.padding,
                            dilation_rate=self.dilation_rate, data_format=self.data_format)
             for x, k in zip(xs, ks)], axis=-1)
