"""Data sets as NumPy arrays: the embedded default (scikit-learn's real 8×8 `digits`), the Keras data sets
(read from $SUITE_DATA_DIR/<name>.npz first, so nothing is downloaded when a copy is at hand), any .npz file,
and image folders (one sub-folder per class). Every loader returns the same `Data` record."""

import dataclasses
import functools
import os
import pathlib
import tokenize
import zipfile
import zlib

import numpy as np

from .errors import UserError, one_line

KERAS_SETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
NAMES = ("digits",) + KERAS_SETS
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 2**16
# Class names of the known sets, in label order (the Keras files carry only ids). `suite predict` prints them.
CLASS_NAMES = {
    "fashion_mnist": ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": (  # the 100 fine labels
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
        "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
        "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard "
        "lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
        "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark "
        "shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone "
        "television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split(),
}


@dataclasses.dataclass
class Data:
    name: str
    x_train: np.ndarray  # uint8 or float, [N, H, W, C]
    y_train: np.ndarray  # int labels [N]
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])


def load(name, data_dir=None):
    """Load data set `name` (a known name, a .npz path or a folder) and check it.

    Files are read once per process while unchanged (tuner trials would re-read CIFAR's 170 MB each time);
    callers must not modify the returned arrays in place (the runner's split copies them)."""
    data_dir = data_dir or os.environ.get("SUITE_DATA_DIR")
    file = pathlib.Path(data_dir or ".") / f"{name}.npz" if name in KERAS_SETS else pathlib.Path(name)
    if name != "digits" and not file.is_file():  # folders, downloads: not cached
        return _load(name, data_dir)
    st = file.stat() if name != "digits" else None
    return _cached(name, data_dir, st and (str(file.resolve()), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=2)
def _cached(name, data_dir, signature):
    return _load(name, data_dir)


def _load(name, data_dir):
    if name == "digits":
        data = _digits()
    elif name in KERAS_SETS:
        data = _keras(name, data_dir)
    elif name.endswith(".npz"):
        data = _npz(pathlib.Path(name), name)
    elif pathlib.Path(name).is_dir():
        data = _folder(pathlib.Path(name))
    else:
        raise UserError(f"unknown data set {name!r}: use one of {', '.join(NAMES)}, a path/to/file.npz "
                        "or a folder with one sub-folder per class")
    return check(data)


def _digits():
    from sklearn.datasets import load_digits  # ships with scikit-learn: works offline

    d = load_digits()
    x = np.clip(d.images * 16, 0, 255).astype(np.uint8)[..., None]  # 0..16 → 0..255
    y = d.target.astype(np.int64)
    # sklearn has no test split: hold out a fixed, seeded 20 %.
    idx = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    te, tr = idx[:n_test], idx[n_test:]
    return Data("digits", x[tr], y[tr], x[te], y[te], 10, [str(i) for i in range(10)])


def _keras(name, data_dir):
    if data_dir:
        path = pathlib.Path(data_dir) / f"{name}.npz"
        if path.is_file():
            return _npz(path, name)
    import keras

    try:
        (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    except Exception as e:  # no network, or a broken cache
        raise UserError(f"cannot load {name} ({one_line(e)}); put {name}.npz in a folder and set "
                        "SUITE_DATA_DIR to it, connect to the internet for keras.datasets, or train on the embedded "
                        "digits with --data digits") from None
    return _arrays(name, xtr, ytr, xte, yte)


def _npz(path, name):
    if not path.is_file():
        raise UserError(f"data file {path} does not exist; check the path")
    try:
        with np.load(path, allow_pickle=False) as f:  # no pickles: an npz must not run code
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}; an npz needs keys {', '.join(NPZ_KEYS)}")
            arrays = [f[k] for k in NPZ_KEYS]
    except UserError:
        raise
    except MemoryError as e:  # a header claiming a huge shape (corrupt), or a data set too large for this machine
        raise UserError(f"{path} holds an array too large for this machine's memory ({e}); use a smaller data set, "
                        "or re-create the file if it is corrupt") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, KeyError, RuntimeError, SyntaxError,
            tokenize.TokenError) as e:  # SyntaxError, TokenError: a .npy header NumPy cannot parse
        # truncated or corrupt: zip, zlib or .npy errors
        raise UserError(f"{path} is not a readable .npz file ({one_line(e)}); re-download or re-create it") from None
    return _arrays(name, *arrays)


def _arrays(name, xtr, ytr, xte, yte):
    xtr, xte = _nhwc(xtr, name), _nhwc(xte, name)
    ytr, yte = _labels(ytr, name), _labels(yte, name)
    n = int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
    if n > MAX_CLASSES:  # the classifier gets one output per id up to the largest: 2**31 of them exhaust any memory
        raise UserError(f"{name}: labels go up to {n - 1}, which would make {n:,} classes (at most {MAX_CLASSES:,}); "
                        "labels must be class ids 0..num_classes-1: renumber them")
    n = {"cifar100": 100}.get(name, max(n, 2))
    names = CLASS_NAMES.get(name, [])
    return Data(name, xtr, ytr, xte, yte, n, names if len(names) == n else [str(i) for i in range(n)])


