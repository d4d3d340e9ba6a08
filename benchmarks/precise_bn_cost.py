"""What eval.precise_bn costs: the time of one recomputation of the BatchNorm statistics against the training steps
of one epoch, measured side by side in one process (training steps and recomputations interleaved, after a warm-up
that compiles both), on the network, data and settings `suite run` would use.

    SUITE_DATA_DIR=../shared/data python benchmarks/precise_bn_cost.py [resnet20_fast] [--set eval.precise_bn=4096]
        [--steps 64] [--repeat 3]

The epoch figure is the median step time × the epoch's steps; the ratio is the recomputation's share of that."""

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="resnet20_fast", help="experiment or network")
    ap.add_argument("--set", action="append", default=[], help="section.key=value, as for suite run")
    ap.add_argument("--steps", type=int, default=64, help="training steps timed per turn")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from suite import config, runner

    cfg = config.resolve(a.target, a.set)
    parts = runner.prepare(cfg)
    ds = runner.datasets(cfg, parts)
    model = runner.compile_model(runner.on_device(cfg, parts, ds), cfg, parts)
    recompute = runner.precise_bn(cfg, parts, ds, model)
    if recompute is None:
        sys.exit(f"{a.target}: nothing to measure (no BatchNorm, or eval.precise_bn = 0)")
    n = min(a.steps, parts["steps"])  # an epoch shorter than --steps (digits: 11 steps) ends the fit early
    train = ds["train"].take(n)
    model.fit(train, epochs=1, verbose=0)
    recompute()
    steps, calls = [], []
    for _ in range(a.repeat):
        t = time.perf_counter()
        model.fit(train, epochs=1, verbose=0)
        steps.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        images = recompute()
        calls.append(time.perf_counter() - t)
    step, call = statistics.median(steps), statistics.median(calls)
    epoch = step * parts["steps"]
    print(f"{a.target} · {parts['data'].name} · batch {cfg['train']['batch_size']} · {parts['device']['name']}")
    print(f"training: {step * 1000:.0f} ms a step × {parts['steps']} steps = {epoch:.1f} s an epoch")
    print(f"precise BN: {call:.2f} s a call over {images} images (calls: {', '.join(f'{c:.2f}' for c in calls)})")
    print(f"share of an epoch: {call / epoch:.3f}")


if __name__ == "__main__":
    main()
