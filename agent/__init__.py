"""Relais: the card and queue agent of a French medical practice (Ségur du numérique, vague 2)."""

from importlib import metadata

try:
    __version__ = metadata.version("relais")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
