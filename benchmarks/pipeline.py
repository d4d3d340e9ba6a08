"""Input pipeline vs model, measured apart (img/s), so you know which one limits training.

    python benchmarks/pipeline.py --net lenet5_modern --data digits
    SUITE_DATA_DIR=../shared/data python benchmarks/pipeline.py --net resnet20 --data cifar10 --batch-size 512

Prints: the tf.data pipeline alone with no augmentation, with per-image augmentation and with batched
augmentation (crop + flip); and the model's training step alone fed from one in-memory batch.
Figures depend on the machine: compare ratios measured in one run, not absolute numbers across machines.
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def rate(ds, batches, batch_size):
    it = iter(ds)
    for _ in range(3):  # warm-up: tracing, cache fill
        next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(ds)
            next(it)
        n += batch_size
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="lenet5_modern")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--crop", type=int, default=2)
    a = ap.parse_args()

    from suite.quiet import import_tensorflow

    import_tensorflow()
    import keras
    import numpy as np

    from suite import data, pipeline, registry

    d = data.load(a.data)
    x, y = d.x_train, d.y_train
    shape = d.shape
    mean, std = pipeline.channel_stats(x, shape[2])
    base = dict(shuffle=True, cache=True, crop=0, flip=False, batched_augment=True)
    kw = dict(shape=shape, batch_size=a.batch_size, training=True, seed=0, mean=mean, std=std)
    ds = lambda cfg: pipeline.make(x, y, data_cfg=cfg, **kw).repeat()  # noqa: E731
    print(f"{a.data} {shape}, batch {a.batch_size}, {keras.backend.backend()} backend")
    print(f"pipeline, no augmentation       : {rate(ds(base), a.batches, a.batch_size):10,.0f} img/s")
    aug = {**base, "crop": a.crop, "flip": True}
    per_image = rate(ds({**aug, "batched_augment": False}), a.batches, a.batch_size)
    batched = rate(ds(aug), a.batches, a.batch_size)
    print(f"pipeline, per-image augmentation: {per_image:10,.0f} img/s")
    print(f"pipeline, batched augmentation  : {batched:10,.0f} img/s  ({batched / per_image:.2f}× per-image)")

    model = registry.build(a.net, shape, d.num_classes)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    xb = np.random.default_rng(0).standard_normal((a.batch_size, *shape)).astype("float32")
    yb = y[:a.batch_size] if len(y) >= a.batch_size else np.resize(y, a.batch_size)
    for _ in range(3):
        model.train_on_batch(xb, yb)
    t = time.perf_counter()
    steps = max(5, a.batches // 5)
    for _ in range(steps):
        model.train_on_batch(xb, yb)
    print(f"model {a.net} train step alone  : {steps * a.batch_size / (time.perf_counter() - t):10,.0f} img/s")


if __name__ == "__main__":
    main()
