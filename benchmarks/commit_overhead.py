"""What mid-epoch commits cost: steady-state training images/s of the same run with log.backup_every set to each
of several values, measured side by side in one process (runs interleaved, A B C A B C …), through the runner as
`suite run` trains.

    SUITE_DATA_DIR=../shared/data python benchmarks/commit_overhead.py [--net lenet5] [--data mnist]
        [--every epoch "2min" "50 steps"] [--epochs 3] [--repeat 2]

Steady state: the epochs after the first (compilation) of each run; the figure per setting is the median of those
epochs' images_per_sec over all repeats, and the ratio is to the first setting's."""

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="lenet5")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--every", nargs="+", default=["epoch", "2min", "50 steps"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()

    from suite.quiet import import_tensorflow

    import_tensorflow()
    from suite import config, runner

    logs = pathlib.Path(tempfile.mkdtemp(prefix="commit-overhead-"))
    rates = {e: [] for e in a.every}
    commits = {e: 0 for e in a.every}
    for r in range(a.repeat):
        for every in a.every:
            cfg = config.resolve(a.net, [f"data.name={a.data!r}", f"train.epochs={a.epochs}", "train.verbose=0",
                                         f"log.backup_every={every!r}", f"log.dir={str(logs)!r}"])
            n = _count_commits(cfg)
            res = runner.run(cfg, fresh=True, echo=lambda s: None)
            rates[every] += res["history"]["images_per_sec"][1:]
            commits[every] = n.count
            n.undo()
    base = statistics.median(rates[a.every[0]])
    print(f"{a.net} on {a.data}, {a.epochs} epochs × {a.repeat} runs per setting, steady-state epochs only")
    for every in a.every:
        med = statistics.median(rates[every])
        print(f"  backup_every={every!r:12} {med:9.0f} img/s  ratio {med / base:.3f}  "
              f"({commits[every]} commits in the last run)")


class _count_commits:
    """Counts Backup.commit calls (epoch ends included) of one run."""

    def __init__(self, cfg):
        from suite import callbacks

        self.count, self.cls = 0, callbacks.Backup
        self.orig = self.cls.commit

        def commit(backup, epoch, step):
            self.count += 1
            return self.orig(backup, epoch, step)

        self.cls.commit = commit

    def undo(self):
        self.cls.commit = self.orig


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)")
