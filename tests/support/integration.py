"""Home Assistant's camhub integration (``custom_components/camhub``) in the project's venv: its modules that
need no Home Assistant (the hub client, the MJPEG parser, the relay), without running its ``__init__``."""

from __future__ import annotations

import importlib
import sys
import types

from tests.support.procs import ROOT

PACKAGE = "camhub_ha_integration"


def integration_module(name: str) -> types.ModuleType:
    """``custom_components/camhub/<name>.py``, imported as part of a package whose ``__init__`` is not run."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(ROOT / "custom_components" / "camhub")]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")
