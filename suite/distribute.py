"""One training run on several devices and hosts, with the engines Keras ships (no hand-written all-reduce).

- JAX backend: `keras.distribution.DataParallel` over every device of every process; several processes (hosts)
  join through `keras.distribution.initialize` (JAX's distributed runtime: coordinator, processes, process id).
- TensorFlow backend: `tf.distribute.MirroredStrategy` over the local GPUs (or the logical CPUs of
  SUITE_CPU_DEVICES). Several processes are refused: Keras 3's `fit` under MultiWorkerMirroredStrategy fails
  (keras-team/keras#20585; checked here on TF 2.21 / Keras 3.15 with two processes on 127.0.0.1: "ValueError:
  Attempt to convert a value (PerReplica:{...}) with an unsupported type").

`train.batch_size` is the global batch: each of the D devices takes batch/D of it (the learning rate is not
rescaled). Every process loads the same data and builds the same seeded stream; each keeps its own slice of every
global batch (`local_part`), so the examples of global batch b are the same ones on 1 device or on 8.
Under JAX every batch must divide by the device count, so the training stream drops its last partial batch
(recorded in results.json); validation and test run on each process's own copy of the weights on one device
(callbacks.Validate): exact metrics for any number of examples, and no cross-process work the chief waits on.

One process, the chief (process 0), writes the run directory: config, TensorBoard, checkpoints, backups,
results.json. The others read the chief's backup to resume, so every host must see the log directory at the same
path (a shared filesystem); they check it and the run stops with one line if one cannot.
"""

import contextlib
import json
import os
import re
import sys

from .errors import UserError, one_line

TF_MULTI = ("several processes need the JAX backend (KERAS_BACKEND=jax): Keras 3's fit fails under TensorFlow's "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585); on one host, --distribute data_parallel uses "
            "every local GPU")
ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")

_joined = None  # the cluster this process joined ({coordinator, processes, process_id}); once per process


def cluster(coordinator=None, num_processes=None, process_id=None):
    """The cluster this process is to join, from the flags or else Keras' environment variables; None for one
    process. A mistake is one line naming the flag."""
    env = [os.environ.get(k) for k in ENV]
    coordinator = coordinator if coordinator is not None else env[0]
    given = [num_processes, process_id]
    for i, name in enumerate(ENV[1:]):
        if given[i] is None and env[i + 1] not in (None, ""):
            try:
                given[i] = int(env[i + 1])
            except ValueError:
                raise UserError(f"{name}={env[i + 1]!r} is not a whole number") from None
    n, pid = given
    if coordinator is None and n is None and pid is None:
        return None
    if n is None or n < 1:
        raise UserError("a run over several processes needs --num-processes N (N ≥ 1) on every process")
    if n == 1 and coordinator is None:
        return None
    if coordinator is None:
        raise UserError(f"a run over {n} processes needs --coordinator HOST:PORT, the address of process 0 "
                        "(the same on every process)")
    if not re.fullmatch(r"[^\s:,]+:\d{1,5}", coordinator.split(",")[0]):
        raise UserError(f"--coordinator {coordinator!r} must be HOST:PORT, the address of process 0 "
                        "(the same on every process), e.g. --coordinator 10.0.0.1:1234")
    if pid is None:
        raise UserError(f"a run over {n} processes needs --process-id I (0 … {n - 1}) on every process")
    if not 0 <= pid < n:
        raise UserError(f"--process-id {pid} must be 0 … {n - 1} (0 on the host given as --coordinator)")
    return {"coordinator": coordinator.split(",")[0], "processes": n, "process_id": pid}


def initialize(c=None):
    """Before anything touches a device: split the CPU into SUITE_CPU_DEVICES logical devices (to try data
    parallelism without accelerators) and join the cluster `c` (cluster()'s). Idempotent."""
    global _joined
    import keras

    backend = keras.backend.backend()
    split_cpu()
    if c is None or c["processes"] == 1:
        return
    if _joined is not None:
        if _joined != c:
            raise UserError("this process already joined another cluster; start a new process")
        return
    if backend != "jax":
        raise UserError(TF_MULTI)
    try:
        keras.distribution.initialize(c["coordinator"], c["processes"], c["process_id"])
    except Exception as e:  # JAX's own error (unreachable coordinator, timeout): one line, the fix
        raise UserError(f"cannot join the cluster at {c['coordinator']} as process {c['process_id']} of "
                        f"{c['processes']} ({one_line(e, kind=False)}); start the same command on every "
                        "host with its own --process-id, process 0 on the coordinator's host") from None
    _joined = dict(c)


