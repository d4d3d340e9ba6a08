"""tf.data input pipelines: convert → resize → cache → shuffle → batch → augment → normalise → prefetch.

Augmentation runs on whole batches by default (`data.batched_augment`): on the lent H100 per-image maps fed
ResNet-20 only ~43k img/s of the ~108k it can eat, and batch-then-map about doubled that. The same function
serves both modes (a single image is a batch of one), so the two can be measured against each other
(`python -m suite bench NET --set data.batched_augment=false`).

The training stream is a pure function of (seed, epoch, batch): epoch e's shuffle order and the crops and flips of
its batch b come from stateless seeds derived from those numbers alone (`epoch_keys`), never from a random state
that lives in a process. A run resumed in a new process at (epoch, batch) therefore gets exactly the batches an
uninterrupted one would have had (suite/callbacks.py commits that position). tf.data's own iterator checkpoints
would also do it, but they save the whole shuffle buffer (50,000 images for CIFAR) with every commit.

With `raw=True` (data.augment_on = "device") the pipeline stops after batching: it ships the pixels as stored
(uint8 where it can, see `raw_format`) and the model's first layer (suite/augment.py) does crop, flip and
normalisation on the accelerator.
"""

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def scale_of(x):
    """Factor that maps the array's pixel values to [0, 1]."""
    if x.dtype == np.uint8:
        return 1 / 255
    return 1 / 255 if float(np.max(x[:1000])) > 1.5 else 1.0


def channel_stats(x, channels):
    """Per-channel mean and std of training images in [0, 1], after grey↔RGB conversion."""
    s = scale_of(x)
    total, sq, n = 0.0, 0.0, 0
    for i in range(0, len(x), 4096):  # chunks in float32, sums in float64: CIFAR at once would be 1.2 GB
        c = x[i:i + 4096].reshape(-1, x.shape[-1]).astype(np.float32) * np.float32(s)
        total = total + c.sum(axis=0, dtype=np.float64)
        sq = sq + np.einsum("ij,ij->j", c, c, dtype=np.float64)
        n += c.shape[0]
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean ** 2, 1e-12))
    if x.shape[-1] == 1 and channels == 3:
        mean, std = np.repeat(mean, 3), np.repeat(std, 3)
    elif x.shape[-1] == 3 and channels == 1:  # the luma of the mean; the std of luma is close enough
        w = np.array([0.2989, 0.587, 0.114])
        mean, std = np.array([mean @ w]), np.array([std @ w])
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def pixels(x, shape, data_cfg, batch_size=4096):
    """The images `x` as the network takes them (grey↔RGB, resized to `shape`), in [0, 1], unaugmented: NumPy
    batches through `make`'s own conversion, for statistics that need them (suite/whiten.py)."""
    c = shape[2]
    ds = make(x, np.zeros(len(x), np.int64), shape=shape, batch_size=batch_size, training=False,
              data_cfg={**data_cfg, "cache": False}, seed=0, mean=np.zeros(c, np.float32), std=np.ones(c, np.float32))
    for img, _ in ds.as_numpy_iterator():
        yield img


def colour_pca(x, channels):
    """(eigenvalues [3], eigenvectors [3, 3] as columns), largest first, float32, of the 3×3 covariance of the
    training pixels' RGB values in [0, 1] after grey→RGB conversion: AlexNet's PCA colour noise (§4.1). None when
    the network input does not have 3 channels. Grey data made RGB has one component, (1, 1, 1)/√3: brightness."""
    if channels != 3 or x.shape[-1] not in (1, 3):
        return None
    s = scale_of(x)
    total, outer, n = 0.0, 0.0, 0
    for i in range(0, len(x), 4096):  # chunks in float32, sums in float64, as channel_stats
        c = x[i:i + 4096].reshape(-1, x.shape[-1]).astype(np.float32) * np.float32(s)
        if c.shape[-1] == 1:
            c = np.repeat(c, 3, axis=1)
        total = total + c.sum(axis=0, dtype=np.float64)
        outer = outer + np.einsum("ij,ik->jk", c, c, dtype=np.float64)
        n += c.shape[0]
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    vals, vecs = np.maximum(vals[::-1], 0.0), vecs[:, ::-1]  # largest first; rounding can make a zero negative
    return vals.astype(np.float32), np.ascontiguousarray(vecs).astype(np.float32)


