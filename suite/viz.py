"""`python -m suite viz RUN_DIR [IMAGE]`: look inside a trained network (Zeiler & Fergus 2014 is about this).

Pictures, as PNG files in RUN_DIR/viz/ (or --out) and as images in the run's TensorBoard (run "viz", Images tab):

- filters.png: the first convolution's kernels as a grid (AlexNet Fig. 3, ZFNet Fig. 5), each min-max scaled.
- feature_maps.png: one row per conv *stage* for one image. A stage is defined the same way for every network:
  walking the layers in graph order from the first convolution on, group the 4-D outputs by spatial
  resolution and keep, for each resolution, the last layer that has it (after its activation) among the layers
  every path through the network passes (not a branch inside a residual block, Inception module or dense
  block; zero-padding layers and 1×1 maps are left out). LeNet-5 on 32×32: c1_relu 28², s2 14², c3_relu 10²,
  s4 5²; ResNet-20: conv2_block3_out 32², conv3_block3_out 16², conv4_block3_out 8².
- gradcam.png: Grad-CAM (Selvaraju et al. 2017) on the last stage (the last 4-D output wider than 1×1 before
  global pooling / flatten), with the pre-softmax score: the input of the final `predictions` softmax.
- coverage.png, only for networks with dilated convolutions: which positions one output unit of the last
  dilated conv depends on (|∂unit/∂x| over a batch of test images; exactly zero = not seen). It is measured on
  the map the dilated stack reads (where gridding leaves holes) and, for comparison, on the image pixels.
"""

import math
import pathlib

import numpy as np

from .errors import UserError

MAX_FILTERS = 64
MAX_CHANNELS = 3  # input channels drawn per filter when they are not shown as RGB
MAX_MAPS = 16  # channels drawn per stage
MAX_STAGES = 12
COVERAGE_IMAGES = 16


# ---------------------------------------------------------------------------------------------------------------
# pure array helpers (tested without a network)


