"""TensorBoard extras beyond Keras' TensorBoard callback: HParams for every run and trial."""

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api


def hparam_value(v):
    """HParams take bool/int/float/str; lists become their text (e.g. '[1, 2, 5]')."""
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def write_hparams(run_dir, hparams, metrics=None, trial_id=None):
    """Record `hparams` ({name: value}) for this run so the HParams dashboard lists it, plus final
    `metrics` ({tag: value}) as scalars under the run so the dashboard has a column for each.
    The metric tags are written at step 0 into `run_dir/hparams` (a run of its own in TensorBoard's eyes
    would split them from the hparams: so they go to the same directory as the hparams summary)."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        hp_api.hparams({k: hparam_value(v) for k, v in hparams.items()}, trial_id=trial_id)
        for tag, value in (metrics or {}).items():
            if value is not None:
                tf.summary.scalar(tag, float(value), step=0)
    writer.flush()
    writer.close()
