"""`suite predict`: classify picture files with a trained run, one line per image.

A picture is read with Pillow, converted to the network's channels (grey or RGB) and scaled to its input size
with an area filter (a photo is much larger than the 8×8 or 32×32 images the networks learn from, and a plain
bilinear shrink would alias); from there the run's own pipeline (suite.pipeline.make, evaluation mode) scales
and normalises it exactly as the test images were.
"""

import pathlib

import numpy as np

from .errors import UserError, one_line

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_files(paths):
    """The files named, with every image file inside a named folder (sorted, recursively)."""
    files = []
    for name in paths:
        p = pathlib.Path(name)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in SUFFIXES)
            if not found:
                raise UserError(f"folder {p} holds no images ({', '.join(SUFFIXES)}); give PNG or JPEG files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"image {p} does not exist; check the path")
    return files


def read_image(path, shape, invert=False):
    """`path` as uint8 [H, W, C] for a network taking `shape` (H, W, C)."""
    from PIL import Image, UnidentifiedImageError

    h, w, c = shape
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BOX)
            x = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path} is not an image Pillow can read ({one_line(e, 120)}); give a PNG or JPEG file") from None
    x = x.reshape(h, w, c)
    return 255 - x if invert else x


def predict(run_dir, paths, top=5, invert=False, precise_bn=0, echo=print, note=None):
    """[(path, [(class name, probability)] best first)] for every image; prints one line per image (and, to
    `note`, default stderr, whether the BatchNorm statistics are the training's moving averages or recomputed over
    `precise_bn` training images)."""
    from . import trained

    if top < 1:
        raise UserError(f"--top {top} must be at least 1")
    trained.check_precise_bn(precise_bn)
    files = image_files(paths)  # before loading the model: a typo fails fast
    t = trained.load(run_dir)
    trained.note_bn(t, precise_bn, note)
    x = np.stack([read_image(p, t.shape, invert) for p in files])
    probs = np.concatenate([np.asarray(t.net.predict_on_batch(b)) for b, _ in t.batches(x)])
    k = min(top, probs.shape[-1])
    out = []
    for p, pr in zip(files, probs):
        best = np.argsort(-pr)[:k]
        ranked = [(t.class_names[i], float(pr[i])) for i in best]
        out.append((p, ranked))
        echo(f"{p}: " + ", ".join(f"{name} {q:.3f}" for name, q in ranked))
    return out
