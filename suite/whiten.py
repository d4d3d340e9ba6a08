"""Global contrast normalisation + ZCA whitening (`data.whiten = "zca"`), as NiN and All-CNN-C trained on CIFAR-10.

Both papers took the preprocessing of Goodfellow et al.'s maxout networks (2013): pylearn2's
`make_cifar10_gcn_whitened.py`. Each image (all H·W·C values as one vector) loses its own mean and is scaled to an
L2 norm of 55 (so ~1 per value for 3,072 values; `gcn_scale` keeps that for other sizes); then ZCA, fitted on the
training images: x ↦ (x − μ) · P with P = V·diag(1/√(λ + 0.1))·Vᵀ from the eigen-decomposition of their
covariance (pylearn2's `ZCA(filter_bias=0.1)`). scikit-learn and Keras ship no ZCA that fits a 3,072² matrix
from 50,000 images in chunks and applies it inside a model, so the fit (`fit`) and the layer (`Whiten`) are
written here.

The transform is a layer in front of the network (`wrap`), not a change to the stored images: the training graph,
the saved model, `suite eval`/`predict`/`viz` and test-time augmentation all take the images they took before and
whiten them the same way, on the host path and with augmentation on the device (Augment → Whiten → network). One
consequence, and a difference from the papers, which whitened the stored images once and translated those: crop
padding and cutout act on pixels before the whitening sees them.
"""

import math

import keras
import numpy as np
from keras import ops

MAX_VALUES = 4096  # H·W·C: a P of 4,096² float32 is 64 MiB in every checkpoint; 224² RGB would be 90 GiB
FILTER_BIAS = 0.1  # pylearn2's ZCA default, used for the gcn_whitened CIFAR-10 the papers trained on
# An image whose values spread less than this (RMS about its mean, pixels in [0, 1]) is flat and stays 0. pylearn2's
# 1e-8 was for float64 on a 0–255 scale; in float32 a flat image's rounding residue (~1e-8 per value) would pass it
# and be blown up to full contrast.
MIN_DIVISOR = 1e-4


def gcn_scale(d):
    """pylearn2 scaled CIFAR-10's 3,072 values to norm 55; the same per value for d values."""
    return 55.0 * math.sqrt(d / 3072)


def gcn(x, scale):
    """Global contrast normalisation of rows x [N, D]: mean 0, L2 norm `scale`; a flat row stays ~0. In keras.ops, so
    the fit (on NumPy chunks) and the layer (in the compiled step) share this one definition."""
    x = x - ops.mean(x, axis=1, keepdims=True)
    norm = ops.sqrt(ops.sum(x * x, axis=1, keepdims=True)) / scale
    return x / ops.where(norm < MIN_DIVISOR, 1.0, norm)


def fit(batches, d):
    """(μ [D], P [D, D]) float32 of ZCA over the GCN'd training images, from `batches` of pixels in [0, 1]
    (arrays [B, H, W, C] whose H·W·C = d). Sums in float64 over float32 chunks, as pipeline.channel_stats."""
    total, outer, n = np.zeros(d), np.zeros((d, d)), 0
    for x in batches:
        g = ops.convert_to_numpy(gcn(np.asarray(x, np.float32).reshape(len(x), d), gcn_scale(d)))
        total += g.sum(axis=0, dtype=np.float64)
        outer += g.T @ g  # float32 matmul: ~1 s per 4,096 CIFAR images on two cores
        n += len(g)
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2 + FILTER_BIAS * np.eye(d))
    p = (vecs * (1.0 / np.sqrt(np.maximum(vals, FILTER_BIAS)))) @ vecs.T
    return mean.astype(np.float32), p.astype(np.float32)


@keras.saving.register_keras_serializable(package="suite")
class Whiten(keras.layers.Layer):
    """Normalised images in ((x − mean) / std per channel, what the pipeline or Augment gives), whitened images
    out: back to pixels in [0, 1], GCN per image, then (· − μ) · P. μ and P are non-trainable weights, so they are
    saved with the model; `wrap` sets them to `fit`'s."""

    def __init__(self, mean, std, **kwargs):
        kwargs.setdefault("dtype", "float32")  # a 3,072-term sum of squares: not in bfloat16
        super().__init__(**kwargs)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]

    def build(self, shape):
        d = math.prod(shape[1:])
        self.centre = self.add_weight(shape=(d,), initializer="zeros", trainable=False, name="centre")
        self.matrix = self.add_weight(shape=(d, d), initializer="identity", trainable=False, name="matrix")

    def call(self, x):
        shape = ops.shape(x)
        d = self.matrix.shape[0]
        mean = ops.reshape(ops.convert_to_tensor(self.mean, "float32"), (1, 1, 1, -1))
        std = ops.reshape(ops.convert_to_tensor(self.std, "float32"), (1, 1, 1, -1))
        p = gcn(ops.reshape(ops.cast(x, "float32") * std + mean, (-1, d)), gcn_scale(d))
        return ops.reshape(ops.matmul(p - self.centre, self.matrix), shape)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def wrap(net, zca, mean, std):
    """`net` with a `Whiten` layer between its input and its first layers, as one flat functional model (so
    `suite viz` still finds the network's convolutions in `model.layers`), its layers copies of net's holding net's
    initial weights: a run starts from the same network with whitening or without. Keras has no public "insert a
    layer" for functional models; clone_model, with the input swapped at its first use (call_function), does it.
    Copies, not the same layers: a shared layer's `.output` would still be its tensor in `net`'s graph."""
    inp = keras.Input(net.input_shape[1:], dtype=net.inputs[0].dtype, name=net.inputs[0].name)
    layer = Whiten(mean, std, name="whiten")
    white = layer(inp)
    layer.centre.assign(zca[0])
    layer.matrix.assign(zca[1])

    def call(op, *args, **kwargs):
        return op(*keras.tree.map_structure(lambda t: white if t is inp else t, args), **kwargs)

    model = keras.models.clone_model(net, input_tensors=inp, call_function=call)
    for old in net.layers:
        if old.weights:
            model.get_layer(old.name).set_weights(old.get_weights())
    return model


def extra_params(model):
    """Values Whiten layers add to model.count_params() (0 without one), in nested models too (behind Augment):
    preprocessing, not part of the network."""
    if isinstance(model, Whiten):
        return sum(int(np.prod(w.shape)) for w in model.weights)
    return sum(extra_params(layer) for layer in getattr(model, "layers", []))