# The [data] settings that augment, at their "off" values (suite bench measures the pipeline with and without)
AUGMENT_OFF = {"crop": 0, "flip": False, "pca_colour": 0.0, "cutout": 0}


def augment(x, seed, crop=0, flip=False, pca=None, sigma=0.0, cutout=0, fill=0.0, crop_fill="constant"):
    """Random crop after padding by `crop` px (zeros, or crop_fill = "reflect": the image mirrored about its edge
    rows, NumPy's and tf.pad's "reflect") and random horizontal flip, on a batch [B, H, W, C]; then,
    with `pca` = colour_pca's (eigenvalues, eigenvectors) and sigma > 0, AlexNet's colour noise: every image gets
    Σ_i α_i·λ_i·p_i added to all its pixels, α_i ~ N(0, sigma) (unclipped, as in the paper); then, with
    cutout > 0, a cutout × cutout square at a uniform place inside each image set to `fill` (the training mean: 0 once
    normalised), as Page 2018 did it (DeVries & Taylor 2017 let the square cross the border)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    b = tf.shape(x)[0]
    if crop:
        h, w = x.shape[1], x.shape[2]
        padded = tf.pad(x, [[0, 0], [crop, crop], [crop, crop], [0, 0]], mode=crop_fill.upper())
        offset = tf.random.stateless_uniform([b, 2], crop_seed, 0, 2 * crop + 1, dtype=tf.int32)
        rows = offset[:, :1] + tf.range(h)[None]  # [B, H]: each image its own window
        cols = offset[:, 1:] + tf.range(w)[None]
        x = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    if flip:
        mask = tf.random.stateless_uniform([b, 1, 1, 1], flip_seed) < 0.5
        x = tf.where(mask, tf.reverse(x, axis=[2]), x)
    if pca is not None and sigma > 0:  # its own stream (fold_in), so crops and flips stay what a seed gave before
        vals, vecs = (tf.convert_to_tensor(a, tf.float32) for a in pca)
        alpha = tf.random.stateless_normal([b, 3], tf.random.experimental.stateless_fold_in(seed, 3),
                                           stddev=sigma)
        shift = tf.matmul(alpha * vals[None], vecs, transpose_b=True)  # [B, 3]: Σ_i α_i λ_i p_i
        x = x + tf.cast(shift, x.dtype)[:, None, None, :]
    if cutout:  # its own stream too, drawn last
        h, w = x.shape[1], x.shape[2]
        row_seed, col_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, 4), 2))
        r0 = tf.random.stateless_uniform([b, 1], row_seed, 0, h - cutout + 1, dtype=tf.int32)
        c0 = tf.random.stateless_uniform([b, 1], col_seed, 0, w - cutout + 1, dtype=tf.int32)
        rows, cols = tf.range(h)[None] - r0, tf.range(w)[None] - c0  # [B, H], [B, W]: position in the square
        inside = ((rows >= 0) & (rows < cutout))[:, :, None, None] & ((cols >= 0) & (cols < cutout))[:, None, :, None]
        x = tf.where(inside, tf.cast(fill, x.dtype), x)
    return x


def raw_format(x, shape):
    """(dtype, scale) of the pixels a raw pipeline ships for images `x` to a network taking `shape`: uint8 as
    stored when no resize or RGB→grey is needed (exact), else float32 already scaled to [0, 1]."""
    h, w, c = shape
    exact = x.dtype == np.uint8 and tuple(x.shape[1:3]) == (h, w) and not (x.shape[-1] == 3 and c == 1)
    return ("uint8", 1 / 255) if exact else ("float32", 1.0)


def epoch_keys(seed, epoch):
    """Two int64 keys for one epoch of the training stream, from Philox(key = seed, counter = epoch): the shuffle
    seed and the key of the augmentation seeds [key, batch] (or [key, example] for per-image augmentation)."""
    return tf.random.stateless_uniform([2], tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)]),
                                       minval=None, maxval=None, dtype=tf.int64)


def make(x, y, *, shape, batch_size, training, data_cfg, seed, mean, std, num_classes=None,
         one_hot=False, n_outputs=1, raw=False, pca=None, epoch=0, skip=0, drop_remainder=False, autotune=True):
    """A tf.data.Dataset of (image, label) batches shaped for a network with input `shape` (H, W, C).
    raw: ship unnormalised, unaugmented pixels in `raw_format` (the model augments and normalises).
    pca: colour_pca's (eigenvalues, eigenvectors) for data.pca_colour's colour noise (training, 3 channels).
    Training: the batches of epoch `epoch` (an int, or a tf.Variable read whenever an iteration starts: Keras
    iterates the dataset afresh every epoch and the runner sets the variable first), from batch `skip` on.
    drop_remainder: training ends each epoch at the last full batch (data parallel on JAX, suite/distribute.py).
    autotune: tf.data's autotuner (data.autotune as hardware.effective decides it); off, the AUTOTUNE maps and
    prefetch keep fixed sizes. The batches are the same either way."""
    h, w, c = shape
    s = scale_of(x)
    raw_uint8 = raw and raw_format(x, shape)[0] == "uint8"
    mean = tf.constant(mean.reshape(1, 1, 1, -1))
    std = tf.constant(std.reshape(1, 1, 1, -1))
    crop = data_cfg["crop"] if training else 0
    flip = data_cfg["flip"] if training else False
    sigma = float(data_cfg.get("pca_colour", 0.0)) if training and c == 3 else 0.0
    cutout = int(data_cfg.get("cutout", 0)) if training else 0
    crop_fill = data_cfg.get("crop_fill", "constant")
    pca = None if pca is None or sigma <= 0 else tuple(tf.constant(a, tf.float32) for a in pca)

    def convert(img, label):
        if raw_uint8:  # as stored; grey→RGB is a copy of the channel
            return (tf.image.grayscale_to_rgb(img) if img.shape[-1] == 1 and c == 3 else img), label
        img = tf.cast(img, tf.float32) * s
        if img.shape[-1] == 1 and c == 3:
            img = tf.image.grayscale_to_rgb(img)
        elif img.shape[-1] == 3 and c == 1:
            img = tf.image.rgb_to_grayscale(img)
        if img.shape[0] != h or img.shape[1] != w:
            img = tf.image.resize(img, (h, w))
        return img, label

    def finish(img, label):
        if not raw:
            img = (img - mean) / std
        if one_hot:
            label = tf.one_hot(label, num_classes)
        if n_outputs > 1:  # auxiliary heads (GoogLeNet) learn the same labels
            label = tuple([label] * n_outputs)
        return img, label

    # int32 class ids (checked against num_classes in data.py): JAX without x64 truncates int64 ones, warning
    y = np.asarray(y).astype(np.int32)
    base = tf.data.Dataset.from_tensor_slices((x, y)).map(convert, num_parallel_calls=AUTOTUNE)
    if data_cfg["cache"]:
        base = base.cache()  # shared by every epoch's stream below
    n = len(x)
    steps = n // batch_size if training and drop_remainder else -(-n // batch_size)
    augmenting = training and (crop or flip or pca is not None or cutout) and not raw

    def one_epoch(_):
        e = epoch.read_value() if isinstance(epoch, tf.Variable) else epoch
        shuffle_seed, aug_key = tf.unstack(epoch_keys(seed, e))
        ds = base
        if data_cfg["shuffle"]:
            # Dataset.shuffle takes a tensor seed, but TF 2.21's random_seed.get_seed tests `(global, op) == (0, 0)`
            # in Python, which fails on a tensor when the global seed is 0 (train.seed = 0). The order is to depend
            # on shuffle_seed alone anyway: this function's graph gets no global seed (then TF uses a constant).
            tf.compat.v1.get_default_graph().seed = None
            ds = ds.shuffle(min(n, 50_000), seed=shuffle_seed, reshuffle_each_iteration=False)
        if skip:
            ds = ds.skip(skip * batch_size)
        if augmenting and not data_cfg["batched_augment"]:
            seeds = tf.data.Dataset.range(skip * batch_size, n).map(lambda i: tf.stack([aug_key, i]))
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda xy, sd: (augment(xy[0][None], sd, crop, flip, pca, sigma, cutout, mean, crop_fill)[0],
                                xy[1]),
                num_parallel_calls=AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if augmenting and data_cfg["batched_augment"]:
            seeds = tf.data.Dataset.range(skip, steps).map(lambda b: tf.stack([aug_key, b]))
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda xy, sd: (augment(xy[0], sd, crop, flip, pca, sigma, cutout, mean, crop_fill), xy[1]),
                num_parallel_calls=AUTOTUNE)
        return ds

    if training:
        ds = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(steps - skip, 0)))
    else:
        ds = base.batch(batch_size)
    if not raw or one_hot or n_outputs > 1:  # a raw batch otherwise needs nothing more
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)
