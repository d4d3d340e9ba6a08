"""The network registry: `@register("name")` on a builder, then `build(name, **kw)` and `list_models()`.

A builder is a plain function `fn(input_shape, num_classes, *, knob=default, ...) -> keras.Model`.
Its keyword defaults are the network's configuration: `suite.config` reads them (names and types)
to validate `[model]` tables and `--set model.<knob>=...` overrides, so a new knob needs no other edit.
"""

import dataclasses
import inspect

from .errors import UserError, did_you_mean

_MODELS = {}


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    fn: callable
    family: str
    input_shape: tuple  # the paper's input; small images are handled by each builder's stem option
    summary: str

    def defaults(self):
        """The builder's knobs and their defaults (all but input_shape, num_classes and the layer-name prefix)."""
        sig = inspect.signature(self.fn)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k not in ("input_shape", "num_classes", "name") and p.default is not inspect.Parameter.empty
        }


def register(name, *, family=None, input_shape=(224, 224, 3), summary="", **fixed):
    """Register `fn` under `name`. `fixed` kwargs make a thin named variant (e.g. depth=50)."""

    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"network {name!r} registered twice")
        target = fn
        if fixed:
            # A thin named variant: the same builder with some defaults changed (still overridable).
            def target(input_shape=input_shape, num_classes=1000, **kw):
                return fn(input_shape, num_classes, **{**fixed, "name": name, **kw})

            sig = inspect.signature(fn)
            params = [p.replace(default={**fixed, "name": name}[p.name]) if p.name in {**fixed, "name": 0} else p
                      for p in sig.parameters.values()]
            target.__signature__ = sig.replace(parameters=params)
            target.__doc__ = fn.__doc__
        doc = summary or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        _MODELS[name] = Entry(name, target, family or fn.__module__.rsplit(".", 1)[-1], tuple(input_shape), doc)
        return fn

    return deco


def get(name):
    _load()
    if name not in _MODELS:
        raise UserError(f"unknown network {name!r}{did_you_mean(name, _MODELS)}; "
                        f"run `python -m suite list` to see them all")
    return _MODELS[name]


def list_models():
    _load()
    return sorted(_MODELS)


def build(name, input_shape=None, num_classes=1000, **kw):
    entry = get(name)
    return entry.fn(tuple(input_shape or entry.input_shape), num_classes, **kw)


def _load():
    from . import nets  # noqa: F401  (importing the package registers every network)