def filter_grid(kernel, max_filters=MAX_FILTERS, max_channels=MAX_CHANNELS, min_tile=24, gap=1.0):
    """A conv kernel (kh, kw, cin, cout) as one image (H, W, 3) in [0, 1] and a sentence saying what it shows.

    Each filter is min-max scaled to [0, 1] on its own (a constant filter shows mid grey). With 3 input channels a
    filter is one RGB tile; otherwise each of its first `max_channels` channels is a grey tile, side by side.
    Tiles are enlarged by an integer factor (nearest neighbour) to at least `min_tile` pixels and separated by
    `gap`-valued lines."""
    k = np.asarray(kernel, np.float32)
    if k.ndim != 4:
        raise ValueError(f"expected a (kh, kw, cin, cout) kernel, got shape {k.shape}")
    kh, kw, cin, cout = k.shape
    n = min(cout, max_filters)
    rgb = cin == 3
    ch = 1 if rgb else min(cin, max_channels)
    k = k[:, :, :3 if rgb else ch, :n]
    lo = k.min(axis=(0, 1, 2), keepdims=True)
    hi = k.max(axis=(0, 1, 2), keepdims=True)
    span = hi - lo
    k = np.where(span > 0, (k - lo) / np.where(span > 0, span, 1), 0.5)
    s = max(1, math.ceil(min_tile / max(kh, kw)))
    th, tw = kh * s, kw * s
    g = 2  # pixels between tiles; between filters' groups of channel tiles 3g
    fw = ch * tw + (ch - 1) * g + (2 * g if ch > 1 else 0)  # one filter's width, its trailing gap included
    cols = math.ceil(math.sqrt(n))  # filters per row
    rows = math.ceil(n / cols)
    grid = np.full((g + rows * (th + g), g + cols * (fw + g), 3), gap, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        y = g + r * (th + g)
        for j in range(ch):
            tile = k[:, :, :, i] if rgb else np.repeat(k[:, :, j:j + 1, i], 3, axis=2)
            x = g + c * (fw + g) + j * (tw + g)
            grid[y:y + th, x:x + tw] = np.repeat(np.repeat(tile, s, axis=0), s, axis=1)
    if ch > 1:  # trim the last group's trailing gap
        grid = grid[:, :grid.shape[1] - 2 * g]
    shown = ("RGB" if rgb else "grey" if cin == 1 else
             f"grey, {'its' if ch == cin else f'the first {ch} of'} {cin} input channels side by side")
    what = f"{f'{n} of {cout}' if n < cout else f'all {n}'} filters {kh}×{kw}×{cin} ({shown}), each min-max scaled"
    return grid, what


def gradcam_map(conv, grads, out_hw, frame=None):
    """Grad-CAM: channel weights = the spatially averaged gradients; map = ReLU(Σ_k α_k A_k), scaled to [0, 1]
    (all zero when nothing is positive) and resized bilinearly to `out_hw`. `frame`: ((top, bottom), (left, right))
    zero padding the network added in front of its first convolution; the map is resized to the padded frame and
    the padding cropped, so it lines up with the image."""
    import tensorflow as tf

    conv, grads = np.asarray(conv, np.float32), np.asarray(grads, np.float32)  # (h, w, c)
    alpha = grads.mean(axis=(0, 1))
    cam = np.maximum((conv * alpha).sum(axis=-1), 0.0)
    top = cam.max()
    cam = cam / top if top > 0 else np.zeros_like(cam)
    (pt, pb), (pl, pr) = frame or ((0, 0), (0, 0))
    h, w = out_hw
    big = tf.image.resize(cam[..., None], (h + pt + pb, w + pl + pr), method="bilinear").numpy()[..., 0]
    return np.clip(big[pt:pt + h, pl:pl + w], 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# the network's structure


def _conv_layers(net):
    import keras

    return [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]


def _inputs(net):
    return net.inputs[0] if len(net.inputs) == 1 else net.inputs  # a list of one makes Keras warn on every call


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return ()


def _cut_points(net):
    """Indices (in net.layers, a topological order) of the layers every path from the input to the output passes
    through: those no connection jumps over. Inside a residual block, an Inception module or a dense block the
    layers are bypassed; the block's output is a cut point."""
    import keras

    where = {}
    for i, layer in enumerate(net.layers):
        try:
            for t in keras.tree.flatten(layer.output):
                where[id(t)] = i
        except (AttributeError, ValueError):
            pass
    jumped = np.zeros(len(net.layers) + 1, np.int64)
    for w, layer in enumerate(net.layers):
        try:
            inputs = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):
            continue
        for t in inputs:
            u = where.get(id(t))
            if u is not None and u + 1 < w:  # the edge u → w jumps over u+1 … w−1
                jumped[u + 1] += 1
                jumped[w] -= 1
    return {i for i, j in enumerate(np.cumsum(jumped)[:len(net.layers)]) if j == 0}


def stages(net):
    """The layers that end the network's conv stages, in graph order (see the module docstring)."""
    import keras

    convs = _conv_layers(net)
    if not convs:
        return []
    start = net.layers.index(convs[0])
    cuts = _cut_points(net)
    last = {}
    for i, layer in enumerate(net.layers[start:], start):
        shape = _output_shape(layer)
        if len(shape) != 4 or isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.InputLayer)):
            continue
        if i not in cuts:  # inside a block: a branch, not the stage's output
            continue
        if shape[1] is None or shape[1] * shape[2] <= 1:
            continue
        last[(shape[1], shape[2])] = i
    return [net.layers[i] for i in sorted(last.values())]


def input_padding(net):
    """((top, bottom), (left, right)): the zero padding added to the image before the first convolution."""
    import keras

    t = b = left = r = 0
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            break
        if isinstance(layer, keras.layers.ZeroPadding2D):
            (pt, pb), (pl, pr) = layer.padding
            t, b, left, r = t + pt, b + pb, left + pl, r + pr
    return (t, b), (left, r)


def logits_of(net):
    """(tensor, pre_softmax): the input of the final softmax `predictions` layer, else the output itself."""
    import keras

    try:
        pred = net.get_layer("predictions")
    except ValueError:
        pred = None
    if isinstance(pred, keras.layers.Activation) and getattr(pred.activation, "__name__", "") == "softmax":
        return pred.input, True
    return net.outputs[0], False


def dilated_stack(net):
    """(convs, last) for a network with dilated convs: the stride-1 convs at one resolution ending with the last
    conv whose dilation rate is > 1 (the dilated stack), else None."""
    convs = _conv_layers(net)
    dil = [i for i, c in enumerate(convs) if max(c.dilation_rate) > 1]
    if not dil:
        return None
    i = dil[-1]
    hw = _output_shape(convs[i])[1:3]
    j = i
    while j > 0:
        c = convs[j - 1]
        if max(c.strides) != 1 or _output_shape(c)[1:3] != hw or tuple(c.input.shape[1:3]) != hw:
            break
        j -= 1
    return convs[j:i + 1], convs[i]