def split_cpu():
    """SUITE_CPU_DEVICES=N: the CPU as N devices of the Keras backend (JAX: XLA's host platform device count;
    TensorFlow: logical devices), to try data parallelism on a machine without accelerators."""
    import keras

    split = os.environ.get("SUITE_CPU_DEVICES", "")
    if not split:
        return
    if not split.isdigit() or int(split) < 1:
        raise UserError(f"SUITE_CPU_DEVICES={split!r} must be a whole number of CPU devices (e.g. 2)")
    backend, n = keras.backend.backend(), int(split)
    if backend == "jax":  # read when JAX starts its CPU backend
        flag = f"--xla_force_host_platform_device_count={n}"
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
        return
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            if len(tf.config.get_logical_device_configuration(cpu) or []) != n:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:
            raise UserError("SUITE_CPU_DEVICES must be set before TensorFlow starts; set it in the environment of "
                            "a new process") from None


class Plan:
    """How this process trains: mode "none" (one device, as always) or "data_parallel" over `devices`."""

    def __init__(self, mode, backend, devices, kind, processes=1, process_id=0, engine=None):
        self.mode, self.backend, self.devices, self.kind = mode, backend, devices, kind
        self.processes, self.process_id, self.engine = processes, process_id, engine
        self._saved = None

    @property
    def parallel(self):
        return self.mode == "data_parallel"

    @property
    def chief(self):
        return self.process_id == 0

    @property
    def replicas(self):
        return len(self.devices) if self.parallel else 1

    @property
    def drop_remainder(self):
        """JAX shards each batch evenly over the devices: the stream's last, partial batch cannot be."""
        return self.parallel and self.backend == "jax"

    @property
    def strategy(self):
        if not self.parallel:
            return "none"
        return "keras.distribution.DataParallel" if self.backend == "jax" else "tf.distribute.MirroredStrategy"

    def settle(self, eff, t):
        """hardware.effective's settings, with what the engine cannot run changed or refused: Keras 3's fit under
        MirroredStrategy fails with several steps per call ("You must feed a value for placeholder tensor",
        keras-team/keras#19246, open; seen here on TF 2.21 / Keras 3.15), so "auto" is 1 there."""
        if self.parallel and self.backend == "tensorflow" and eff["steps_per_execution"] > 1:
            if t["steps_per_execution"] != "auto":
                raise UserError(f"train.steps_per_execution {t['steps_per_execution']} does not work with "
                                "TensorFlow's MirroredStrategy in Keras 3 (keras-team/keras#19246): use 1 or \"auto\", "
                                "or the JAX backend (KERAS_BACKEND=jax)")
            eff = {**eff, "steps_per_execution": 1}
        return eff

    def activate(self):
        """JAX: the distribution every variable, batch and compiled step of this run is laid out by."""
        if self.parallel and self.backend == "jax":
            from keras.src.distribution import distribution_lib

            self._saved = distribution_lib.distribution()
            distribution_lib.set_distribution(self.engine)

    def deactivate(self):
        if self.parallel and self.backend == "jax":
            from keras.src.distribution import distribution_lib

            distribution_lib.set_distribution(self._saved)

    def scope(self):
        """Where the trained model is built and compiled (TensorFlow: the strategy's scope)."""
        if self.parallel and self.backend == "tensorflow":
            return self.engine.scope()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def local(self):
        """Work of this process alone (the chief's saves, the evaluation copy): under JAX, creating a variable
        inside the distribution is a step every process must take together, so none is active here."""
        if not (self.parallel and self.backend == "jax"):
            yield
            return
        from keras.src.distribution import distribution_lib

        saved = distribution_lib.distribution()
        distribution_lib.set_distribution(None)
        try:
            yield
        finally:
            distribution_lib.set_distribution(saved)

    def local_part(self, ds):
        """This process's slice of every global batch (contiguous: process p takes rows p·B/P … (p+1)·B/P)."""
        if self.processes == 1:
            return ds
        import tensorflow as tf

        p, n = self.process_id, self.processes

        def part(*batch):
            def cut(t):
                size = tf.shape(t)[0] // n
                return t[p * size:(p + 1) * size]
            out = tf.nest.map_structure(cut, batch)
            return out if len(out) > 1 else out[0]

        return ds.map(part)

    def share(self, obj):
        """The chief's `obj` (JSON-able) on every process; every process calls it at the same point."""
        if self.processes == 1:
            return obj
        import numpy as np
        from jax.experimental import multihost_utils as mu

        data = json.dumps(obj, default=str).encode() if self.chief else b""
        n = int(mu.broadcast_one_to_all(np.int32(len(data))))
        buf = np.frombuffer(data, np.uint8) if self.chief else np.zeros(n, np.uint8)
        return json.loads(bytes(np.asarray(mu.broadcast_one_to_all(buf))).decode())

    def agree(self, ok):
        """Whether `ok` holds on every process (every process calls it at the same point)."""
        if self.processes == 1:
            return bool(ok)
        import numpy as np
        from jax.experimental import multihost_utils as mu

        return bool(np.all(np.asarray(mu.process_allgather(np.int32(bool(ok))))))

    def record(self, batch_size, examples):
        """How the run trained, for results.json."""
        return {"strategy": self.strategy, "backend": self.backend, "devices": list(self.devices),
                "device_count": len(self.devices), "device_kind": self.kind, "processes": self.processes,
                "global_batch": batch_size, "per_device_batch": batch_size // self.replicas,
                "partial_batch": "dropped" if self.drop_remainder else "kept",
                # training examples each epoch leaves out (the shuffle makes them others every epoch)
                "dropped_per_epoch": examples % batch_size if self.drop_remainder else 0}


