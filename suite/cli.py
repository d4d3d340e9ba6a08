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


def add_run_dir(p):
    p.add_argument("run_dir", help="a run directory, logs/<experiment>/<run-id> (see `suite list --runs`)")


def flag_overrides(a):
    extra = {}
    for flag, key in (("data", "data.name"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("logdir", "log.dir")):
        if getattr(a, flag, None) is not None:
            extra[key] = getattr(a, flag)
    if getattr(a, "distribute", None) is not None:
        extra["train.distribute"] = a.distribute
    if getattr(a, "deterministic", False):
        extra["train.deterministic"] = True
    if getattr(a, "profile", False):
        extra["log.profile"] = True
    return extra


def cmd_run(a):
    from . import config, distribute

    cluster = distribute.cluster(a.coordinator, a.num_processes, a.process_id)  # None: this process alone
    cfg = config.resolve(a.target, a.set, flag_overrides(a))
    _tensorflow()  # only now: a mistake in the settings is said at once, not after TensorFlow's start
    from . import runner

    r = runner.run(cfg, fresh=a.fresh, cluster=cluster)
    return errors.EXIT_DIVERGED if r["status"] == "diverged" else errors.EXIT_OK


def cmd_bench(a):
    from . import config

    if a.steps is not None and a.steps < 1:
        raise UserError(f"--steps {a.steps} must be at least 1")
    if a.epochs < 1:
        raise UserError(f"--epochs {a.epochs} must be at least 1 (epochs measured after the warm-up epoch)")
    if a.repeat < 1:
        raise UserError(f"--repeat {a.repeat} must be at least 1")
    cfg = config.resolve(a.target, a.set, flag_overrides(a))
    _tensorflow()
    from . import bench

    bench.bench(cfg, steps=a.steps or 0, epochs=a.epochs, repeat=a.repeat, json_path=a.json)
    return 0


def cmd_list(a):
    from . import config, registry

    if getattr(a, "runs", False):  # the run directories' files only (suite/commits.py): no TensorFlow
        return list_runs(a.logdir)
    print("networks:")
    for name in registry.list_models():
        e = registry.get(name)
        print(f"  {name:<22} {e.family:<10} {e.summary}")
    found = config.experiments()
    print(f"experiments (shipped: {config.EXPERIMENTS}" + (", yours: ./experiments" if len(config.experiment_dirs()) > 1
                                                          else "") + "):")
    for name, (origin, path) in found.items():
        shadow = origin == "yours" and (config.EXPERIMENTS / path.name).is_file()
        tag = "" if origin == "shipped" else "  [yours" + (", replaces the shipped one]" if shadow else "]")
        print(f"  {name:<22} {experiment_summary(path)}{tag}")
    return 0


def experiment_summary(path):
    """One line on an experiment file: its description and the paper's figure, as `run` quotes it."""
    from . import config

    try:
        exp = config.read_toml(path).get("experiment", {})
    except UserError as e:  # one broken file of the user's must not hide the others
        return f"(broken: {e})"
    if not isinstance(exp, dict):
        return "(broken: [experiment] is not a table)"
    paper = config.paper_figure(exp.get("reference_accuracy"), exp.get("reference_data"))
    return f"{exp.get('description') or '(no description)'}{paper}"


def cmd_show(a):
    from . import config, show

    if a.config:
        print(show.config_text(config.resolve(a.target, a.set)))
        return 0
    shape = show.parse_input(a.input) if a.input else None
    if a.classes is not None and a.classes < 1:
        raise UserError(f"--classes {a.classes} must be at least 1")
    _tensorflow()  # the table builds the network
    try:
        show.show(a.target, a.set, input_shape=shape, classes=a.classes)
    except BrokenPipeError:  # `suite show resnet50 | head`
        import os

        sys.stdout = open(os.devnull, "w")
    return 0


def cmd_tune(a):
    from . import config
    from .tune import space

    extra = {"tune.tuner": a.tuner, "tune.max_trials": a.max_trials, "tune.epochs": a.epochs,
             "tune.objective": a.objective, "data.name": a.data, "train.seed": a.seed, "log.dir": a.logdir}
    extra = {k: v for k, v in extra.items() if v is not None}
    if a.workers is not None and a.workers < 1:
        raise UserError(f"--workers {a.workers} must be at least 1")
    if any(s.split("=", 1)[0].strip() == "train.epochs" for s in a.set):  # else the search would ignore it
        raise UserError("tune trains each trial for tune.epochs (default 6; hyperband: the most a trial gets), not "
                        "train.epochs: use --epochs N or --set tune.epochs=N")
    relaunch = [a.target] + [x for s in a.set for x in ("--set", s)]  # what a worker process is started with
    for flag in ("tuner", "max_trials", "epochs", "objective", "data", "seed", "logdir"):
        if getattr(a, flag) is not None:
            relaunch += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
    cfg = config.resolve(a.target, a.set, extra)
    space.space(cfg)  # the search space too is checked before TensorFlow starts
    _tensorflow()
    from .tune import search as tune_search

    return tune_search.search(a.target, a.set, extra, workers=a.workers or 0, fresh=a.fresh, study=a.study,
                             relaunch=relaunch, devices_per_trial=a.devices_per_trial, cfg=cfg)


def cmd_board(a):
    from . import board

    return board.serve(a.logdir, host=a.host, port=a.port)


def cmd_report(a):
    from . import report

    report.report([*a.paths, *a.logdir] or ["logs"], csv_path=a.csv, plots=not a.no_plots, combined=a.plot)
    return 0


def cmd_viz(a):
    from . import viz

    viz.viz(a.run_dir, a.image, out=a.out, precise_bn=a.precise_bn)
    return 0


def cmd_study(a):
    from .studies import spec

    if a.list:  # runs × epochs × data say what a study costs here, --full what its paper-scale recipe costs
        from . import table

        rows = []
        for name, (origin, path) in spec.studies().items():
            name += "" if origin == "shipped" else f" [{origin}]"
            try:
                s = spec.load(path)
                rows.append([name, len(s.arms) * len(s.seeds), spec.networks(s), spec.scale(s),
                             spec.scale(s, full=True), s.question])
            except UserError as e:
                rows.append([name, "", "", "", "", f"(broken: {e})"])
        print(table.render(["study", "runs", "network", "data, epochs", "with --full", "question"], rows, numeric=(1,),
                           markdown=False))
        return 0
    if not a.target:
        raise UserError("name a study (see `python -m suite study --list`) or a study file")
    if a.seeds is not None and a.seeds < 1:
        raise UserError(f"--seeds {a.seeds} must be at least 1")
    if a.workers is not None and a.workers < 1:
        raise UserError(f"--workers {a.workers} must be at least 1")
    from . import distribute

    groups = distribute.device_groups(a.workers or 0, a.devices_per_trial)  # GPUs per worker process
    study = spec.load(a.target)
    seeds = list(study.seeds)
    if a.seeds is not None:  # the file's seeds first, then the next integers
        seeds = (seeds + [max(seeds) + 1 + i for i in range(a.seeds)])[:a.seeds]
    _tensorflow()
    from .studies import report, study as study_mod

    root, runs = study_mod.plan(study, seeds, a.full, a.set, a.logdir)  # every arm checked before any training
    if a.shard:  # one of --workers' processes: its share of the runs, no report
        distribute.die_with_parent()
        i, n = a.shard
        study_mod.run(study, runs[i::n])
        return 0
    if a.workers:
        argv = [a.target, "--logdir", a.logdir] + (["--full"] if a.full else [])
        argv += [x for s in a.set for x in ("--set", s)] + (["--seeds", str(a.seeds)] if a.seeds is not None else [])
        rc = study_mod.run_workers(argv, groups)
        if rc:
            return rc
    records, wall = study_mod.run(study, runs)
    report.write(study, records, seeds, a.full, wall, root)
    return 0


def _shard(text):
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with I < N")
    return int(i), int(n)


def add_precise_bn(p):
    p.add_argument("--precise-bn", type=int, default=0, metavar="N",
                   help="first recompute the BatchNorm statistics over N training images, as runs do since "
                   "eval.precise_bn (for runs trained without it; the run's files are not changed; default 0: "
                   "the saved statistics)")


def cmd_eval(a):
    from . import evaluate

    evaluate.evaluate(a.run_dir, data=a.data, tta=a.tta, batch_size=a.batch_size, precise_bn=a.precise_bn)
    return 0


def cmd_predict(a):
    from . import predict

    predict.predict(a.run_dir, a.images, top=a.top, invert=a.invert, precise_bn=a.precise_bn)
    return 0


def list_runs(logdir):
    from . import runner

    rows = runner.list_runs(logdir)
    if not rows:
        print(f"no runs under {logdir}")
    for d, status, res, note in rows:
        if status == "complete" and res:
            acc = (res.get("test") or {}).get("accuracy")
            note = f"test accuracy {acc:.4f}" if isinstance(acc, float) else ""
        elif status == "diverged" and res and res.get("diverged_at"):
            w = res["diverged_at"]
            note = f"loss {w.get('loss')} at epoch {w.get('epoch')} batch {w.get('batch')}"
        elif status == "incomplete":
            note += "; run the same command to resume"
        print(f"  {status:<10} {str(d):<60} {note}")
    return 0


def _tensorflow():
    """Import TensorFlow/Keras before anything else does, so TensorFlow's start-up lines stay hidden."""
    from .quiet import import_tensorflow

    import_tensorflow()


def parser():
    from . import config  # the registry only: no Keras

    p = Parser(prog="python -m suite", description="Classic CNN experiments in Keras: run, list, inspect, tune.")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    r = sub.add_parser("run", help="train and evaluate one network or experiment")
    add_run_args(r)
    r.add_argument("--fresh", action="store_true", help="start a new run instead of resuming an unfinished one")
    r.add_argument("--profile", action="store_true",
                   help="profile a few training steps for TensorBoard's Profile tab (input-pipeline analysis)")
    r.add_argument("--distribute", choices=("auto", "none", "data_parallel"),
                   help="data_parallel: split each batch (the global batch) over every device of every process; "
                   "auto (default): so when there is more than one GPU/TPU (train.distribute)")
    r.add_argument("--coordinator", metavar="HOST:PORT", help="several hosts (JAX backend): process 0's address, "
                   "the same on every host (or KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    r.add_argument("--num-processes", type=int, metavar="N", help="several hosts: how many processes in all "
                   "(or KERAS_DISTRIBUTION_NUM_PROCESSES)")
    r.add_argument("--process-id", type=int, metavar="I", help="several hosts: this process's number, 0 … N-1; "
                   "0 writes the run directory (or KERAS_DISTRIBUTION_PROCESS_ID)")
    r.set_defaults(fn=cmd_run)

    be = sub.add_parser("bench", help="images/s of the input pipeline, the model step, the whole run and plain "
                        "Keras, side by side in one process")
    be.add_argument("target", help="a network (see `suite list`) or an experiment (experiments/NAME.toml or a path)")
    be.add_argument("--data", help="digits (default), mnist, fashion_mnist, cifar10, cifar100, path.npz or a folder")
    be.add_argument("--batch-size", type=int, help="examples per batch")
    be.add_argument("--steps", type=int, metavar="N", help="training steps per epoch (default: the whole training "
                    "set, as `run` does)")
    be.add_argument("--epochs", type=int, default=2, metavar="E", help="epochs measured between one warm-up epoch "
                    "and one uncounted last epoch, the run's end (default 2; the figure is their median)")
    be.add_argument("--repeat", type=int, default=1, metavar="R", help="measure the model, plain Keras and the "
                    "end-to-end rows R times in turn and report medians (default 1)")
    be.add_argument("--seed", type=int, help="random seed")
    be.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any setting, e.g. --set train.precision=mixed_bfloat16 --set data.augment_on=device")
    be.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    be.set_defaults(fn=cmd_bench, lr=None, logdir=None)

    ls = sub.add_parser("list", help="list networks and experiments")
    ls.add_argument("--runs", action="store_true",
                    help="list the run directories instead: complete, diverged, incomplete (resumable) or running")
    ls.add_argument("--logdir", default="logs", help="root of the run directories (default logs)")
    ls.set_defaults(fn=cmd_list)

    sh = sub.add_parser("show", help="per-layer table: shapes, parameters, MACs, receptive field, (N−F+2P)/S+1")
    sh.add_argument("target", help="a network (see `suite list`) or an experiment (experiments/NAME.toml or a path)")
    sh.add_argument("--input", metavar="H,W,C", help="input shape (default: the experiment's data set, else the "
                    "network's paper input); T,F or T for sequence models")
    sh.add_argument("--classes", type=int, metavar="N", help="number of classes (default: the data set's, else "
                    "the network's)")
    sh.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any setting, e.g. --set model.width=0.5 --set model.padding=valid")
    sh.add_argument("--config", action="store_true", help="print the resolved configuration (every valid key "
                    "with its value) as TOML instead of the table")
    sh.set_defaults(fn=cmd_show)

    bd = sub.add_parser("board", help="TensorBoard on the run directories (scalars, images, graph, HParams)")
    bd.add_argument("--logdir", default="logs", help="folder of run directories (default logs)")
    bd.add_argument("--port", type=int, help="port (default 6006, or the next free one)")
    bd.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    bd.set_defaults(fn=cmd_board)

    rp = sub.add_parser("report", help="table of runs (test vs paper accuracy, status) and training-curve plots")
    rp.add_argument("paths", nargs="*", help="run directories or folders holding them (default logs)")
    rp.add_argument("--logdir", action="append", default=[], help="a folder of run directories, as `run --logdir` "
                    "wrote them (the same as giving it as a path)")
    rp.add_argument("--csv", metavar="PATH", help="also write the table as CSV to PATH ('-': CSV on stdout instead)")
    rp.add_argument("--plot", metavar="PATH", help="where the combined plot goes (default report.png in the "
                    "folder holding all the runs)")
    rp.add_argument("--no-plots", action="store_true", help="only the table: write no PNG files")
    rp.set_defaults(fn=cmd_report)

    vz = sub.add_parser("viz", help="look inside a trained run: first-layer filters, feature maps, Grad-CAM and "
                        "(dilated nets) receptive-field coverage, as PNGs and TensorBoard images")
    add_run_dir(vz)
    vz.add_argument("image", nargs="?", metavar="IMAGE", help="a PNG or JPEG picture (default: the first test "
                    "image of the run's data set)")
    vz.add_argument("--out", metavar="DIR", help="where the PNG files go (default <run-dir>/viz)")
    add_precise_bn(vz)
    vz.set_defaults(fn=cmd_viz)

    ev = sub.add_parser("eval", help="evaluate a trained run's best.keras on a test set, with the papers' "
                        "test-time augmentation; writes eval.json in the run directory")
    add_run_dir(ev)
    ev.add_argument("--data", help="another data set with the run's classes (default: the run's own test split)")
    ev.add_argument("--tta", choices=config.CHOICES["eval.tta"], default="none",
                    help="none; flip: the image and its mirror; 10crop: AlexNet's four corners + centre and their "
                    "mirrors (softmax averaged)")
    ev.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    add_precise_bn(ev)
    ev.set_defaults(fn=cmd_eval)

    pr = sub.add_parser("predict", help="classify your own pictures (PNG/JPEG files or folders) with a trained run")
    add_run_dir(pr)
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="picture files, or folders of them")
    pr.add_argument("--top", type=int, default=3, metavar="K", help="how many classes to print (default 3)")
    pr.add_argument("--invert", action="store_true", help="invert the pictures first (dark ink on white paper, for "
                    "networks trained on light-on-dark digits)")
    add_precise_bn(pr)
    pr.set_defaults(fn=cmd_predict)

    st = sub.add_parser("study", help="answer one of the notes' questions: arms × seeds through the runner, a "
                        "report with a verdict computed from the runs")
    st.add_argument("target", nargs="?", help="a study (see --list) or a study file experiments/studies/NAME.toml")
    st.add_argument("--list", action="store_true",
                    help="list the studies: runs, network, data and epochs (quick and with --full), question")
    st.add_argument("--seeds", type=int, metavar="N", help="number of seeds per arm (default: the study's)")
    st.add_argument("--full", action="store_true", help="the real data set and the paper-scale recipe ([study.full]; "
                    "--list shows its data and epochs; the MNIST ones and the exercise-2 CNN's on CIFAR-10 fit "
                    "a CPU, the others are for a GPU)")
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting in every arm, e.g. --set train.epochs=2")
    st.add_argument("--workers", type=int, metavar="N", help="train the runs in N processes side by side, each on "
                    "its own GPUs when there are (an even share, or --devices-per-trial K each)")
    st.add_argument("--devices-per-trial", type=int, metavar="K", help="with --workers: K GPUs per process")
    st.add_argument("--shard", type=_shard, help=argparse.SUPPRESS)  # I/N: a --workers process's share
    st.add_argument("--logdir", default="logs", help="root of the run directories (default logs): runs go to "
                    "<logdir>/studies/<study>/")
    st.set_defaults(fn=cmd_study)

    tu = sub.add_parser("tune", help="hyperparameter search with keras-tuner (learning rate, batch size, depth, …)")
    tu.add_argument("target", help="a network (see `suite list`) or an experiment (experiments/NAME.toml or a path)")
    tu.add_argument("--tuner", help="random (default), hyperband, bayesian or grid (tune.tuner)")
    tu.add_argument("--max-trials", type=int, metavar="N", help="trials at most (tune.max_trials; hyperband: "
                    "its brackets decide)")
    tu.add_argument("--epochs", type=int, metavar="E", help="epochs per trial; hyperband: the most one trial gets "
                    "(tune.epochs)")
    tu.add_argument("--objective", help="val_accuracy (default), val_loss, accuracy or loss (tune.objective)")
    tu.add_argument("--workers", type=int, metavar="N", help="run N worker processes beside a chief oracle "
                    "(keras-tuner's distributed mode on 127.0.0.1)")
    tu.add_argument("--devices-per-trial", type=int, metavar="K", help="with --workers N: each worker trains its "
                    "trials on its own K GPUs (default: an even share when there are at least N GPUs)")
    tu.add_argument("--study", metavar="NAME", help="study name: logs/<experiment>/tune-NAME/ (default: "
                    "<tuner>-<hash of the settings>, so the same command continues the same study)")
    tu.add_argument("--fresh", action="store_true", help="start the study over (the earlier one is kept, renamed)")
    tu.add_argument("--data", help="digits (default), mnist, fashion_mnist, cifar10, cifar100, path.npz or a folder")
    tu.add_argument("--seed", type=int, help="random seed of every trial's training (tune.seed seeds the search)")
    tu.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any setting, e.g. --set tune.lr=[1e-3,0.3] --set tune.depth=[11,13,16,19]")
    tu.add_argument("--logdir", help="root of the run directories (default logs)")
    tu.set_defaults(fn=cmd_tune)
    return p


