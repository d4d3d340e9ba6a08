"""Do a GAP network's class maps die? Trains an experiment's network for N steps, the way `suite run` builds and
feeds it (runner.prepare / datasets / on_device / compile_model), and every 50 steps prints how many of the class
maps (the input of its GlobalAveragePooling2D) are alive — positive somewhere on the first test batches, about
1,000 images — and the test accuracy on those images. A class map behind a ReLU that is 0 everywhere gets no
gradient again: NiN and All-CNN-C stuck at 10 % for good (experiments/nin.toml, allcnn_c.toml).

    SUITE_DATA_DIR=../shared/data python benchmarks/class_maps.py nin --steps 150 --set model.class_relu=false
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--limit", type=int, default=4096, help="training images (data.limit)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides, as `run`")
    a = ap.parse_args()

    import keras
    import numpy as np

    from suite import config, runner

    cfg = config.resolve(a.experiment, [f"data.limit={a.limit}", "data.val_split=0", "train.epochs=1", *a.set])
    parts = runner.prepare(cfg)
    ds = runner.datasets(cfg, parts)
    model = runner.compile_model(runner.on_device(cfg, parts, ds), cfg, parts)
    gap = next(x for x in model.layers if isinstance(x, keras.layers.GlobalAveragePooling2D))
    probe = keras.Model(model.inputs, gap.input)
    test = ds["test"].take(-(-1000 // cfg["train"]["batch_size"]))
    n_maps = gap.input.shape[-1]
    print(f"{a.experiment} · {' '.join(a.set) or 'as the file says'} · {a.limit} training images")
    t0 = time.time()
    it = iter(ds["train"].repeat())
    for step in range(1, a.steps + 1):
        model.train_on_batch(*next(it))
        if step % 50 and step != a.steps:
            continue
        alive, hits, n = np.zeros(n_maps, bool), 0, 0
        for x, y in test:
            maps = np.asarray(probe(x, training=False))
            alive |= maps.max(axis=(0, 1, 2)) > 0
            hits += int((maps.mean(axis=(1, 2)).argmax(-1) == np.asarray(y)).sum())
            n += len(y)
        print(f"  step {step}: class maps alive {alive.sum()}/{n_maps} · test accuracy {hits / n:.3f} "
              f"({n} images) · {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
