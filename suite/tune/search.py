"""`python -m suite tune`: one study from the command line: as one process, as keras-tuner's chief (the oracle
over gRPC, with `--workers N` local worker processes), or as a worker (KERASTUNER_* variables set).

Processes that die. keras-tuner by itself waits forever for a worker that died mid-trial (its trial stays in
`ongoing_trials[tuner_id]`, so the chief never sees the search end), and a worker whose chief died blocks in its
next gRPC call for up to an hour (`wait_for_ready`, 60-minute timeout) or goes on training a trial nobody will
record. So: the chief starts a dead worker again under the same KERASTUNER_TUNER_ID — keras-tuner's
`Oracle.create_trial` hands a tuner id its ongoing trial back, and the trial's run directory resumes from its last
commit — at most MAX_RESTARTS times in a row without a finished trial; and a worker stops when its chief is gone
(`_watch_chief`), so running the chief's command again resumes the study with no stray process in it."""

import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

from .. import config as config_mod
from .. import distribute, runner
from ..errors import EXIT_ERROR, UserError
from ..quiet import hide_retracing_warning
from . import space as tune
from ..runner import read_json
from .tuner import RECORD, ChiefGone, Restart, StopSearch, SuiteTuner, _write_json, make_oracle, unreachable

CHIEF_PID = "SUITE_TUNE_CHIEF_PID"  # set for the workers `--workers` starts: their chief's pid
MAX_RESTARTS = 3  # a worker that dies this many times in a row without finishing a trial is not started again
STOP_SIGNALS = (130, 143, -2, -15)  # a worker stopped on purpose (Ctrl-C, SIGTERM) is not started again


def role():
    """'local', 'chief' or 'worker', from keras-tuner's environment variables."""
    from keras_tuner.src.distribute import utils

    if not utils.has_chief_oracle():
        return "local"
    return "chief" if utils.is_chief_oracle() else "worker"


