"""`suite eval`: a trained run on a test set, with the papers' test-time augmentation (TTA); the runner's final
test figure uses the same code when an experiment sets `[eval] tta`.

TTA averages the softmax over views of each test image (Krizhevsky et al. 2012 §4.1: "extracting five 224×224
patches (the four corner patches and the center patch) as well as their horizontal reflections (hence ten
patches in all), and averaging the predictions"). Here the views have the network's own input size, as the
training crops do (suite/pipeline.augment): the centre view is the image, the corner views are windows of a
copy zero-padded by `shift` pixels — the training crop's extreme offsets.
"""

import time

import numpy as np

from .config import CHOICES
from .errors import UserError

TTAS = CHOICES["eval.tta"]
EVAL_FILE = "eval.json"


def views(x, tta, shift):
    """The views of a batch of raw pixels [B, H, W, C]; the first is always the image itself."""
    if tta == "none":
        return [x]
    if tta == "flip":
        return [x, x[:, :, ::-1]]
    h, w, s = x.shape[1], x.shape[2], shift
    pad = np.pad(x, [(0, 0), (s, s), (s, s), (0, 0)])
    crops = [x] + [pad[:, r:r + h, c:c + w] for r, c in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))]
    return crops + [v[:, :, ::-1] for v in crops]


def shift_for(cfg, shape):
    """Pixels the 10-crop corner views move: eval.shift, else the training crop's padding (data.crop), else an
    eighth of the image (AlexNet: 224 of 256, 16 px each way)."""
    return cfg["eval"]["shift"] or cfg["data"]["crop"] or max(1, round(min(shape[:2]) / 8))


def probabilities(model, batches, tta, shift):
    """(softmax averaged over the views [N, K], softmax of the image alone [N, K], labels [N], views per image)
    of a model that takes the raw pixels the batches hold."""
    avg, single, labels, vs = [], [], [], [None]
    for x, y in batches:
        vs = views(np.asarray(x), tta, shift)
        ps = [np.asarray(model.predict_on_batch(v), np.float64) for v in vs]
        single.append(ps[0])
        avg.append(np.mean(ps, axis=0))
        labels.append(np.asarray(y))
    return np.concatenate(avg), np.concatenate(single), np.concatenate(labels), len(vs)


def metrics(probs, labels):
    """accuracy, top-5 accuracy (more than 5 classes, as in training) and cross-entropy of probabilities."""
    labels = labels.astype(np.int64)
    out = {"accuracy": float(np.mean(probs.argmax(-1) == labels)),
           "loss": float(np.mean(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))}
    if probs.shape[-1] > 5:
        top5 = np.argsort(-probs, axis=-1)[:, :5]
        out["top5"] = float(np.mean((top5 == labels[:, None]).any(-1)))
    return out


def raw_model(net, shape, dtype, mean, std, raw_input):
    """A model taking raw pixels of `dtype`: `net` itself when it already does (device augmentation), else `net`
    behind the normalising Augment layer (inference mode: the host pipeline's normalisation, tested equal)."""
    from . import augment

    if raw_input:
        return net
    scale = 1 / 255 if np.dtype(dtype) == np.uint8 else 1.0
    return augment.wrap(net, shape, str(np.dtype(dtype)), mean=mean, std=std, scale=scale, crop=0, flip=False,
                        seed=None)


def with_tta(model, batches, tta, shift, raw_input, shape, mean, std):
    """Test metrics with `tta` (plus "tta", "views", and the image-alone figures as "single_view")."""
    first = next(iter(batches.take(1)))[0]
    m = raw_model(model, shape, first.dtype.as_numpy_dtype, mean, std, raw_input)
    probs, single, labels, n_views = probabilities(m, batches, tta, shift)
    return {**metrics(probs, labels), "tta": tta, "views": n_views,
            "examples": int(len(labels)), "single_view": metrics(single, labels)}


def evaluate(run_dir, data=None, tta="none", batch_size=256, precise_bn=0, echo=print):
    """`suite eval`: the run's best.keras on the test split of its data set (or `data`), with its BatchNorm
    statistics recomputed over `precise_bn` training images first when that is not 0; writes eval.json."""
    from . import runner, trained

    if tta not in TTAS:
        raise UserError(f"--tta {tta} is not one of: {', '.join(TTAS)}")
    trained.check_precise_bn(precise_bn)
    t0 = time.time()
    t = trained.load(run_dir)
    d = t.data(data)
    used = t.recompute_bn(precise_bn) if precise_bn else 0
    shift = shift_for(t.cfg, t.shape)
    batches = t.batches(d.x_test, d.y_test, batch_size=batch_size, raw=True)
    r = with_tta(t.net, batches, tta, shift, False, t.shape, t.mean, t.std)
    r.update(data=d.name, checkpoint="best.keras", shift=shift if tta == "10crop" else None, precise_bn=used,
             batch_norm=t.bn, time_s=round(time.time() - t0, 2))
    path = t.run_dir / EVAL_FILE
    saved = runner.read_json(path) or {}  # unreadable: start it afresh (results.json is the run's record)
    saved.setdefault(d.name, {})[tta + ("+precise_bn" if used else "")] = r
    runner.write_json(path, saved)  # results.json and the models stay as training wrote them
    echo(line(t, r, precise_bn))
    return r


def line(t, r, precise_bn=0):
    """The one line `suite eval` prints."""
    from .trained import bn_note

    bn = bn_note(t, precise_bn, r["precise_bn"])
    bn = f" · {bn}" if bn else ""
    top5 = f" · top-5 {r['top5']:.4f}" if "top5" in r else ""
    gain = ""
    if r["tta"] != "none":
        s = r["single_view"]["accuracy"]
        gain = f" · {r['tta']} ({r['views']} views): {100 * (r['accuracy'] - s):+.2f} points over the image alone ({s:.4f})"
    return (f"{t.cfg['experiment']['name']} · {r['data']} test ({r['examples']} images) · accuracy {r['accuracy']:.4f}"
            f"{top5} · loss {r['loss']:.4f}{gain}{bn} · {t.run_dir / EVAL_FILE}")
