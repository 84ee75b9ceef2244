"""The files camhub ships besides its code: the dashboard, the board's ``code.py``, the templates.

They are package data under ``camhub/shipped/``. In the source tree that directory holds links to
``web/``, ``cameras/code.py`` and the ``*.toml.example`` files, so an editable install serves the
tree's own files and a wheel carries copies of them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(name: str) -> Path:
    """The shipped file or directory ``name``: ``web``, ``code.py``, ``settings.toml.example``, ..."""
    return Path(str(files("camhub") / "shipped" / name))