def study_hash(cfg):
    """Names 'the same search': the run settings plus the search space (not how often the process restarts)."""
    import hashlib
    import json

    space = {k: v for k, v in cfg["tune"].items() if k != "restart_every"}
    text = runner.config_hash(cfg) + json.dumps(space, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def search(target, overrides=(), extra=None, *, workers=0, fresh=False, study=None, relaunch=None, echo=print,
           devices_per_trial=None, cfg=None):
    """Run (or continue) a study; returns the CLI exit status. relaunch: the `suite tune` arguments a worker
    process is started with (--study is added). devices_per_trial: GPUs each worker trains its trials on
    (distribute.device_groups). cfg: the config of target, overrides and extra when the caller resolved it already
    (the CLI does, before TensorFlow loads)."""
    from . import report as tune_report

    cfg = cfg or config_mod.resolve(target, overrides, extra)
    params = tune.space(cfg)
    hide_retracing_warning()  # every trial builds a new model
    if not params:
        raise UserError("nothing to tune: every search-space list in [tune] is empty; e.g. --set tune.lr=[1e-4,0.1]")
    t = cfg["tune"]
    digest = study_hash(cfg)
    name = study or f"{t['tuner']}-{digest}"
    root = pathlib.Path(cfg["log"]["dir"]) / cfg["experiment"]["name"]
    sdir = root / f"tune-{name}"
    if workers and role() != "local":
        raise UserError("--workers starts its own chief and workers; unset KERASTUNER_* to use it")
    groups = distribute.device_groups(workers, devices_per_trial)
    me = "chief" if workers else role()
    if me != "worker":
        meta = read_json(sdir / "study.json")
        if fresh and sdir.exists():
            old = sdir.with_name(f"{sdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            sdir.rename(old)
            echo(f"--fresh: the earlier study is kept as {old}")
        elif meta and meta.get("hash") != digest:
            raise UserError(f"study {name} in {root} was started with other settings; use --fresh to start it "
                            "over, or another --study name")
        tune.check_input(cfg, params)
        runner.make_dir(sdir)
        done = len(list(sdir.glob(f"trial_*/{RECORD}")))
        if done:
            echo(f"continuing {sdir}: {done} trial(s) done are not run again (use --fresh to start over)")
        _write_json(sdir / "study.json", {"hash": digest, "target": str(target), "tuner": t["tuner"],
                                          "objective": t["objective"], "space": [p.describe() for p in params]})
        echo(f"study {sdir} · {t['tuner']} · {t['objective']} · " + " · ".join(p.describe() for p in params))
    saved = {k: os.environ.get(k) for k in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")}
    procs, lost = [], []
    if me == "worker":
        _watch_chief()
    try:
        if workers:
            os.environ.update(KERASTUNER_TUNER_ID="chief", KERASTUNER_ORACLE_IP="127.0.0.1",
                              KERASTUNER_ORACLE_PORT=str(free_port()))
        tuner = SuiteTuner(make_oracle(cfg, params), base=cfg, params=params, directory=str(root),
                           project_name=f"tune-{name}", echo=echo)
        tuner.save()  # before the first trial: a kill in trial 0 must resume, not start over
        if me == "chief":
            cmd = [sys.executable, "-m", "suite", "tune", *(relaunch or [str(target)]), "--study", name]

            def spawn(i):
                env = {**os.environ, "KERASTUNER_TUNER_ID": f"worker{i}", CHIEF_PID: str(os.getpid())}
                if groups[i] is not None:  # its own GPUs: the workers' trials run side by side
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(groups[i])
                return subprocess.Popen(cmd, env=env)

            for i, g in enumerate(groups):
                if g is not None:
                    echo(f"worker{i}: GPU {','.join(g)}")

            procs.extend(spawn(i) for i in range(workers))
            lost = serve(tuner, procs, echo, spawn)
            if _too_many_failures(tuner.oracle):
                raise UserError(f"{t['max_failures']} trials in a row failed, so the search stopped "
                                f"(raise tune.max_failures, or narrow the space); see {sdir}")
        else:
            try:
                tuner.search()
            except StopSearch as e:  # the runner stopped on a signal after saving: exit as it says
                raise e.stopped from None
            except ChiefGone as e:
                _chief_gone(str(e))
            except Restart:
                args = [sys.executable, "-m", "suite", "tune", *(relaunch or [str(target)]), "--study", name]
                echo(f"{t['restart_every']} trials done in this process: restarting it to keep memory flat "
                     "(the study resumes)")
                sys.stdout.flush()
                sys.stderr.flush()
                os.execv(sys.executable, args)  # same pid: a chief still sees its worker
            except Exception as e:  # a RuntimeError here, a grpc.RpcError from the chief's oracle in a worker
                if me == "worker" and unreachable(e):  # the chief died during a call (before _watch_chief saw it)
                    _chief_gone(f"the chief oracle went away ({e.code().name})")
                if "consecutive failures" not in str(e):
                    raise
                raise UserError(f"{t['max_failures']} trials in a row failed, so the search stopped "
                                f"(raise tune.max_failures, or narrow the space); see {sdir}") from None
    finally:
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if me == "worker":
        return 0
    bad = [p.returncode for i, p in enumerate(procs) if p.returncode and i not in lost]
    if bad:
        echo(f"warning: {len(bad)} worker(s) exited with status {bad}; run the command again to finish")
    rc = tune_report.report(tuner.oracle, cfg, params, sdir, echo)
    unfinished = sorted(tr.trial_id for tr in tuner.oracle.ongoing_trials.values())
    if unfinished:
        echo(f"trial(s) {', '.join(unfinished)} did not finish: run the same command again to continue them")
    return EXIT_ERROR if unfinished or bad or lost else rc


def serve(tuner, procs, echo, spawn=None):
    """keras-tuner's chief: the oracle over gRPC until every worker was told to stop (or all workers exited).
    A worker that dies (kill -9, the OOM killer, a crash) is started again by spawn(i) under the same tuner id and
    gets its unfinished trial back (keras-tuner's create_trial returns `ongoing_trials[tuner_id]`); after
    MAX_RESTARTS deaths in a row without a finished trial, or one stop by SIGINT/SIGTERM, it is left dead (one
    line says so) and its trial waits for the next run of the command. Returns the indices of those workers."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    ip, port = os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"]
    servicer = oracle_chief.OracleServicer(tuner.oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if not server.add_insecure_port(f"{ip}:{port}"):
        raise UserError(f"cannot listen on {ip}:{port} for the tuner's workers; set KERASTUNER_ORACLE_PORT")
    server.start()
    echo(f"chief oracle on {ip}:{port}" + (f" · {len(procs)} worker(s)" if procs else ""))
    held = [None] * len(procs)  # the trial each worker had when it was (re)started
    strikes = [0] * len(procs)  # its deaths since it last finished a trial
    lost = []
    try:
        while True:
            time.sleep(0.2)
            if servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle):
                break
            codes = [p.poll() for p in procs]
            for i, (p, rc) in enumerate(zip(procs, codes)):
                if rc in (None, 0) or i in lost:
                    continue
                wid = f"worker{i}"
                trial = _ongoing(tuner.oracle, wid)
                strikes[i] = 1 if trial != held[i] else strikes[i] + 1
                where = f"in trial {trial}" if trial else "before it had a trial"
                if _too_many_failures(tuner.oracle):
                    why = "stopped: tune.max_failures trials in a row failed"
                elif rc in STOP_SIGNALS:
                    why = f"was stopped on a signal (exit status {rc})"
                elif strikes[i] > MAX_RESTARTS or spawn is None:
                    why = f"died {strikes[i]} time(s) in a row {where} (last exit status {rc})"
                else:
                    echo(f"{wid} (pid {p.pid}) died {where} (exit status {rc}): starting it again"
                         + ("; it continues that trial" if trial else ""))
                    held[i] = trial
                    procs[i] = spawn(i)
                    continue
                echo(f"{wid} {why}: not starting it again")
                lost.append(i)
            if procs and all(rc == 0 or i in lost for i, rc in enumerate(codes)):
                break  # every worker ended (or was given up) without the oracle's stop: e.g. a bare chief
    finally:
        server.stop(grace=2)
    return lost


def _ongoing(oracle, tuner_id):
    """The id of the trial the oracle has handed `tuner_id` and not seen end, or None."""
    from keras_tuner.src.engine.oracle import synchronized

    @synchronized
    def get(oracle):
        trial = oracle.ongoing_trials.get(tuner_id)
        return trial.trial_id if trial else None

    return get(oracle)


def _too_many_failures(oracle):
    """Whether keras-tuner's max_consecutive_failed_trials was reached (its end_trial then raises in the chief,
    which a worker sees as a gRPC error)."""
    try:
        oracle._check_consecutive_failures()
    except RuntimeError:
        return True
    return False


_GONE = threading.Lock()


def _chief_gone(why):
    """One line, then this worker process ends (once, whichever thread sees it first)."""
    _GONE.acquire()
    me = os.environ.get("KERASTUNER_TUNER_ID", "worker")
    print(f"{me}: {why}; this worker stops (run the chief's command again to resume the study)",
          file=sys.stderr, flush=True)
    os._exit(EXIT_ERROR)


def _watch_chief():
    """In a worker: stop this process when the chief is gone, instead of blocking in keras-tuner's next gRPC call
    (up to an hour) or training on for an oracle that will never record the trial. Started by `--workers`
    (SUITE_TUNE_CHIEF_PID): on Linux the kernel kills it with its chief (PR_SET_PDEATHSIG), elsewhere it stops
    within half a second of its parent process changing; started by hand: once the oracle's address has not
    answered for about a minute after it once did. The trial in hand continues from its last commit when the
    chief's command runs again (a kill is no worse than the kill -9 every run survives)."""
    def by_pid(pid):
        while os.getppid() == pid:
            time.sleep(0.5)
        _chief_gone(f"its chief (pid {pid}) is gone")

    def by_address(addr, every=10, misses=6):
        import grpc

        seen, missed = False, 0
        while True:
            channel = grpc.insecure_channel(addr)
            try:
                grpc.channel_ready_future(channel).result(timeout=every)  # a miss takes `every` seconds
                seen, missed = True, 0
            except grpc.FutureTimeoutError:
                missed += 1
            finally:
                channel.close()
            if seen and missed >= misses:
                _chief_gone(f"the chief oracle at {addr} has not answered for {every * misses} s")
            if not missed:
                time.sleep(every)

    pid = os.environ.get(CHIEF_PID)
    if pid:
        distribute.die_with_parent()
        target, args = by_pid, (int(pid),)
    else:
        target, args = by_address, (f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}",)
    threading.Thread(target=target, args=args, daemon=True, name="suite-watch-chief").start()
