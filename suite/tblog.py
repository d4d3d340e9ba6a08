"""TensorBoard extras beyond Keras' TensorBoard callback: HParams for every run and trial, a grid of augmented
training images, the confusion matrix and per-class accuracy."""

import contextlib
import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api


def hparam_value(v):
    """HParams take bool/int/float/str; lists become their text (e.g. '[1, 2, 5]')."""
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def write_hparams(run_dir, hparams, metrics=None, trial_id=None):
    """Record `hparams` ({name: value}) for this run so the HParams dashboard lists it, plus final
    `metrics` ({tag: value}) as scalars under the run so the dashboard has a column for each.
    The metric tags are written at step 0 into `run_dir/hparams` (a run of its own in TensorBoard's eyes
    would split them from the hparams: so they go to the same directory as the hparams summary)."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        hp_api.hparams({k: hparam_value(v) for k, v in hparams.items()}, trial_id=trial_id)
        for tag, value in (metrics or {}).items():
            if value is not None:
                tf.summary.scalar(tag, float(value), step=0)
    writer.flush()
    writer.close()


# ---------------------------------------------------------------------------------------------------------------
# Pictures and settings for every run (suite.callbacks.RunSummaries writes them during `suite run`). They go to the
# run directory itself, the same TensorBoard run as the HParams session: Keras writes train/ and validation/.

SKIP_SETTINGS = {"experiment.description", "experiment.source", "experiment.reference_accuracy",
                 "experiment.reference_data", "train.verbose"}


def run_hparams(cfg):
    """The run's settings as flat HParams {"section.key": value}: everything that can change the result
    (display-only keys and the log section left out)."""
    out = {}
    for section, values in cfg.items():
        if section in ("log", "tune") or not isinstance(values, dict):  # tune: the search space, not a setting
            continue
        for k, v in values.items():
            name = f"{section}.{k}"
            if name not in SKIP_SETTINGS:
                out[name] = v
    return out


@contextlib.contextmanager
def _writing(target):
    """Write into `target`: an open tf.summary writer (kept open: one events file for a run's extras), or a
    directory (a writer of its own, closed afterwards)."""
    if isinstance(target, (str, os.PathLike)):
        writer = tf.summary.create_file_writer(str(target))
        try:
            with writer.as_default():
                yield
        finally:
            writer.close()
    else:
        with target.as_default():
            yield
        target.flush()


def write_scalars(target, values, step=0):
    """Scalars ({tag: value}) into a run directory or writer, e.g. final metrics for the HParams dashboard."""
    with _writing(target):
        for tag, value in values.items():
            if value is not None:
                tf.summary.scalar(tag, float(value), step=step)


def denormalise(x, mean, std):
    """Normalised images [B, H, W, C] back to [0, 1] for viewing."""
    x = np.asarray(x, np.float32) * np.asarray(std, np.float32).reshape(1, 1, 1, -1)
    return np.clip(x + np.asarray(mean, np.float32).reshape(1, 1, 1, -1), 0.0, 1.0)


def image_grid(images, cols=None, pad=2, min_tile=64):
    """Tile images [N, H, W, C] in [0, 1] into one RGB picture [rows·H', cols·W', 3] on a grey background.
    Small images are enlarged (nearest neighbour) to at least `min_tile` pixels so 8×8 digits stay visible."""
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    n, h, w = x.shape[:3]
    k = max(1, -(-min_tile // max(h, w)))
    if k > 1:
        x = x.repeat(k, axis=1).repeat(k, axis=2)
        h, w = h * k, w * k
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 0.5, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = x[i]
    return grid


def log_augmented_batch(target, dataset, mean, std, data_cfg=None, max_images=32, step=0):
    """One batch from the training pipeline (after crop/flip/…), de-normalised and tiled into a grid:
    TensorBoard's Images tab shows what the network is fed. Returns the grid."""
    images = None
    for batch in dataset.take(1):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
    if images is None:
        return None
    images = np.asarray(images)[:max_images]
    grid = image_grid(denormalise(images, mean, std), cols=min(8, len(images)))
    aug = ""
    if data_cfg:
        aug = ", ".join(f"{k}={data_cfg[k]}" for k in ("crop", "crop_fill", "flip", "cutout") if k in data_cfg)
    desc = (f"{len(images)} images of one training batch as the network gets them (augmentation: {aug or 'none'}), "
            "de-normalised with the run's channel mean/std.")
    with _writing(target):
        tf.summary.image("augmented_training_images", grid[None], step=step, description=desc)
    return grid


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts [true class, predicted class]."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64).ravel(), np.asarray(y_pred, np.int64).ravel()), 1)
    return cm


def per_class_accuracy(cm):
    """Recall of each class (correct / examples of that class); NaN for a class with no examples."""
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def confusion_figure(cm, class_names=None, title="confusion matrix"):
    """A matplotlib Figure of the row-normalised confusion matrix, counts written in the cells for up to 20
    classes, each true-class label followed by that class's accuracy."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = cm.shape[0]
    names = [str(c) for c in (class_names or range(n))]
    acc = per_class_accuracy(cm)
    rows = cm.sum(axis=1, keepdims=True)
    frac = cm / np.maximum(rows, 1)
    size = min(4 + 0.45 * n, 16)
    fig = Figure(figsize=(size + 1.5, size), dpi=100)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 40:
        ax.set_xticks(range(n), [s[:12] for s in names], rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), [f"{s[:12]} ({a:.0%})" if np.isfinite(a) else s[:12] for s, a in zip(names, acc)])
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=11 if n <= 10 else 8,
                            color="white" if frac[i, j] > 0.5 else "black")
    total = cm.sum()
    ax.set_title(f"{title}: accuracy {np.trace(cm) / max(total, 1):.2%} on {total} images")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (its accuracy)")
    fig.tight_layout()
    return fig


def figure_to_png(fig):
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def per_class_markdown(cm, class_names=None):
    names = [str(c) for c in (class_names or range(cm.shape[0]))]
    acc, totals = per_class_accuracy(cm), cm.sum(axis=1)
    lines = ["| class | accuracy | correct | examples |", "|---|---:|---:|---:|"]
    for i, name in enumerate(names):
        a = f"{acc[i]:.2%}" if np.isfinite(acc[i]) else "–"
        lines.append(f"| {name} | {a} | {cm[i, i]} | {totals[i]} |")
    return "\n".join(lines)


def log_confusion(target, y_true, y_pred, class_names=None, num_classes=None, step=0, split="test"):
    """At the end of training: the confusion-matrix image, per-class accuracy (a Markdown table in the Text tab
    and the worst classes' numbers in its description) and `{split}_accuracy` as a scalar. Returns the matrix."""
    num_classes = num_classes or (len(class_names) if class_names else int(max(np.max(y_true), np.max(y_pred))) + 1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    png = figure_to_png(confusion_figure(cm, class_names, title=f"{split} confusion matrix"))
    acc = per_class_accuracy(cm)
    names = [str(c) for c in (class_names or range(num_classes))]
    worst = [i for i in np.argsort(np.nan_to_num(acc, nan=2.0))[:3] if np.isfinite(acc[i])]
    desc = f"Rows: true class, columns: predicted class ({split} set). Lowest accuracy: " + ", ".join(
        f"{names[i]} {acc[i]:.1%}" for i in worst)
    with _writing(target):
        tf.summary.image(f"{split}_confusion_matrix", tf.image.decode_png(png, channels=3)[None], step=step,
                         description=desc)
        tf.summary.text(f"{split}_per_class_accuracy", per_class_markdown(cm, class_names), step=step)
        tf.summary.scalar(f"{split}_accuracy", float(np.trace(cm) / max(cm.sum(), 1)), step=step)
    return cm


def log_op_graph(logdir, model):
    """The model's inference graph (TensorFlow ops) for the Graphs tab, which opens on "Op graph" and shows
    an error for runs with only Keras' conceptual graph. TensorFlow backend only: returns False elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    specs = [tf.TensorSpec([None, *x.shape[1:]], x.dtype) for x in model.inputs]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    graph = fn.get_concrete_function(*specs).graph
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.graph(graph)
    writer.close()
    return True
