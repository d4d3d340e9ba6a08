"""`keras` and `keras.layers` for the network modules without importing Keras (and TensorFlow, ~4 s) at import
time: `suite list`, `suite show --config` and `--help` only read the registry. The first attribute access imports
the real module. Hand-written because importlib.util.LazyLoader cannot defer a submodule (`keras.layers`)
without importing its parent."""

import importlib


class LazyModule:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return f"<lazy module {self._name}>"


keras = LazyModule("keras")
layers = LazyModule("keras.layers")