def coverage_maps(net, x):
    """Receptive-field coverage of the centre unit of the last dilated conv's output (summed over channels).

    x: normalised images (B, H, W, C). Returns a dict: `stack` (|∂unit/∂m| summed over the batch and channels, m
    the map the dilated stack reads), `image` (the same for the input pixels), `square` ((y0, y1, x0, x1) of the
    stack's theoretical receptive field on m, clipped to the map), `fraction` (share of the square's positions
    with a non-zero gradient), `rf` (the square's side before clipping), `centre`, and the layer names."""
    import keras
    import tensorflow as tf

    found = dilated_stack(net)
    if found is None:
        return None
    convs, last = found
    m_tensor = convs[0].input
    probe = keras.Model(_inputs(net), [m_tensor, last.output])
    _, h, w, _ = last.output.shape
    cy, cx = h // 2, w // 2
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        m, out = probe(x, training=False)
        unit = tf.reduce_sum(tf.cast(out[:, cy, cx, :], tf.float32))
    gm, gx = tape.gradient(unit, [m, x])
    del tape
    stack = tf.reduce_sum(tf.abs(tf.cast(gm, tf.float32)), axis=(0, 3)).numpy()
    image = tf.reduce_sum(tf.abs(tf.cast(gx, tf.float32)), axis=(0, 3)).numpy()
    # stride-1 convs: the receptive field grows by (k − 1)·rate per conv (along H; the suite's kernels are square)
    rf = 1 + sum((c.kernel_size[0] - 1) * c.dilation_rate[0] for c in convs)
    half = (rf - 1) // 2
    mh, mw = stack.shape
    y0, y1 = max(0, cy - half), min(mh, cy + half + 1)
    x0, x1 = max(0, cx - half), min(mw, cx + half + 1)
    covered = stack[y0:y1, x0:x1] > 0
    reads = next((layer.name for layer in net.layers if _output_shape(layer) and layer.output is m_tensor),
                 f"{convs[0].name}'s input")
    return dict(stack=stack, image=image, square=(y0, y1, x0, x1), fraction=float(covered.mean()), rf=rf,
                centre=(cy, cx), layer=last.name, reads=reads,
                rates=[int(c.dilation_rate[0]) for c in convs])


def feature_maps(net, x):
    """[(stage layer name, activations (h, w, c) float32)] for the first image of normalised batch `x`."""
    import keras

    st = stages(net)[:MAX_STAGES]
    if not st:
        return []
    acts = keras.Model(_inputs(net), [s.output for s in st])(x[:1], training=False)
    acts = [acts] if len(st) == 1 else acts
    return [(s.name, keras.ops.convert_to_numpy(a)[0].astype(np.float32)) for s, a in zip(st, acts)]


def gradcam(net, x):
    """Grad-CAM of the predicted class for the first image of normalised batch `x`, on the last stage: a dict with
    `map` (image-sized, in [0, 1]), `class`, `prob`, `layer`, `size` (the stage's h, w) and `pre_softmax` (the
    score differentiated is the logit, not the probability), or None for a network without stages."""
    import keras
    import tensorflow as tf

    st = stages(net)
    if not st:
        return None
    last = st[-1]
    logits, pre = logits_of(net)
    probe = keras.Model(_inputs(net), [last.output, logits, net.outputs[0]])
    with tf.GradientTape() as tape:
        a, z, p = probe(x[:1], training=False)
        k = int(tf.argmax(p[0]))
        score = tf.cast(z[0, k], tf.float32)
    g = tape.gradient(score, a)
    cam = gradcam_map(a[0].numpy(), g[0].numpy(), tuple(x.shape[1:3]), input_padding(net))
    return dict(map=cam, **{"class": k}, prob=float(p[0, k]), layer=last.name, size=tuple(a.shape[1:3]),
                pre_softmax=pre)


def test_images(t, n=COVERAGE_IMAGES):
    """The first `n` test images of run `t`'s data set, normalised as the network takes them."""
    return _first(t.batches(t.data().x_test[:n], batch_size=n))


def _first(ds):
    return next(iter(ds))[0].numpy()


def _as_float(raw):
    raw = np.asarray(raw)
    return raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else np.clip(raw.astype(np.float32), 0, 1)


# ---------------------------------------------------------------------------------------------------------------
# drawing


def _figure(w_in, h_in):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in), dpi=100)


