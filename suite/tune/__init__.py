"""Hyperparameter search with keras-tuner: `python -m suite tune <net-or-experiment> [--tuner hyperband]`.

Why a `keras_tuner.Tuner` subclass with `run_trial()` and not a `HyperModel` with build(hp)/fit(hp, model): every
trial must train through the one runner (suite.runner.run), which builds, compiles and fits the model itself
(data pipeline, schedules, BackupAndRestore, TensorBoard). keras-tuner documents overriding `Tuner.run_trial` for
exactly this case (a custom training loop): we turn `trial.hyperparameters` into a suite config (batch size
included) and return the objective. The oracles (RandomSearch, Hyperband, BayesianOptimization, and a grid)
are keras-tuner's, with their state files written atomically; see tuner.py for resuming and workers.

Layout: logs/<experiment>/tune-<study>/ holds keras-tuner's oracle.json, and trial_<id>/ per trial, which is
also the runner's run directory (TensorBoard events, results.json) with the trial's HParams, so TensorBoard's
HParams dashboard lists the trials side by side. At the end: a table, summary.json and best.toml (an
experiment file `python -m suite run` accepts).

Modules: space.py (the search space and each trial's config), tuner.py (keras-tuner oracles with atomic state,
the Tuner whose trials run through suite.runner, make_oracle), search.py (the command: chief, workers, restarts),
report.py (the table, summary.json, best.toml). Nothing is imported here, so `suite list` stays light.
"""
