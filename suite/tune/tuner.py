"""A tuning study: the keras-tuner Tuner that trains each trial through suite.runner, and resuming.

Resuming. keras-tuner reloads a project from oracle.json + trial_*/trial.json, and puts trials that were running
when the process died back in its retry queue. What we add, because its own reload has holes:
- state files are written atomically (a kill mid-write left half a JSON file that no reload could read);
- the tuner file is written before the first trial (else a kill in trial 0 started the study over);
- a trial whose trial.json says RUNNING but that oracle.json never recorded is queued again, not lost;
- GridSearchOracle keeps its position in memory only (`_populate_next`, not saved), so a reloaded grid
  search stopped at once: GridOracle below derives the next combination from the saved set of tried ones;
- a trial that finished (tune.json written) but whose end the oracle never saved is not trained again;
- the oracle is saved again after a trial ends (keras-tuner saves it before it takes the trial off its ongoing
  ones; as a chief nothing saved it after, so oracle.json still listed the last trial as running); a kill between
  the two saves leaves it listed as ended and running, and reload does not retry it;
- an interrupted trial continues from its last completed epoch (the runner's BackupAndRestore);
- one process at a time works on a trial (`_one_at_a_time`): a second one waits, then finds it done or resumes it.
Distributed: `--workers N` makes this process keras-tuner's chief (the oracle, served over gRPC on 127.0.0.1)
and starts N worker processes (`KERASTUNER_TUNER_ID=workerI`); across hosts set the variables by hand (README).
What happens when one of them dies: suite/tune/search.py.
"""

import contextlib
import gc
import json
import os
import pathlib
import time

import keras
import keras_tuner as kt
from keras_tuner.src.engine.oracle import synchronized

from .. import runner
from ..runner import read_json
from ..errors import Stopped, UserError
from . import space as tune

RECORD = "tune.json"  # per trial: what the search learnt from it, written last
WARM = "final_weights.npz"  # hyperband: a trial's last weights, the start of the trial it is promoted to
EVENTS = "events.jsonl"  # per study: one line per trial start / end (which process, which trial)
LOCK = ".tune.lock"  # per trial: held by the process working on it


def _write_json(path, obj):
    runner.write_json(path, json.loads(json.dumps(obj, default=str)))


class _Atomic:
    """Mixin for keras-tuner oracles: atomic state files, and no trial lost between trial.json and oracle.json."""

    def save(self):
        _write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    @synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        self.save()  # keras-tuner saved before it took the trial off ongoing_trials: a chief never saved that

    def reload(self):
        super().reload()  # ongoing trials → retry queue
        # A chief killed inside end_trial, after keras-tuner's save and before ours, left the trial in end_order
        # and in ongoing_trials: it ended, so it is not retried (which ended it a second time)
        ended = set(self.end_order)
        self._retry_queue = [tid for tid in self._retry_queue if tid not in ended]
        queued = set(self._retry_queue)
        for tid, trial in sorted(self.trials.items()):
            if trial.status == kt.engine.trial.TrialStatus.RUNNING and tid not in queued:
                self._retry_queue.append(tid)
                if tid not in self.start_order:
                    self.start_order.append(tid)


