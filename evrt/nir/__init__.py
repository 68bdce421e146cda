"""NIR (Neuromorphic Intermediate Representation) in and out: `import_nir` turns a NIR graph into an
evrt Graph under a discretisation profile; `export_nir` writes an evrt Graph back as NIR.

The `nir` package is an optional extra (`pip install "evrt[nir]"`); it is imported only here, on use.
"""
from __future__ import annotations

from ..errors import EvrtError


def require_nir():
    try:
        import nir  # noqa: F401
    except ImportError:
        raise EvrtError("reading or writing NIR needs the `nir` package: pip install \"evrt[nir]\"") from None
    return nir


def import_nir(*args, **kwargs):
    from .importer import import_nir as _imp
    return _imp(*args, **kwargs)


def export_nir(*args, **kwargs):
    from .exporter import export_nir as _exp
    return _exp(*args, **kwargs)
