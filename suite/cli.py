"""`python -m suite <command>`: run, list (and the commands added beside them). Every training goes
through suite.runner. Mistakes end with one line on stderr and exit status 2 (see suite.errors)."""

import argparse
import sys
import traceback

from . import errors
from .errors import UserError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; the suite promises one line
        raise UserError(f"{message} (see `{self.prog} --help`)")


def add_run_args(p):
    p.add_argument("target", help="a network (see `suite list`) or an experiment (experiments/NAME.toml or a path)")
    p.add_argument("--data", help="digits (default), mnist, fashion_mnist, cifar10, cifar100, path.npz or a folder")
    p.add_argument("--epochs", type=int, help="number of epochs")
    p.add_argument("--batch-size", type=int, help="examples per batch")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seed", type=int, help="random seed (weights, split order, augmentation)")
    p.add_argument("--deterministic", action="store_true", help="TensorFlow op determinism: same metrics every run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set train.optimizer=adam --set model.padding=valid")
    p.add_argument("--logdir", help="root of the run directories (default logs)")


def flag_overrides(a):
    extra = {}
    for flag, key in (("data", "data.name"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("logdir", "log.dir")):
        if getattr(a, flag, None) is not None:
            extra[key] = getattr(a, flag)
    if getattr(a, "deterministic", False):
        extra["train.deterministic"] = True
    return extra


def cmd_run(a):
    from . import config, runner

    cfg = config.resolve(a.target, a.set, flag_overrides(a))
    r = runner.run(cfg, fresh=a.fresh)
    return errors.EXIT_DIVERGED if r["status"] == "diverged" else errors.EXIT_OK


def cmd_list(a):
    from . import config, registry

    print("networks:")
    for name in registry.list_models():
        e = registry.get(name)
        print(f"  {name:<22} {e.family:<10} {e.summary}")
    print("experiments (experiments/*.toml):")
    for name in config.list_experiments():
        print(f"  {name}")
    return 0


def parser():
    p = Parser(prog="python -m suite", description="Classic CNN experiments in Keras: run, list, inspect, tune.")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    r = sub.add_parser("run", help="train and evaluate one network or experiment")
    add_run_args(r)
    r.add_argument("--fresh", action="store_true", help="start a new run instead of resuming an unfinished one")
    r.set_defaults(fn=cmd_run)

    ls = sub.add_parser("list", help="list networks and experiments")
    ls.set_defaults(fn=cmd_list)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        a = parser().parse_args(argv)
        from .quiet import import_tensorflow

        import_tensorflow()  # before anything imports Keras, so TensorFlow's start-up lines stay hidden
        return a.fn(a)
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return errors.EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: the run directory keeps its last completed epoch; run the same command to resume",
              file=sys.stderr)
        return 130