class RandomOracle(_Atomic, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(_Atomic, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_Atomic, kt.oracles.HyperbandOracle):
    pass


class GridOracle(_Atomic, kt.Oracle):
    """Every combination in order (last knob fastest); the next one is the first not yet tried, so the
    position survives a restart (it is the saved set of tried values)."""

    def populate_space(self, trial_id):
        import itertools

        hps = self.get_space().space
        lists = [list(h.values) if hasattr(h, "values") else [h.value] for h in hps]
        for combo in itertools.product(*lists):
            values = {h.name: v for h, v in zip(hps, combo)}
            if not self._duplicate(values):
                return {"status": "RUNNING", "values": values}
        return {"status": "IDLE" if self.ongoing_trials else "STOPPED"}


class _TrialCallback(keras.callbacks.Callback):
    """Hyperband: start from the parent trial's weights; save this trial's weights for its children."""

    def __init__(self, warm_from=None, save_to=None):
        super().__init__()
        self.warm_from, self.save_to = warm_from, save_to

    def on_train_begin(self, logs=None):  # before BackupAndRestore, which overrides it when resuming
        if self.warm_from:
            import numpy as np

            with np.load(self.warm_from) as f:
                self.model.set_weights([f[f"w{i}"] for i in range(len(f.files))])

    def on_train_end(self, logs=None):  # the layers' weights only: the child starts a fresh optimizer
        if self.save_to:
            import numpy as np

            tmp = self.save_to.with_name(f"tmp.{os.getpid()}.{self.save_to.name}")
            with open(tmp, "wb") as f:
                np.savez(f, **{f"w{i}": w for i, w in enumerate(self.model.get_weights())})
            os.replace(tmp, self.save_to)


def make_oracle(cfg, params):
    """The keras-tuner oracle named by tune.tuner, its state files written atomically."""
    import keras_tuner as kt

    t = cfg["tune"]
    objective = kt.Objective(t["objective"], tune.OBJECTIVES[t["objective"]])
    common = dict(objective=objective, seed=t["seed"] + 1,  # keras-tuner reads seed 0 as "pick one at random"
                  hyperparameters=tune.hyperparameters(params, grid=t["tuner"] == "grid"),
                  allow_new_entries=False, tune_new_entries=False,
                  max_consecutive_failed_trials=t["max_failures"])
    max_trials = t["max_trials"] or None
    if t["tuner"] == "hyperband":
        return HyperbandOracle(max_epochs=t["epochs"], factor=t["factor"],
                                          hyperband_iterations=t["hyperband_iterations"], **common)
    if t["tuner"] == "grid":
        return GridOracle(max_trials=max_trials, **common)
    if t["tuner"] == "bayesian":
        return BayesianOracle(max_trials=max_trials or 10, **common)
    return RandomOracle(max_trials=max_trials or 10, **common)


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


class Restart(Exception):
    """Raised after `tune.restart_every` trials: the command re-executes itself and resumes the study.
    Each trial leaves ~5 MB behind in TensorFlow even after keras.backend.clear_session() (tf.cond branch
    functions of the metric updates; keras-team/keras#17458), so memory is kept flat by starting the process
    afresh, which the study's resume makes free of loss."""


class StopSearch(kt.errors.FatalError):
    """The runner stopped a trial on SIGINT/SIGTERM after saving it (suite.errors.Stopped). keras-tuner counts any
    other exception as a failed trial and goes on with the next one; a FatalError ends the search instead."""

    def __init__(self, stopped):
        super().__init__(str(stopped))
        self.stopped = stopped


class ChiefGone(kt.errors.FatalError):
    """A worker's call to the chief's oracle failed because the chief is unreachable. keras-tuner would print the
    traceback and record the trial as failed (INVALID, then FAILED with no retries left); the worker stops instead
    and the trial continues when the chief's command runs again."""


def unreachable(e):
    """A gRPC error saying the chief cannot be reached (it died during the call, or never came back)."""
    import grpc

    return isinstance(e, grpc.RpcError) and hasattr(e, "code") and e.code() in (
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@contextlib.contextmanager
def _one_at_a_time(tdir, tid, echo):
    """Hold the trial's lock (flock: the OS lets go of it when the process dies, kill -9 included). Another process
    still in the trial — e.g. a worker of a chief that was killed, before it noticed — is waited for, so the trial
    is never trained by two processes at once (the runner's own lock would fail the second one instead)."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        yield
        return
    tdir.mkdir(parents=True, exist_ok=True)
    with open(tdir / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            echo(f"trial {tid}: another process is still working in {tdir}; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


class SuiteTuner(kt.Tuner):
    """Runs each trial with suite.runner.run in logs/<experiment>/tune-<study>/trial_<id>/."""

    def __init__(self, oracle, *, base, params, directory, project_name, echo=print):
        self.base, self.params, self.echo = base, params, echo
        self.trials_here = 0  # trials ended in this process (see Restart)
        super().__init__(oracle=oracle, directory=directory, project_name=project_name, overwrite=False)
        if not self._is_worker():
            self.oracle.verbose = 0  # keras-tuner's tables: we print one line per trial instead
        create = self.oracle.create_trial

        def create_trial(tuner_id):  # keras-tuner asks again at once when told IDLE: don't spin
            trial = create(tuner_id)
            if trial.status == kt.engine.trial.TrialStatus.IDLE:
                time.sleep(0.5)
            return trial

        self.oracle.create_trial = create_trial

    def _run_and_update_trial(self, trial, *args, **kwargs):
        """run_trial, then keras-tuner's calls to the oracle; that the chief is gone is not the trial's fault."""
        try:
            return super()._run_and_update_trial(trial, *args, **kwargs)
        except Exception as e:
            if self._is_worker() and unreachable(e):
                raise ChiefGone(f"the chief oracle went away ({e.code().name})") from None
            raise

    def on_trial_end(self, trial):
        super().on_trial_end(trial)  # the oracle records the trial and the state is saved first
        self.trials_here += 1
        every = self.base["tune"]["restart_every"]
        if every and self.trials_here >= every:
            raise Restart()

    def _get_tuner_fname(self):  # one name for local and chief runs, so either can resume the other
        name = f"{self.tuner_id}.json" if self._is_worker() else "tuner.json"
        return os.path.join(self.project_dir, name)

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _write_json(self._get_tuner_fname(), self.get_state())

    def event(self, **kw):
        line = json.dumps({"time": round(time.time(), 3), "pid": os.getpid(), "tuner": self.tuner_id, **kw})
        with open(os.path.join(self.project_dir, EVENTS), "a") as f:
            f.write(line + "\n")

    def run_trial(self, trial, *args, **kwargs):
        t = self.base["tune"]
        hp = dict(trial.hyperparameters.values)
        tid = trial.trial_id
        tdir = pathlib.Path(self.get_trial_dir(tid))
        epochs = int(hp.get("tuner/epochs", t["epochs"]))
        initial = int(hp.get("tuner/initial_epoch", 0))
        parent = hp.get("tuner/trial_id")
        warm = tdir.parent / f"trial_{parent}" / WARM if parent and initial else None
        if warm is not None and not warm.is_file():
            warm = None  # e.g. the parent ran on another host: train the whole budget from scratch
        cfg = tune.trial_config(self.base, self.params, hp, epochs - initial if warm else epochs)
        cfg["log"]["checkpoints"] = t["checkpoints"]
        plain = json.loads(json.dumps(cfg, default=str))

        with _one_at_a_time(tdir, tid, self.echo):
            rec = read_json(tdir / RECORD)
            if not (rec and rec.get("config") == plain):
                rec = self._train(tid, tdir, cfg, plain, hp, epochs, initial, warm)
        if rec["status"] != "complete":
            raise kt.errors.FailedTrialError(f"trial {tid} {rec['status']}: {rec['reason']}")
        return {t["objective"]: rec["objective"]}

    def _train(self, tid, tdir, cfg, plain, hp, epochs, initial, warm):
        t = self.base["tune"]
        if read_json(tdir / runner.CONFIG) not in (None, plain):  # left by another search in this directory
            import shutil

            shutil.rmtree(tdir / "backup", ignore_errors=True)
            (tdir / runner.RESULTS).unlink(missing_ok=True)
        keras.backend.clear_session()  # memory stays flat across trials
        gc.collect()
        self.event(trial=tid, event="start")
        results, reason = None, ""
        if runner.status_of(tdir) != "incomplete" and read_json(tdir / runner.CONFIG) == plain:
            results = read_json(tdir / runner.RESULTS)  # trained before an interruption: not again
        else:
            save_to = tdir / WARM if t["tuner"] == "hyperband" else None
            cbs = [_TrialCallback(warm, save_to)]  # any callback also tells the runner not to write its HParams
            try:
                results = runner.run(cfg, run_dir=tdir, callbacks=cbs,
                                     echo=lambda s: self.echo(s) if s.startswith(("resuming", "restarting")) else None)
            except UserError as e:
                reason = str(e)
            except Stopped as e:  # not a failed trial: it continues when the search runs again
                raise StopSearch(e) from None
        value = tune.objective_value(results, t["objective"]) if results else None
        if results is None:
            status = "failed"
        elif results["status"] == "diverged":
            status, w = "diverged", results["diverged_at"]
            reason = f"loss {w['loss']} at epoch {w['epoch']} batch {w['batch']}"
        elif results["status"] != "complete":
            status, reason = "failed", str(results.get("error") or results["status"])
        elif value is None:
            status, reason = "failed", f"no finite {t['objective']} in the history"
        else:
            status = "complete"
        test = (results or {}).get("test") or {}
        rec = {
            "trial": tid, "status": status, "reason": reason,
            "values": {p.name: hp[p.name] for p in self.params if p.name in hp},
            "epochs": epochs, "warm_start_from": hp.get("tuner/trial_id") if warm else None,
            "initial_epoch": initial if warm else 0,
            "objective_name": t["objective"], "objective": value,
            "test_accuracy": test.get("accuracy"),
            "wall_time_s": (results or {}).get("wall_time_s"),
            "tuner": self.tuner_id, "rss_mb": rss_mb(), "config": plain,
        }
        self._hparams(tdir, rec)
        _write_json(tdir / RECORD, rec)
        self.event(trial=tid, event="end", status=status)
        self.echo(trial_line(rec, self.params))
        return rec

    def _hparams(self, tdir, rec):
        from .. import tblog

        hps = {**rec["values"], "epochs": rec["epochs"]}
        metrics = {f"tune/{rec['objective_name']}": rec["objective"], "test_accuracy": rec["test_accuracy"],
                   "failed": float(rec["status"] != "complete")}
        tblog.write_hparams(tdir, hps, metrics, trial_id=f"trial_{rec['trial']}")


def trial_line(rec, params):
    head = f"trial {rec['trial']} · {tune.format_values(rec['values'], params)} · {rec['epochs']} epochs"
    if rec.get("warm_start_from"):
        head += f" (from trial {rec['warm_start_from']})"
    if rec["status"] != "complete":
        return f"{head} · {rec['status'].upper()}: {rec['reason']}"
    wall = f" · {rec['wall_time_s']:.1f} s" if rec.get("wall_time_s") is not None else ""
    return f"{head} · {rec['objective_name']} {rec['objective']:.4f}{wall}"
