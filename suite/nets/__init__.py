"""Every network family. Adding a network: write its module, then add one import line here."""

from . import alexnet, lenet  # noqa: F401