def plan(cfg):
    """The Plan for cfg's train.distribute on this machine (after initialize). Checked before anything is
    written: a batch that does not divide over the devices, a mode the backend cannot run, are one line."""
    import keras

    backend = keras.backend.backend()
    mode = cfg["train"].get("distribute", "auto")
    processes, pid = (_joined["processes"], _joined["process_id"]) if _joined else (1, 0)
    if processes > 1:  # (train.distribute none was refused before joining: runner.run)
        mode = "data_parallel"
    if backend == "jax":
        import jax

        devs = jax.devices()  # every process's (global) devices
        kind = devs[0].platform
        names = [f"{d.platform}:{d.id}" for d in devs]
    elif backend == "tensorflow":
        import tensorflow as tf

        devs = tf.config.list_logical_devices("GPU")
        kind = "gpu" if devs else "cpu"
        devs = devs or tf.config.list_logical_devices("CPU")
        names = [d.name for d in devs]
    else:
        if mode == "data_parallel":
            raise UserError(f"--distribute data_parallel needs the JAX or TensorFlow backend, not {backend}")
        return Plan("none", backend, ["default"], "?")
    if mode == "auto":  # every local accelerator when there is more than one; CPUs are not split by default
        mode = "data_parallel" if kind in ("gpu", "tpu") and len(devs) > 1 else "none"
    if mode == "none":
        return Plan("none", backend, names[:1], kind)
    batch = cfg["train"]["batch_size"]
    if batch % len(devs):
        lo, hi = batch - batch % len(devs), batch + len(devs) - batch % len(devs)
        raise UserError(f"train.batch_size {batch} is the global batch and must divide over the {len(devs)} devices: "
                        f"use {lo or hi} or {hi} (--batch-size), or --distribute none")
    if backend == "jax":
        engine = keras.distribution.DataParallel(devices=names, auto_shard_dataset=False)  # Plan.local_part shards
    else:
        import tensorflow as tf

        engine = tf.distribute.MirroredStrategy(devices=names)
    return Plan("data_parallel", backend, names, kind, processes, pid, engine)


def visible_gpus():
    """The GPU ids this process may hand out (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`), without starting JAX or
    TensorFlow on them: a search's chief only serves its oracle and must not hold GPU memory."""
    import subprocess

    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def device_groups(workers, per_trial, gpus=None):
    """The GPUs each of `workers` processes of a search or study trains on (a list per worker, for its
    CUDA_VISIBLE_DEVICES), or None per worker to leave them all visible. per_trial K: disjoint groups of K, so the
    workers run their trials side by side, each on its own K devices (data parallel within a trial when K > 1:
    train.distribute auto). None: an even share when there are at least as many GPUs as workers, else no pinning.
    gpus: default visible_gpus(). Checked before anything is written."""
    if not workers:
        if per_trial is not None:
            raise UserError("--devices-per-trial shares the GPUs between --workers N processes (one trial each at a "
                            "time); without --workers every trial uses all devices (train.distribute)")
        return []
    gpus = visible_gpus() if gpus is None else gpus
    if per_trial is None:
        if not gpus or len(gpus) < workers:
            return [None] * workers
        per_trial = len(gpus) // workers
    if per_trial < 1:
        raise UserError(f"--devices-per-trial {per_trial} must be at least 1")
    if not gpus:
        raise UserError("--devices-per-trial hands GPUs to the workers, and none is visible (CUDA_VISIBLE_DEVICES, "
                        "nvidia-smi); without it every worker trains on this machine's CPU")
    if per_trial * workers > len(gpus):
        raise UserError(f"--workers {workers} × --devices-per-trial {per_trial} needs {per_trial * workers} GPUs, "
                        f"{len(gpus)} are visible: use --workers {max(1, len(gpus) // per_trial)} or fewer devices "
                        "per trial")
    return [gpus[i * per_trial:(i + 1) * per_trial] for i in range(workers)]


def die_with_parent():
    """Linux: the kernel sends this process SIGKILL when the thread that started it (a search's chief, a study's
    parent) ends, so not even half a second of a trial runs on for a dead parent. Kept across an execv."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # (a search worker also watches its chief: tune/search.py)
