"""The cameras the hub knows, by id, at most ``max_cameras`` of them, and what happens to them.

The registry only keeps them and says what happened (``changed``, ``removed``); who adds and removes
cameras and why is ``ingest``'s business, what follows from a change is whoever listens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from camhub.hub.core.broker import Broker, Feed, Viewer
from camhub.hub.core.camera import OFFLINE, Camera
from camhub.hub.util.signals import Signal

log = logging.getLogger(__name__)


class Cameras:
    def __init__(self, broker: Broker, max_cameras: int) -> None:
        self.broker = broker
        self.max_cameras = max_cameras
        self._cameras: dict[str, Camera] = {}
        self.changed: Signal[[Camera]] = Signal()  # its state, announce, viewers ... changed
        self.removed: Signal[[str]] = Signal()  # forgotten (its feed and viewers gone)

    def get(self, camera_id: str) -> Camera | None:
        return self._cameras.get(camera_id)

    def __iter__(self) -> Iterator[Camera]:
        return iter(list(self._cameras.values()))

    def __len__(self) -> int:
        return len(self._cameras)

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._cameras

    def sizes(self) -> dict[str, int]:
        return {"cameras": len(self._cameras)}

    def ids(self) -> list[str]:
        return list(self._cameras)

    def sorted(self) -> list[Camera]:
        return sorted(self._cameras.values(), key=lambda c: (c.name.lower(), c.id))

    def online(self) -> int:
        return sum(1 for c in self._cameras.values() if c.state != OFFLINE)

    def has_room(self, camera_id: str) -> bool:
        """Whether ``camera_id`` may be taken (known, or below ``max_cameras``)."""
        return camera_id in self._cameras or len(self._cameras) < self.max_cameras

    def add(self, camera_id: str, name: str, source: str, stream_url: str | None,
            announce: dict[str, Any] | None = None, last_seen: float | None = None) -> Camera:
        """A new camera, with its feed (``has_room`` is the caller's to check)."""
        camera = Camera(camera_id, name, source, stream_url, self.broker.feed(camera_id), announce, last_seen)
        self._cameras[camera_id] = camera
        return camera

    def pop(self, camera_id: str) -> Camera | None:
        """Take the camera out of the registry (its feed and pull are still the caller's to stop)."""
        return self._cameras.pop(camera_id, None)

    def forget(self, camera_id: str) -> None:
        """The camera is gone for good: close its feed (and its viewers) and say so."""
        self.broker.remove_feed(camera_id)
        log.info("camera %s removed", camera_id)
        self.removed.emit(camera_id)

    def viewer_event(self, kind: str, feed: Feed, viewer: Viewer) -> None:
        """The broker's viewers signal: a known camera's viewers changed."""
        camera = self._cameras.get(feed.camera_id)
        if camera is not None:
            self.changed.emit(camera)

    def set_state(self, camera: Camera, state: str) -> None:
        if camera.state != state:
            log.info("camera %s: %s -> %s", camera.id, camera.state, state)
            camera.state = state
            self.changed.emit(camera)