def _show_image(ax, img):
    img = np.asarray(img)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_filters(grid, title):
    h, w = grid.shape[:2]
    zoom = max(1, -(-400 // max(h, w)))  # an integer zoom keeps every kernel pixel the same size
    if max(h, w) * zoom > 1200:
        zoom = 1200 / max(h, w)
    iw, ih = w * zoom / 100, h * zoom / 100
    fw, fh = max(iw, 5.0) + 0.3, ih + 0.75
    fig = _figure(fw, fh)
    fig.add_axes([(fw - iw) / 2 / fw, 0.1 / fh, iw / fw, ih / fh]).imshow(grid, interpolation="nearest")
    fig.axes[0].set_axis_off()
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / fh, va="top")
    return fig


def draw_feature_maps(image, maps, caption):
    """image: (H, W, C) in [0, 1]; maps: [(layer name, activations (h, w, c))]."""
    rows = len(maps) + 1
    cols = min(MAX_MAPS, max((a.shape[-1] for _, a in maps), default=1))
    fig = _figure(1.0 * cols + 1.6, 1.15 * rows + 0.6)
    gs = fig.add_gridspec(rows, cols + 1, left=0.01, right=0.99, top=1 - 0.5 / (1.15 * rows + 0.6), bottom=0.01,
                          wspace=0.08, hspace=0.35)
    ax = fig.add_subplot(gs[0, 0])
    _show_image(ax, image)
    ax.set_title("input", fontsize=7)
    for r, (name, a) in enumerate(maps, 1):
        strength = np.abs(a).mean(axis=(0, 1))
        order = np.argsort(-strength, kind="stable")[:MAX_MAPS]
        label = fig.add_subplot(gs[r, 0])
        label.set_axis_off()
        label.text(0.98, 0.5, f"{name}\n{a.shape[0]}×{a.shape[1]}×{a.shape[2]}", ha="right", va="center",
                   fontsize=7, transform=label.transAxes)
        for c, k in enumerate(order):
            ax = fig.add_subplot(gs[r, c + 1])
            m = a[..., k]
            ax.imshow(m, cmap="viridis", vmin=float(m.min()), vmax=float(m.max()) if m.max() > m.min() else
                      float(m.min()) + 1e-6, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {k}", fontsize=6, pad=1)
    fig.suptitle(caption, fontsize=9)
    return fig


def draw_gradcam(image, cam, title):
    fig = _figure(9.0, 3.6)
    axes = [fig.add_axes([0.01 + i * 0.33, 0.04, 0.31, 0.78]) for i in range(3)]
    _show_image(axes[0], image)
    axes[0].set_title("image", fontsize=8)
    im = axes[1].imshow(cam, cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[1].set_title("Grad-CAM (0–1)", fontsize=8)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    grey = image.mean(axis=-1) if image.shape[-1] == 3 else image[..., 0]
    axes[2].imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[2].imshow(cam, cmap="jet", vmin=0, vmax=1, alpha=0.45, interpolation="bilinear")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title("overlay", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def draw_coverage(cov, n_images):
    from matplotlib.patches import Rectangle

    fig = _figure(11.0, 4.0)
    axes = [fig.add_axes([0.01 + i * 0.33, 0.04, 0.30, 0.74]) for i in range(3)]
    y0, y1, x0, x1 = cov["square"]
    cy, cx = cov["centre"]
    stack = cov["stack"]
    axes[0].imshow(np.log1p(stack / (stack.max() or 1) * 1e3), cmap="magma", interpolation="nearest")
    axes[0].set_title(f"|∂unit/∂{cov['reads']}| (log scale):\nthe {stack.shape[0]}×{stack.shape[1]} map the dilated "
                      "stack reads", fontsize=8)
    axes[1].imshow(stack > 0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("covered (white) / not (black)", fontsize=8)
    for ax in axes[:2]:
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="deepskyblue", lw=1.2))
        ax.plot([cx], [cy], "+", color="red", ms=8)
    img = cov["image"]
    axes[2].imshow(np.log1p(img / (img.max() or 1) * 1e3), cmap="magma", interpolation="nearest")
    axes[2].set_title(f"|∂unit/∂image| through the layers before the stack:\n{float((img > 0).mean()):.0%} of "
                      "the image's pixels non-zero", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    rates = ",".join(map(str, cov["rates"]))
    fig.suptitle(f"Receptive-field coverage of the centre unit of {cov['layer']} (Σ channels, {n_images} images), "
                 f"dilated stack rates [{rates}]:\n{cov['fraction']:.1%} of its theoretical {cov['rf']}×{cov['rf']} "
                 f"receptive field (blue square, clipped to the map) is covered"
                 + (" — the holes are the gridding effect" if cov["fraction"] < 1 else ": no holes, no gridding"),
                 fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------------------


class _Out:
    """Writes each figure as a PNG and as a TensorBoard image (run "viz" of the run directory)."""

    def __init__(self, run_dir, out, echo):
        import tensorflow as tf

        self.dir = pathlib.Path(out) if out else run_dir / "viz"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {self.dir} ({e.strerror}); pick another --out") from None
        tb = run_dir / "viz"
        # each `viz` adds a step, so TensorBoard's slider shows the latest pictures first and keeps the earlier
        self.step = len(list(tb.glob("events.out.tfevents.*"))) if tb.is_dir() else 0
        self.writer = tf.summary.create_file_writer(str(tb))
        self.files = {}
        self.echo = echo

    def save(self, key, fig, description):
        import tensorflow as tf

        path = self.dir / f"{key}.png"
        fig.savefig(path, facecolor="white")
        img = tf.io.decode_png(path.read_bytes(), channels=3)
        with self.writer.as_default():
            tf.summary.image(key, img[None], step=self.step, description=description)
        self.writer.flush()
        self.files[key] = path
        self.echo(str(path))

    def close(self):
        self.writer.close()


def viz(run_dir, image=None, out=None, precise_bn=0, echo=print, note=None):
    """Write the pictures for the run in `run_dir` (see the module docstring); returns {name: PNG path}.
    precise_bn: recompute the BatchNorm statistics over that many training images first (trained.note_bn)."""
    from . import trained

    trained.check_precise_bn(precise_bn)
    t = trained.load(run_dir)
    trained.note_bn(t, precise_bn, note)
    net = t.net
    if len(t.shape) != 3 or not _conv_layers(net):
        raise UserError(f"{t.run_dir} holds {net.name}, which has no 2-D convolutions to look inside; "
                        "viz draws convolutional networks")
    if image is not None:
        from .predict import image_files, read_image

        x = read_image(image_files([image])[0], t.shape)[None]  # a folder: its first picture
        label, what = None, pathlib.Path(image).name
    else:
        data = t.data()
        x, label = data.x_test[:1], int(data.y_test[0])
        what = f"test image 0 of {data.name}"
    xn = _first(t.batches(x, batch_size=1))
    raw = _as_float(_first(t.batches(x, batch_size=1, raw=True)))[0]
    o = _Out(t.run_dir, out, echo)
    try:
        # 1. the first convolution's filters
        first = _conv_layers(net)[0]
        grid, shown = filter_grid(first.kernel.numpy())
        o.save("filters", draw_filters(grid, f"{net.name} · {first.name}:\n{shown}"),
               f"The first convolution's filters ({shown}).")

        # 2. feature maps of every stage
        maps = feature_maps(net, xn)
        o.save("feature_maps", draw_feature_maps(raw, maps, (
            f"{net.name} · feature maps of {what}: the last layer at each resolution, the "
            f"{MAX_MAPS} most active channels, each scaled to its own min–max")),
            f"Feature maps of {what}, one row per conv stage.")

        # 3. Grad-CAM on the last stage
        gc = gradcam(net, xn)
        if gc is not None:
            k = gc["class"]
            name = t.class_names[k] if k < len(t.class_names) else str(k)
            truth = "" if label is None else f" (true: {t.class_names[label] if label < len(t.class_names) else label})"
            o.save("gradcam", draw_gradcam(raw, gc["map"], (
                f"{net.name} · Grad-CAM on {gc['layer']} ({gc['size'][0]}×{gc['size'][1]}), "
                f"{'pre-softmax score' if gc['pre_softmax'] else 'probability'} of the predicted class\n"
                f"{what}: predicted '{name}' p = {gc['prob']:.3f}{truth}")),
                f"Grad-CAM of the predicted class '{name}' on {gc['layer']}.")

        # 4. receptive-field coverage of a dilated stack
        if dilated_stack(net) is not None:
            xs = None
            try:
                xs = test_images(t)
            except UserError as e:
                if image is None:
                    raise
                echo(f"note: coverage uses IMAGE only: the run's test set is unavailable ({e})")
                xs = xn
            cov = coverage_maps(net, xs)
            o.save("coverage", draw_coverage(cov, len(xs)),
                   f"Receptive-field coverage of {cov['layer']}: {cov['fraction']:.1%} of its square covered.")
    finally:
        o.close()
    echo(f"see them in TensorBoard (run 'viz', Images tab): python -m suite board --logdir {t.run_dir}")
    return o.files
