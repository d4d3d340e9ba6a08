"""`python -m suite tune`: one study from the command line: as one process, as keras-tuner's chief (the oracle
over gRPC, with `--workers N` local worker processes), or as a worker (KERASTUNER_* variables set)."""

import os
import pathlib
import socket
import subprocess
import sys
import time

from .. import config as config_mod
from .. import runner
from ..errors import UserError
from . import space as tune
from ..runner import read_json
from .tuner import RECORD, Restart, SuiteTuner, _write_json, make_oracle


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


def search(target, overrides=(), extra=None, *, workers=0, fresh=False, study=None, relaunch=None, echo=print):
    """Run (or continue) a study; returns the CLI exit status. relaunch: the `suite tune` arguments a worker
    process is started with (--study is added)."""
    from . import report as tune_report

    cfg = config_mod.resolve(target, overrides, extra)
    params = tune.space(cfg)
    _quiet_retracing()
    if not params:
        raise UserError("nothing to tune: every search-space list in [tune] is empty; e.g. --set tune.lr=[1e-4,0.1]")
    t = cfg["tune"]
    digest = study_hash(cfg)
    name = study or f"{t['tuner']}-{digest}"
    root = pathlib.Path(cfg["log"]["dir"]) / cfg["experiment"]["name"]
    sdir = root / f"tune-{name}"
    if workers and role() != "local":
        raise UserError("--workers starts its own chief and workers; unset KERASTUNER_* to use it")
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
    procs = []
    try:
        if workers:
            os.environ.update(KERASTUNER_TUNER_ID="chief", KERASTUNER_ORACLE_IP="127.0.0.1",
                              KERASTUNER_ORACLE_PORT=str(free_port()))
        tuner = SuiteTuner(make_oracle(cfg, params), base=cfg, params=params, directory=str(root),
                           project_name=f"tune-{name}", echo=echo)
        tuner.save()  # before the first trial: a kill in trial 0 must resume, not start over
        if me == "chief":
            for i in range(workers):
                env = {**os.environ, "KERASTUNER_TUNER_ID": f"worker{i}"}
                cmd = [sys.executable, "-m", "suite", "tune", *(relaunch or [str(target)]), "--study", name]
                procs.append(subprocess.Popen(cmd, env=env))
            serve(tuner, procs, echo)
        else:
            try:
                tuner.search()
            except Restart:
                args = [sys.executable, "-m", "suite", "tune", *(relaunch or [str(target)]), "--study", name]
                echo(f"{t['restart_every']} trials done in this process: restarting it to keep memory flat "
                     "(the study resumes)")
                sys.stdout.flush()
                sys.stderr.flush()
                os.execv(sys.executable, args)  # same pid: a chief still sees its worker
            except RuntimeError as e:
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
    bad = [p.returncode for p in procs if p.returncode]
    if bad:
        echo(f"warning: {len(bad)} worker(s) exited with status {bad}; run the command again to finish")
    return tune_report.report(tuner.oracle, cfg, params, sdir, echo)


def _quiet_retracing():
    """Every trial builds a new model, so TensorFlow's "N calls triggered tf.function retracing" warning is
    expected here and says nothing: hide that one message."""
    import logging

    import tensorflow as tf

    logger = tf.get_logger()
    if not any(getattr(f, "suite_tune", False) for f in logger.filters):
        f = logging.Filter()
        f.filter = lambda record: "tf.function retracing" not in record.getMessage()
        f.suite_tune = True
        logger.addFilter(f)


def serve(tuner, procs, echo):
    """keras-tuner's chief: the oracle over gRPC until every worker was told to stop (or all workers exited)."""
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
    try:
        while True:
            time.sleep(0.2)
            if servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle):
                break
            if procs and all(p.poll() is not None for p in procs):
                break
    finally:
        server.stop(grace=2)
