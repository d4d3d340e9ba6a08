"""What the run trains on, and the settings that follow from it when the config says "auto".

The accelerator is asked of the Keras backend in use (JAX: `jax.devices()`; TensorFlow: its physical GPUs), so
the suite on the lent GPU machine (Keras on JAX, TensorFlow-CPU only for tf.data) sees the GPU, not TF's CPU.

Why these defaults on a GPU/TPU (CIFAR ResNet-20 on an H100, ../shared/device/README.md):
- mixed_bfloat16 where the chip has bf16 (compute capability ≥ 8.0: A100, H100, …; every TPU);
- several training steps per call (`steps_per_execution`, also on a CPU: see STEPS_PER_CALL), so Keras'
  per-step Python work (callbacks, logs, and the wait for the device that reading the logs means) is paid once
  per call. (Keras 3.15 can also run batch callbacks off the training thread when all are "async_safe"; with
  the run's callbacks on JAX that read metric buffers the next step had already donated, so the suite does not.)
- augmentation on the device, fed uint8 batches (suite/augment.py): a per-image tf.data map fed ResNet-20
  only ~43k of the ~108k img/s the model could train.
On a CPU: float32, 8 steps per call, augmentation in tf.data (measured faster there than on the "device"),
tf.data's autotuner off (AUTOTUNE below).
"""

import functools
import os
import platform

# Training steps per compiled call ("auto"): Keras' per-step Python and callback work is paid once per call.
# CPU: LeNet-5 on MNIST, 2 cores: `suite bench` gave the model step alone 13.8k img/s at 1 and 17.7k at 8 (two
# runs on the same idle machine), and 8 brought the whole run level with plain Keras. GPU/TPU: a step of the
# notes' small networks lasts a few milliseconds or less (ResNet-20 at batch 128 on an H100: ~2.9 ms), so more
# steps share each call; `suite bench` on the GPU (benchmarks/gpu_session.sh) is to confirm 32.
STEPS_PER_CALL = {"cpu": 8, "gpu": 32, "tpu": 32}

# Least time between epoch-end commits ("auto"). An epoch-end commit (backup weights + optimizer slots, and best.keras
# when the monitored figure improved; suite/callbacks.py) is host work whose cost does not shrink with the epoch:
# measured on an H200 (2026-12-04), the work after the epoch's training took ~0.39 s an epoch for ResNet-20 (1.6 s
# epochs) and ~0.53 s for ResNet-9 (0.56 s epochs), a fifth to a half of the wall time. On a CPU an epoch of these
# networks takes minutes, so every epoch end commits, as before.
COMMIT_INTERVAL = {"cpu": "epoch", "gpu": "30s", "tpu": "30s"}

# data.autotune "auto": tf.data's autotuner on with a GPU/TPU (the host's cores feed the device), off on a CPU. On
# 2 cores its threads took CPU from the training: LeNet-5 on MNIST under model.fit (benchmarks/autotune_cost.py,
# 2026-12-04, 14 epochs per setting, interleaved): with it 6 epochs of 14 stalled ~1.5 s (mean 4.57 s an epoch),
# without it none (mean 3.66 s).
AUTOTUNE = {"cpu": False, "gpu": True, "tpu": True}


@functools.lru_cache(maxsize=None)
def _describe(backend):
    kind, name, count, bf16 = "cpu", _cpu_name(), 1, False
    if backend == "jax":
        import jax

        devs = jax.devices()
        if devs and devs[0].platform in ("gpu", "tpu"):
            d = devs[0]
            kind, name, count = d.platform, d.device_kind, len(devs)
            cc = getattr(d, "compute_capability", None)
            bf16 = kind == "tpu" or _cc_at_least(cc, 8)
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            kind, name, count = "gpu", details.get("device_name", "GPU"), len(gpus)
            bf16 = _cc_at_least(details.get("compute_capability"), 8)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            kind, name, count = "gpu", torch.cuda.get_device_name(0), torch.cuda.device_count()
            bf16 = torch.cuda.is_bf16_supported()
    return {"kind": kind, "name": name, "count": count, "bf16": bf16, "backend": backend}


def accelerator():
    """{'kind': 'cpu'|'gpu'|'tpu', 'name': 'NVIDIA H100 80GB HBM3', 'count', 'bf16', 'backend'}."""
    import keras

    return dict(_describe(keras.backend.backend()))


def _cc_at_least(cc, major):
    if cc is None:
        return False
    try:
        return int(str(cc[0] if isinstance(cc, (tuple, list)) else cc).split(".")[0]) >= major
    except ValueError:
        return False


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def effective(cfg, steps_per_epoch, device=None):
    """The settings a run uses, with every "auto" decided: {precision, jit_compile, steps_per_execution,
    augment_on, commit_interval, autotune}. jit_compile "auto" stays Keras' own choice (the compiled model reports
    it)."""
    device = device or accelerator()
    fast = device["kind"] in ("gpu", "tpu")
    t, d = cfg["train"], cfg["data"]
    precision = t["precision"]
    if precision == "auto":
        precision = "mixed_bfloat16" if device["bf16"] else "float32"
    spe = t["steps_per_execution"]
    if spe == "auto":
        spe = min(STEPS_PER_CALL.get(device["kind"], 1), max(1, steps_per_epoch))
    where = d["augment_on"]
    if where == "auto":
        where = "device" if fast else "host"
    every = cfg["log"].get("commit_interval", "auto")
    if every == "auto":
        every = COMMIT_INTERVAL.get(device["kind"], "epoch")
    tune = d.get("autotune", "auto")
    if tune == "auto":
        tune = AUTOTUNE.get(device["kind"], True)
    return {"precision": precision, "jit_compile": t["jit_compile"], "steps_per_execution": int(spe),
            "augment_on": where, "commit_interval": every, "autotune": tune}