def _nhwc(x, name):
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise UserError(f"{name}: images must be numbers (uint8 or float), not {x.dtype}")
    if x.ndim == 3:  # grey [N, H, W] → [N, H, W, 1]
        x = x[..., None]
    if x.ndim != 4:
        raise UserError(f"{name}: images must be [N, H, W] or [N, H, W, C], not shape {list(x.shape)}")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = np.transpose(x, (0, 2, 3, 1))  # channels-first files (e.g. exported from PyTorch)
    if len(x) and min(x.shape[1:3]) < 1:
        raise UserError(f"{name}: images of {x.shape[1]}×{x.shape[2]} pixels are empty; check the file")
    if np.issubdtype(x.dtype, np.floating) and len(x) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        raise UserError(f"{name}: {bad} image{'s' if bad > 1 else ''} with NaN or infinite pixel values; "
                        "clean the data file")
    return x


def _labels(y, name):
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise UserError(f"{name}: labels contain NaN or infinite values; labels must be class ids 0..num_classes-1")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{name}: labels must be integers of shape [N], not {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise UserError(f"{name}: labels must be integer class ids, not {y.dtype}")
    return y.astype(np.int64)


def _folder(path):
    """Image folders via Keras' utility. `train/` + `test/` sub-folders are used when present;
    otherwise a fixed, seeded 20 % of the images is the test split."""
    import keras

    def read(p, **kw):
        ds = keras.utils.image_dataset_from_directory(p, batch_size=None, shuffle=False, seed=0, **kw)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds]) if len(ds) else ((), ())
        return ds.class_names, np.stack(xs) if xs else np.zeros((0, 1, 1, 3)), np.array(ys, np.int64)

    try:
        if (path / "train").is_dir() and (path / "test").is_dir():
            names, xtr, ytr = read(path / "train", image_size=_first_size(path / "train"))
            _, xte, yte = read(path / "test", image_size=xtr.shape[1:3], class_names=names)
        else:
            names, x, y = read(path, image_size=_first_size(path))
            idx = np.random.default_rng(0).permutation(len(x))
            n_test = max(1, len(x) // 5) if len(x) > 1 else 0
            xte, yte, xtr, ytr = x[idx[:n_test]], y[idx[:n_test]], x[idx[n_test:]], y[idx[n_test:]]
    except ValueError as e:
        raise UserError(f"image folder {path}: {e}") from None
    return Data(path.name, xtr.astype(np.uint8), ytr, xte.astype(np.uint8), yte, len(names), list(names))


def _first_size(path):
    """The first image's size: folders are loaded at their own resolution (resize later via data.image_size)."""
    from PIL import Image

    for p in sorted(path.rglob("*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
            with Image.open(p) as im:
                return im.size[1], im.size[0]
    raise UserError(f"image folder {path} holds no images (.png, .jpg, .bmp, .gif) in class sub-folders")


def check(data):
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(x) == 0:
            raise UserError(f"{data.name}: the {split} split is empty; give it some examples")
        if len(x) != len(y):
            raise UserError(f"{data.name}: x_{split} has {len(x)} images but y_{split} {len(y)} labels; "
                            "they must match one to one")
        if y.min() < 0 or y.max() >= data.num_classes:
            raise UserError(f"{data.name}: y_{split} has labels outside [0, {data.num_classes}); "
                            "labels must be class ids 0..num_classes-1")
    if data.x_train.shape[1:] != data.x_test.shape[1:]:
        raise UserError(f"{data.name}: train images are {data.x_train.shape[1:]} but test images "
                        f"{data.x_test.shape[1:]}; they must have one size")
    return data


def split(data, val_split, seed):
    """A fixed, seeded validation split from the training set: (x_train, y_train, x_val, y_val)."""
    n = len(data.x_train)
    idx = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_split))
    if val_split and n_val == 0:
        n_val = 1
    if n_val >= n:
        raise UserError(f"data.val_split = {val_split} leaves no training data ({n} examples); lower it")
    va, tr = np.sort(idx[:n_val]), np.sort(idx[n_val:])  # sorted: keep the original order for shuffle=false
    return data.x_train[tr], data.y_train[tr], data.x_train[va], data.y_train[va]


def splits(data, d):
    """The run's training and validation examples under its data settings `d` (the config's [data]):
    (x_train, y_train, x_val, y_val) after split(), data.limit and data.order."""
    xtr, ytr, xva, yva = split(data, d["val_split"], d["split_seed"])
    if d["limit"]:
        xtr, ytr = xtr[:d["limit"]], ytr[:d["limit"]]
    if d.get("order", "stored") == "by_label":  # all 0s, then all 1s, … (stable: stored order within a class)
        idx = np.argsort(ytr, kind="stable")
        xtr, ytr = xtr[idx], ytr[idx]
    return xtr, ytr, xva, yva
