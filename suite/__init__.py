"""A Keras experiment suite for classic convolutional networks."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the progress bar

__version__ = "0.1.0"
