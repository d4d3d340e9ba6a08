"""`python -m suite bench <net-or-experiment>`: where the training time goes, measured side by side in one process.

Every figure is training throughput in images/s at steady state: the first epoch (tracing, compilation, cache
fill) is a warm-up, the figure is the median over the next `--epochs`, and one more epoch ends each row uncounted:
a run's last epoch end always commits (and writes a held best.keras), once a run like the compilation, while
with `log.commit_interval` the epoch ends before it mostly do not (in ResNet-20's run on an H200, 2026-12-04, a
commit took 0.3–0.97 s, another epoch end a median 0.02 s). Its extra time is reported beside the rows ("the run's
end"). Rows:
- the input pipeline alone, exactly as `run` builds it (suite.runner.datasets): with host augmentation, without
  augmentation, and the raw uint8 feed of device augmentation;
- the model's training step alone, on one batch held in memory (what the model could eat);
- end to end, through suite.runner.run itself (pipeline + step + the run's callbacks, checkpoints, TensorBoard),
  once with augmentation on the host and once on the device; and once more where the run puts augmentation, with
  one more callback that reads the step's figures at every batch end: then every batch end waits for the device,
  as all did before the run's progress bar and NaN check took them one call late (callbacks.BATCH_LOGS);
- plain Keras: the same network compiled the same way, `model.fit` on NumPy arrays, no callbacks;
- the run's pipeline and network (augmentation where the run puts it) under `model.fit` with no callbacks: what
  separates the end-to-end row from the model row, split into the feed's share and the callbacks' share;
- for ResNet-50 at 224² on a CUDA machine with PyTorch: torchvision's ResNet-50, channels-last, bf16 autocast,
  torch.compile (suite/bench_torch.py).
Validation and its recomputed BatchNorm statistics are off in every row (`data.val_split = 0`,
`eval.precise_bn = 0`) so all of them count the same work: training images.
"""

import contextlib
import copy
import os
import pathlib
import shutil
import statistics
import tempfile
import time

from . import pipeline, runner
from .errors import UserError


def timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of each epoch, begin to end, including the other callbacks' epoch-end work when it is
        the last callback. Epoch hooks only: Keras keeps dispatching batches asynchronously."""

        async_safe = True

        def __init__(self):
            super().__init__()
            self.begins, self.ends = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.begins.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

        def times(self):
            return [e - b for b, e in zip(self.begins, self.ends)]

        def rate(self, images):
            """Images/s at steady state: the median epoch between the first (warm-up) and the last (the run's
            end)."""
            times = self.times()[1:-1]
            return images / statistics.median(times) if times else float("nan")

    return EpochTimer()


def pipeline_rate(ds, passes):
    """Images/s of iterating a tf.data pipeline: one warm-up pass (cache fill), then the median pass."""
    times, n = [], 0
    for i in range(passes + 1):
        t, n = time.perf_counter(), 0
        for x, _ in ds:
            n += int(x.shape[0])
        times.append(time.perf_counter() - t)
    return n / statistics.median(times[1:])


def bench_config(cfg, steps, epochs, logdir):
    """The config every row trains: no validation split and no recomputed BatchNorm statistics (evaluation work,
    not training), `steps` batches per epoch, 1 + `epochs` + 1 epochs (warm-up, measured, the run's end)."""
    c = copy.deepcopy(cfg)
    c["data"]["val_split"] = 0.0
    c["eval"]["precise_bn"] = 0
    c["train"]["epochs"] = 1 + epochs + 1
    c["log"]["dir"] = str(logdir)
    c["train"]["distribute"] = "none"  # the rows compare one device's rates (several: `suite run --distribute`)
    if steps:
        c["data"]["limit"] = steps * c["train"]["batch_size"]
    return c


def reader():
    import keras

    class ReadsEachCall(keras.callbacks.Callback):
        """Reads the figures at every batch end (callbacks.Segments then gives them to all at once)."""

        def on_train_batch_end(self, batch, logs=None):
            pass

    return ReadsEachCall()


def run_unseen(cfg, **kw):
    """runner.run with its progress bar drawn as in a run (its work is part of the run's) but into /dev/null, not
    between the bench's rows."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return runner.run(cfg, fresh=True, echo=lambda *a: None, **kw)


def bench(cfg, *, steps=0, epochs=2, repeat=1, json_path=None, echo=print):
    import keras
    import numpy as np

    from .quiet import hide_retracing_warning

    hide_retracing_warning()  # every row builds its model anew

    if json_path:  # checked before minutes of measuring, not after
        folder = pathlib.Path(json_path).absolute().parent
        if not folder.is_dir():
            raise UserError(f"cannot write --json {json_path}: the folder {folder} does not exist; create it or "
                            "pick another path")
        runner.check_writable(folder, shown=json_path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="suite-bench-"))
    try:
        c = bench_config(cfg, steps, epochs, tmp)
        parts = runner.prepare(c)
        n = len(parts["train"][0])
        bs, n_steps = c["train"]["batch_size"], parts["steps"]
        if steps and n < steps * bs:
            raise UserError(f"--steps {steps} needs {steps * bs} training images at batch size {bs}, the data has "
                            f"{n}; use --steps {n // bs or 1}")
        eff, dev = parts["effective"], parts["device"]
        h, w, ch = parts["shape"]
        turns = f", {repeat} turns" if repeat > 1 else ""
        echo(f"bench {cfg['experiment']['name']} · {parts['data'].name} {h}×{w}×{ch} · batch {bs} · {n_steps} "
             f"steps/epoch · median of {epochs} epoch(s) after 1 warm-up, before 1 uncounted last{turns}")
        echo(f"device: {dev['name']} ({dev['kind']} ×{dev['count']}) · backend {keras.backend.backend()} · "
             f"precision {eff['precision']} · jit {eff['jit_compile']} · steps/call {eff['steps_per_execution']} · "
             f"augment on {eff['augment_on']} · epoch-end commits {eff['commit_interval']} · tf.data autotune "
             f"{'on' if eff['autotune'] else 'off'}")
        rates = {}

        def row(key, label, value, note=""):
            rates[key] = value
            echo(f"  {label:<48} {value:>10,.0f} img/s{note}")

        # 1. the input pipeline alone
        aug = any(c["data"][k] != off for k, off in pipeline.AUGMENT_OFF.items())
        host = runner.datasets(c, parts, raw=False)
        stats = (host["mean"], host["std"], host["pca"])  # computed once (data.whiten's fit takes a while)
        if aug:
            row("pipeline_host_augment", "input pipeline, host augmentation", pipeline_rate(host["train"], epochs))
        noaug = copy.deepcopy(c)
        noaug["data"].update(pipeline.AUGMENT_OFF)
        row("pipeline_no_augment", "input pipeline, no augmentation",
            pipeline_rate(runner.datasets(noaug, parts, raw=False, stats=stats)["train"], epochs))
        row("pipeline_raw", "input pipeline, raw pixels (device augmentation)",
            pipeline_rate(runner.datasets(c, parts, raw=True, stats=stats)["train"], epochs))

        # 2–4, `repeat` times in turn (A/B/A/B…, so a slow spell of the machine hits every row alike): the model's
        # step alone on one batch in memory; plain Keras, model.fit on NumPy arrays with no callbacks but the
        # timer; end to end through the runner, augmentation on the host and on the device.
        import tensorflow as tf

        batch = next(iter(host["train"]))
        xs, ys = zip(*[(x.numpy(), y) for x, y in runner.datasets(noaug, parts, raw=False, stats=stats)["train"]])
        x = np.concatenate(xs)
        y = tf.nest.map_structure(lambda *a: np.concatenate([np.asarray(v) for v in a]), *ys)
        del xs, ys
        samples, epoch_s = {}, {}  # epoch_s: every row's epoch times, turn by turn (warm-up and end included)
        total = 1 + epochs + 1
        steps_trained = {}  # the fit rows' steps an epoch, as the optimizer counted them: what their rates assume

        def keep(key, tm, images, model=None):
            samples.setdefault(key, []).append(tm.rate(images))
            epoch_s.setdefault(key, []).append([round(t, 6) for t in tm.times()])
            if model is not None:
                done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
                steps_trained.setdefault(key, []).append(done / total)

        def trained_model(feed):  # the network as `run` trains it on `feed`'s path (behind data.whiten's layer)
            fresh = runner.prepare(c)
            return runner.compile_model(runner.on_device(c, fresh, feed), c, fresh)

        run_feed = runner.datasets(c, parts, stats=stats)  # the run's own pipeline (augmentation where it puts it)

        for _ in range(repeat):
            model = trained_model(host)
            tm = timer()
            # n_steps batches an epoch, not an endless repeat with steps_per_epoch: Keras then runs whole calls of
            # steps_per_execution steps, 416 an epoch where ResNet-20's 391 were counted (32 a call), 6 % more
            model.fit(tf.data.Dataset.from_tensors(batch).repeat(n_steps), epochs=total, verbose=0, shuffle=False,
                      callbacks=[tm])
            keep("model", tm, n_steps * bs, model)
            model = trained_model(host)
            tm = timer()
            model.fit(x, y, batch_size=bs, epochs=total, shuffle=True, verbose=0, callbacks=[tm])
            keep("plain_keras", tm, len(x), model)
            # the run's own pipeline and network (augmentation where the run puts it), fit with no callbacks but
            # the timer: between this and the model row lie the pipeline and augmentation, between this and the
            # end-to-end row the run's callbacks (per-call log reads, epoch-end commits, TensorBoard)
            model = trained_model(run_feed)
            tm = timer()
            model.fit(run_feed["train"], epochs=total, verbose=0, shuffle=False, callbacks=[tm])
            keep("pipeline_fit", tm, n, model)
            for where in ("host", "device"):
                cw = copy.deepcopy(c)
                cw["data"]["augment_on"] = where
                cw["experiment"]["name"] = f"bench-{where}"
                tm = timer()
                res = run_unseen(cw, timer=tm)
                keep(f"end_to_end_{where}", tm, res["train_examples"])
            cw = copy.deepcopy(c)
            cw["experiment"]["name"] = "bench-waiting"
            tm = timer()
            res = run_unseen(cw, timer=tm, callbacks=[reader()])
            keep("end_to_end_waiting", tm, res["train_examples"])
        del x, y, run_feed
        labels = {"model": "model step alone (one batch in memory)",
                  "plain_keras": "plain Keras (model.fit on NumPy, no callbacks)",
                  "pipeline_fit": f"run's pipeline + model, no callbacks ({eff['augment_on']} aug.)",
                  "end_to_end_host": "end to end, augmentation on the host",
                  "end_to_end_device": "end to end, augmentation on the device",
                  "end_to_end_waiting": "end to end, every batch end waiting for its step"}
        for key, label in labels.items():
            mark = "  ← run's choice" if key == f"end_to_end_{eff['augment_on']}" else ""
            spread = f"  ({min(samples[key]):,.0f}–{max(samples[key]):,.0f})" if repeat > 1 else ""
            row(key, label, statistics.median(samples[key]), spread + mark)

        # 5. PyTorch's ResNet-50 beside ours, when it can run here
        if cfg["model"]["name"] == "resnet50" and (h, w) == (224, 224):
            from . import bench_torch

            r = bench_torch.resnet50_rate(bs, n_steps, epochs, classes=parts["data"].num_classes)
            if r is not None:
                row("torch_resnet50", "PyTorch ResNet-50 (torch.compile, bf16, NHWC)", r)

        e2e = rates[f"end_to_end_{eff['augment_on']}"]
        # each turn's ratio, then their median (with one turn: the ratio): steadier than a ratio of medians
        pick = samples[f"end_to_end_{eff['augment_on']}"]
        per_turn = lambda ref: statistics.median(a / b for a, b in zip(pick, samples[ref]))  # noqa: E731
        ratios = {"end_to_end/model": per_turn("model"), "suite/plain_keras": per_turn("plain_keras")}
        if "torch_resnet50" in rates:
            ratios["suite/torch"] = e2e / rates["torch_resnet50"]
        echo("  " + " · ".join(f"{k} = {v:.2f}" for k, v in ratios.items()))
        # the run's last epoch beyond a steady one: its final commit and best.keras, paid once a run
        ends = epoch_s[f"end_to_end_{eff['augment_on']}"]
        end = statistics.median(t[-1] - statistics.median(t[1:-1]) for t in ends)
        echo(f"  the run's end (last epoch's commit, best.keras): {end:+.2f} s once a run, left out of the rates")
        out = {"experiment": cfg["experiment"]["name"], "model": cfg["model"]["name"], "data": parts["data"].name,
               "input_shape": [h, w, ch], "batch_size": bs, "steps_per_epoch": n_steps, "epochs_measured": epochs,
               "repeat": repeat, "samples_img_per_s": samples, "epoch_s": epoch_s, "run_end_extra_s": end,
               "steps_trained_per_epoch": steps_trained,
               "device": dev, "backend": keras.backend.backend(), "effective": eff,
               "jit_compile": getattr(model, "jit_compile", None), "rates_img_per_s": rates, "ratios": ratios,
               "versions": runner.versions(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        if json_path:
            runner.write_json(json_path, out)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
