"""Per-camera hub options set through the API (motion on/off, recording mode), kept across restarts.

Settings give the defaults for every camera; this file holds only what was changed for one camera,
in ``<state_dir>/camera-options.json``, written atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHOICES: dict[str, tuple[str, ...]] = {"motion": ("on", "off"), "record": ("off", "motion", "always")}


class OptionError(ValueError):
    """A bad option name or value (the API answers 400 with this message)."""


class CameraOptions:
    def __init__(self, path: Path, defaults: dict[str, str]) -> None:
        self.path = path
        self.defaults = defaults
        self._values: dict[str, dict[str, str]] = {}
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            saved = {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            saved = {}
        for camera_id, options in saved.items() if isinstance(saved, dict) else ():
            if isinstance(options, dict):
                self._values[str(camera_id)] = {k: v for k, v in options.items() if v in CHOICES.get(k, ())}

    def get(self, camera_id: str, name: str) -> str:
        return self._values.get(camera_id, {}).get(name, self.defaults[name])

    def all(self, camera_id: str) -> dict[str, str]:
        return {name: self.get(camera_id, name) for name in CHOICES}

    def update(self, camera_id: str, changes: Any) -> dict[str, str]:
        """Validate and store ``changes`` (a JSON object); returns the camera's options."""
        if not isinstance(changes, dict) or not changes:
            raise OptionError(f"expected a JSON object with any of {', '.join(CHOICES)}")
        for name, value in changes.items():
            if name not in CHOICES:
                raise OptionError(f"unknown option {str(name)[:40]!r}; known: {', '.join(CHOICES)}")
            if value not in CHOICES[name]:
                raise OptionError(f"{name} must be one of {', '.join(CHOICES[name])}")
        self._values.setdefault(camera_id, {}).update(changes)
        self._save()
        return self.all(camera_id)

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._values, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save camera options to %s: %s", self.path, exc)
