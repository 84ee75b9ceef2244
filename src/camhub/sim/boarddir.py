"""A deployed board directory run on this PC: its ``lib/`` on ``sys.path`` as a board would have it."""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger("camhub.nodesim")


def library_path(lib: Path) -> bool:
    """Put a deployed ``lib/`` on sys.path after the standard library; False if it holds no .py."""
    if not lib.is_dir():
        log.warning("%s does not exist: using the installed node libraries", lib)
        return False
    if not any(lib.rglob("*.py")):
        log.warning("%s holds only compiled .mpy files, which CPython cannot load: using the installed "
                    "node libraries instead", lib)
        return False
    # After the stdlib entries: a deployed CircuitPython asyncio/ must not shadow CPython's asyncio,
    # while the deployed camhub_node and adafruit_* packages still win over the installed ones.
    stdlib = {os.path.realpath(p) for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))}
    index = 0
    for i, entry in enumerate(sys.path):
        real = os.path.realpath(entry or ".")
        if real in stdlib or any(real.startswith(s + os.sep) for s in stdlib) or real.endswith(".zip"):
            index = i + 1
    sys.path.insert(index, str(lib.resolve()))
    return True
