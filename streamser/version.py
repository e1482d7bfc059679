"""The package version, defined once: pyproject.toml, ``--version`` and meta.json read it here."""

from __future__ import annotations

__version__ = "0.1.0"
