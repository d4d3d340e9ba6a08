"""Augmentation on the accelerator: the compiled model's first layer crops, flips and normalises.

With `data.augment_on = "device"` tf.data still reads, shuffles and batches, but ships the images as they are
stored (uint8 for the image data sets: 4× fewer bytes than float32) and `Augment` does the rest inside the
jit-compiled training step, with backend-neutral `keras.ops` (TensorFlow, JAX, PyTorch alike) — Keras' own
advice for GPUs ("preprocessing layers in the model"). Keras' RandomTranslation/RandomFlip layers were the
first choice, but on JAX they resample through an affine transform and never finished a CIFAR epoch in 300 s on
an H100 (../shared/device/README.md); a crop is a gather, which is what this layer does (hand-written for that
reason).

Random numbers come from a `keras.random.SeedGenerator` seeded with the run's seed: the same seed gives the same
crops and flips. It is the same transformation as the host path (suite/pipeline.augment): padding by `crop` pixels
(zeros, or the image reflected with data.crop_fill = "reflect"), a window at a uniform offset in [0, 2·crop], a
flip with probability ½, with `data.pca_colour` AlexNet's PCA colour noise (drawn after the crops and flips), with
`data.cutout` a square set to the training mean (drawn last), then (x − mean) / std on pixels scaled to [0, 1].
At inference (validation, test, predict) only the scaling and normalisation run, so a saved model takes raw
pixels.
"""

import keras
from keras import ops


def crop_windows(x, offsets, crop, fill="constant"):
    """Windows of `x` [B, H, W, C] padded by `crop` (zeros, or fill = "reflect"): row/column offsets [B, 2] in
    [0, 2·crop]."""
    h, w = x.shape[1], x.shape[2]
    padded = ops.pad(x, [[0, 0], [crop, crop], [crop, crop], [0, 0]], mode=fill)
    rows = offsets[:, 0:1] + ops.arange(h, dtype="int32")[None]  # [B, H]
    cols = offsets[:, 1:2] + ops.arange(w, dtype="int32")[None]  # [B, W]
    x = ops.take_along_axis(padded, rows[:, :, None, None], axis=1)  # [B, H, W + 2·crop, C]
    return ops.take_along_axis(x, cols[:, None, :, None], axis=2)  # [B, H, W, C]


@keras.saving.register_keras_serializable(package="suite")
class Augment(keras.layers.Layer):
    """Raw pixels in (uint8 0..255, or floats already scaled by `scale`), normalised float32 out; random crop,
    flip, (with pca_vals, pca_vecs from pipeline.colour_pca and pca_sigma > 0) AlexNet's PCA colour noise on
    3-channel input and (cutout > 0) a cutout × cutout square inside the image set to the mean, in training only."""

    def __init__(self, mean, std, scale=1 / 255, crop=0, flip=False, seed=None, pca_vals=None, pca_vecs=None,
                 pca_sigma=0.0, cutout=0, crop_fill="constant", **kwargs):
        kwargs.setdefault("dtype", "float32")  # under mixed precision the network's first layer casts
        super().__init__(**kwargs)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.scale, self.crop, self.flip, self.seed = float(scale), int(crop), bool(flip), seed
        self.pca_vals = None if pca_vals is None else [float(v) for v in pca_vals]
        self.pca_vecs = None if pca_vecs is None else [[float(v) for v in row] for row in pca_vecs]
        self.pca_sigma, self.cutout, self.crop_fill = float(pca_sigma), int(cutout), str(crop_fill)
        self.pca_on = self.pca_vals is not None and self.pca_vecs is not None and self.pca_sigma > 0
        on = crop or flip or self.pca_on or self.cutout
        self.seed_generator = keras.random.SeedGenerator(seed) if on else None

    def call(self, x, training=None):
        x = ops.cast(x, "float32") * self.scale
        if training and self.seed_generator is not None:
            b = ops.shape(x)[0]
            if self.crop:
                offsets = keras.random.randint((b, 2), 0, 2 * self.crop + 1, dtype="int32",
                                               seed=self.seed_generator)
                x = crop_windows(x, offsets, self.crop, self.crop_fill)
            if self.flip:
                mask = keras.random.uniform((b, 1, 1, 1), seed=self.seed_generator) < 0.5
                x = ops.where(mask, ops.flip(x, axis=2), x)
            if self.pca_on and x.shape[-1] == 3:  # drawn after crop and flip: their draws stay what a seed gave
                alpha = keras.random.normal((b, 3), stddev=self.pca_sigma, seed=self.seed_generator)
                vals = ops.convert_to_tensor(self.pca_vals, "float32")
                vecs = ops.convert_to_tensor(self.pca_vecs, "float32")
                shift = ops.matmul(alpha * vals[None], ops.transpose(vecs))  # [B, 3]: Σ_i α_i λ_i p_i
                x = x + shift[:, None, None, :]  # in [0, 1] scale, before normalisation, unclipped (the paper)
        mean = ops.reshape(ops.convert_to_tensor(self.mean, "float32"), (1, 1, 1, -1))
        if training and self.cutout:  # drawn last, so the draws above stay what a seed gave without it
            h, w, s = x.shape[1], x.shape[2], self.cutout
            r0 = keras.random.randint((b, 1), 0, h - s + 1, dtype="int32", seed=self.seed_generator)
            c0 = keras.random.randint((b, 1), 0, w - s + 1, dtype="int32", seed=self.seed_generator)
            rows = ops.arange(h, dtype="int32")[None] - r0  # [B, H]: position in the square
            cols = ops.arange(w, dtype="int32")[None] - c0
            inside = ops.logical_and(ops.logical_and(rows >= 0, rows < s)[:, :, None, None],
                                     ops.logical_and(cols >= 0, cols < s)[:, None, :, None])
            x = ops.where(inside, mean, x)  # 0 once normalised
        std = ops.reshape(ops.convert_to_tensor(self.std, "float32"), (1, 1, 1, -1))
        return (x - mean) / std

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "scale": self.scale, "crop": self.crop,
                "flip": self.flip, "seed": self.seed, "pca_vals": self.pca_vals, "pca_vecs": self.pca_vecs,
                "pca_sigma": self.pca_sigma, "cutout": self.cutout, "crop_fill": self.crop_fill}


def wrap(net, shape, input_dtype, *, mean, std, scale, crop, flip, seed, pca=None, pca_sigma=0.0, cutout=0,
         crop_fill="constant"):
    """`net` behind an `Augment` layer: a model that takes raw pixels [B, H, W, C] of `input_dtype`.
    pca: pipeline.colour_pca's (eigenvalues, eigenvectors) for the colour noise of σ = pca_sigma, or None."""
    inp = keras.Input(shape, dtype=input_dtype, name="pixels")
    vals, vecs = pca if pca is not None else (None, None)
    layer = Augment(mean, std, scale=scale, crop=crop, flip=flip, seed=seed, pca_vals=vals, pca_vecs=vecs,
                    pca_sigma=pca_sigma, cutout=cutout, crop_fill=crop_fill, name="augment")
    return keras.Model(inp, net(layer(inp)), name=net.name)
