"""Per-camera hub options set through the API (motion on/off, recording mode), kept across restarts.

Settings give the defaults for every camera; this file holds only what was changed for one camera,
in ``<state_dir>/camera-options.json`` (written atomically, off the event loop). ``changed`` tells the
parts an option concerns (motion detection, recordings) the camera's new options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from camhub.hub.util.files import SoonWriter, read_json
from camhub.hub.util.signals import Signal

CHOICES: dict[str, tuple[str, ...]] = {"motion": ("on", "off"), "record": ("off", "motion", "always")}
FILE_NAME = "camera-options.json"


class OptionError(ValueError):
    """A bad option name or value (the API answers 400 with this message)."""


class CameraOptions:
    def __init__(self, state_dir: Path, defaults: dict[str, str]) -> None:
        self.path = state_dir / FILE_NAME
        self.defaults = defaults
        self._values: dict[str, dict[str, str]] = {}
        self._writer = SoonWriter(self.path, lambda: json.dumps(self._values, indent=1), 0.0, "camera options")
        self.changed: Signal[[str, dict[str, str]]] = Signal()  # (camera id, all its options)
        saved = read_json(self.path)
        for camera_id, options in saved.items() if isinstance(saved, dict) else ():
            if isinstance(options, dict):
                self._values[str(camera_id)] = {k: v for k, v in options.items() if v in CHOICES.get(k, ())}

    def sizes(self) -> dict[str, int]:
        return {"cameras": len(self._values)}

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
        self._writer.soon()
        options = self.all(camera_id)
        self.changed.emit(camera_id, options)
        return options

    async def flush(self) -> None:
        await self._writer.flush()