# These check their arguments and settings (the registry, the config, the run directory) before they load
# TensorFlow, when they must (quiet.import_tensorflow, first): a mistake is one line at once. The others load it
# first, so its start-up lines stay hidden.
CHECK_FIRST = (cmd_list, cmd_show, cmd_study, cmd_run, cmd_bench, cmd_tune, cmd_eval, cmd_predict, cmd_viz)
TRAINS = (cmd_run, cmd_study, cmd_tune)  # what a closed standard output stops midway: they say so on stderr


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    a = None
    try:
        a = parser().parse_args(argv)
        if a.fn not in CHECK_FIRST:
            _tensorflow()
        code = a.fn(a)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except UserError as e:
        if debug:
            traceback.print_exc()
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return errors.EXIT_USAGE
    except errors.Stopped as e:
        print(str(e), file=sys.stderr)
        return e.code
    except BrokenPipeError:
        # `suite list | head`: the reader has what it wanted. Stop as Unix tools do, without a traceback; stdout is
        # pointed at /dev/null so Python's flush at exit cannot raise again (the recipe of the `signal` module's docs,
        # "Note on SIGPIPE"). A run stopped this way keeps its last commit, as after any stop.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if a is not None and a.fn in TRAINS:
            print("stopped: standard output was closed; the run directory keeps its last commit: run the same "
                  "command to resume", file=sys.stderr)
        return errors.EXIT_SIGPIPE
    except OSError as e:
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT) or debug:
            raise
        print(f"error: no space left on the device ({e.filename or 'writing the run'}); the run directory keeps "
              "its last completed epoch: free some space and run the same command to resume", file=sys.stderr)
        return errors.EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: the run directory keeps its last completed epoch; run the same command to resume",
              file=sys.stderr)
        return 130
