"""The known cameras (``<state_dir>/cameras.json``): listed after a restart, offline until they announce.

Only cameras that came from MQTT announces are kept (``CAMHUB_SOURCES`` are in the settings). The
file is written at most every ``SAVE_DELAY_S`` (announces in a burst cost one write), off the event
loop, and once more when the hub stops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from camhub.hub.core.registry import Cameras
from camhub.hub.util.counters import Family
from camhub.hub.util.files import SoonWriter, read_json

log = logging.getLogger(__name__)

SAVE_DELAY_S = 2.0
FILE_NAME = "cameras.json"


class KnownCameras:
    def __init__(self, cameras: Cameras, state_dir: Path) -> None:
        self.cameras = cameras
        self.path = state_dir / FILE_NAME
        self._writer = SoonWriter(self.path, self._entries, SAVE_DELAY_S, "known cameras")

    def load(self) -> None:
        """Register the cameras known from an earlier run (offline until they announce again)."""
        saved = read_json(self.path)
        for entry in saved.get("cameras", []) if isinstance(saved, dict) else []:
            try:
                camera_id, name = str(entry["id"]), str(entry.get("name") or entry["id"])
            except (KeyError, TypeError):
                continue
            if not self.cameras.has_room(camera_id):
                log.warning("%s lists more than CAMHUB_MAX_CAMERAS (%d) cameras; the rest are left out",
                            self.path, self.cameras.max_cameras)
                break
            if camera_id not in self.cameras and entry.get("source") == "mqtt":
                self.cameras.add(camera_id, name, "mqtt", entry.get("stream_url"), entry.get("announce"),
                                 entry.get("last_seen"))
        if saved is not None:
            log.info("%d known cameras from %s", len(self.cameras), self.path)

    def _entries(self) -> str:
        entries = [{"id": c.id, "name": c.name, "source": c.source, "stream_url": c.stream_url,
                    "announce": c.announce, "last_seen": c.last_seen}
                   for c in self.cameras if c.source == "mqtt"]
        return json.dumps({"cameras": entries}, indent=1)

    def save_soon(self) -> None:
        self._writer.soon()

    async def flush(self) -> None:
        await self._writer.flush(always=True)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_state_saves", "Writes of the known-cameras file", "file", {FILE_NAME: self._writer.saves})
