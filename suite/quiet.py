"""Import TensorFlow without its C++ start-up log lines on stderr.

TF 2.21 prints oneDNN/CUDA/CPU-feature notices through absl before Python can configure logging, and
TF_CPP_MIN_LOG_LEVEL no longer hides them; they would bury the one-line errors the CLI promises. So stderr's
file descriptor points at /dev/null while TensorFlow loads and runs its first op (hand-written: no library
does this). Python exceptions still surface: they are raised after stderr is restored.
"""

import os

_done = False


def import_tensorflow():
    global _done
    if _done or os.environ.get("SUITE_TF_LOGS"):
        import tensorflow as tf

        return tf
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow as tf
        import keras  # noqa: F401

        from .distribute import split_cpu

        split_cpu()  # SUITE_CPU_DEVICES: before the devices exist
        tf.constant(0.0) + 0  # the first op initialises the devices (and logs the missing CUDA driver)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    _done = True
    return tf


def hide_retracing_warning():
    """Commands that build one model after another in a process (tune's trials, a study's runs, bench's
    measurements) make TensorFlow warn "N calls triggered tf.function retracing": expected there, and it says
    nothing, so that one message is hidden. Idempotent."""
    import logging

    import tensorflow as tf

    logger = tf.get_logger()
    if not any(getattr(f, "suite_retracing", False) for f in logger.filters):
        f = logging.Filter()
        f.filter = lambda record: "tf.function retracing" not in record.getMessage()
        f.suite_retracing = True
        logger.addFilter(f)
