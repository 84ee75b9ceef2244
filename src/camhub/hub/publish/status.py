"""The hub's status on MQTT, always (Home Assistant or not): camera states, viewer and motion events,
the hub's summary, recordings.

| topic | retained | when |
|---|---|---|
| ``<prefix>/hub/cameras/<id>/state`` | yes | on every change, every ``interval_s``, on (re)connect |
| ``<prefix>/hub/cameras/<id>/events`` | no | a viewer connects or disconnects; motion starts or ends |
| ``<prefix>/hub/cameras/<id>/motion`` | yes | ``ON``/``OFF`` |
| ``<prefix>/hub/state`` | yes | ``{"cameras_total","cameras_online","viewers"}`` on a change (``viewers``: paced) |
| ``<prefix>/hub/recordings`` | yes | the recordings' status when it changes, on (re)connect |

Topics come from ``mqtt.topics``; the link's queue keeps only the newest retained payload per topic.
In a cluster the hub's own topics are per hub (``<prefix>/hubs/<hub_id>/state``, ``.../recordings``) and
a camera's are written only while this hub ``publishes`` them (it owns the camera): ``camera_gained``
(re-)asserts them when it takes one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from camhub.hub.core.broker import Feed, Viewer
from camhub.hub.core.camera import Camera
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.taps.motion import Motion
from camhub.hub.taps.recordings import Recordings

# The hub's viewer count goes out at most this often: a count, not an event per viewer, so that a hub's
# MQTT rate does not grow with its viewers' comings and goings (issue #22: an edge with thousands of viewers).
# A fall to half the count sent or less goes out at once: a hub that redirects viewers to edges counts the
# viewers it sent since an edge's last count, so a rise is covered, but it cannot see viewers leave, and an
# edge many viewers just left would be kept empty while the others took them past the bound (measured
# 43 / 0 / 87 with bound 55). Halving bounds the extra messages: log2(viewers) + 1 in a row at most.
VIEWERS_EVERY_S = 2.0


class StatusPublisher:
    def __init__(self, link: MqttLink, topics: Topics, cameras: Cameras, motion: Motion,
                 recordings: Recordings, publishes: Callable[[str], bool] = lambda camera_id: True) -> None:
        self.link = link
        self.publishes = publishes  # whether this hub writes this camera's topics (in a cluster: its owner)
        self.topics = topics
        self.cameras = cameras
        self.motion = motion
        self.recordings = recordings
        self._hub_state_sent: str | None = None
        self._hub_cameras_sent: tuple[int, int] | None = None  # (total, online) in the last hub state sent
        self._hub_viewers_sent = 0  # the viewer count in it
        self._hub_state_at = -VIEWERS_EVERY_S  # monotonic time it was sent
        self._hub_state_due = False  # a change of the viewer count held back, sent by ``flush()``
        # Cameras whose retained motion state went out since the link came up: a camera first seen later
        # gets its OFF at once, so Home Assistant's motion sensor says "off", not "unknown", until the first
        # motion (which in a still scene may be minutes away).
        self._motion_sent: set[str] = set()

    def sizes(self) -> dict[str, int]:
        return {"motion_sent": len(self._motion_sent)}

    # ---- cameras ---------------------------------------------------------------------------
    def camera_changed(self, camera: Camera) -> None:
        if self.publishes(camera.id):
            self.link.publish(self.topics.camera_state(camera.id), camera.state_payload(time.monotonic()),
                              retain=True)
            # not for a camera already removed (a late change of its stopping pull): that would bring back its
            # motion state, which motion forgot with the camera, and its entry here, for good
            if camera.id not in self._motion_sent and self.cameras.get(camera.id) is camera:
                self._publish_motion(camera.id)
        self.hub_state()

    def camera_gained(self, camera: Camera) -> None:
        """This hub writes the camera's topics from now on: its state and motion, whatever was sent before."""
        if self.publishes(camera.id):
            self.link.publish(self.topics.camera_state(camera.id), camera.state_payload(time.monotonic()),
                              retain=True)
            self._publish_motion(camera.id)

    def camera_removed(self, camera_id: str) -> None:
        self._motion_sent.discard(camera_id)
        self.hub_state()

    def states(self) -> None:
        """Every camera's state (the periodic refresh: ages and rates move without a change)."""
        now = time.monotonic()
        for camera in self.cameras:
            if self.publishes(camera.id):
                self.link.publish(self.topics.camera_state(camera.id), camera.state_payload(now), retain=True)

    def viewer_event(self, kind: str, feed: Feed, viewer: Viewer) -> None:
        if not self.publishes(feed.camera_id):
            return
        info = viewer.info()
        event: dict[str, Any] = {"event": kind, "client": viewer.id, "peer": viewer.peer,
                                 "frames_sent": info["frames_sent"], "frames_dropped": info["frames_dropped"],
                                 "bytes_sent": info["bytes_sent"], "user_agent": viewer.user_agent}
        if kind == "disconnect":
            event["reason"] = viewer.reason
        self.link.publish(self.topics.camera_events(feed.camera_id), event)

    def motion_event(self, camera_id: str, event: dict[str, Any]) -> None:
        if not self.publishes(camera_id):
            return
        self.link.publish(self.topics.camera_motion(camera_id), "ON" if event["phase"] == "start" else "OFF",
                          retain=True)
        self._motion_sent.add(camera_id)
        self.link.publish(self.topics.camera_events(camera_id), event)

    def _publish_motion(self, camera_id: str) -> None:
        self.link.publish(self.topics.camera_motion(camera_id),
                          "ON" if self.motion.camera(camera_id).active else "OFF", retain=True)
        self._motion_sent.add(camera_id)

    # ---- the hub ---------------------------------------------------------------------------
    def hub_state(self, force: bool = False) -> None:
        """The hub's summary when it changed: a change of the cameras or a fall of the viewers to half at once,
        other changes of the viewers at most every ``VIEWERS_EVERY_S`` (the last count held back goes out
        from ``flush()``)."""
        cameras = (len(self.cameras), self.cameras.online())
        viewers = self.cameras.broker.viewer_count
        state = {"cameras_total": cameras[0], "cameras_online": cameras[1], "viewers": viewers}
        data = json.dumps(state, separators=(",", ":"))
        now = time.monotonic()
        self._hub_state_due = False
        if not force and data == self._hub_state_sent:
            return
        if (not force and cameras == self._hub_cameras_sent and viewers > self._hub_viewers_sent // 2
                and now - self._hub_state_at < VIEWERS_EVERY_S):
            self._hub_state_due = True
            return
        self._hub_state_sent, self._hub_cameras_sent, self._hub_state_at = data, cameras, now
        self._hub_viewers_sent = viewers
        self.link.publish(self.topics.hub_state, data, retain=True)

    def flush(self) -> None:
        """Send a viewer count ``hub_state`` held back (called every second)."""
        if self._hub_state_due:
            self.hub_state()

    def recordings_changed(self, status: dict[str, Any]) -> None:
        self.link.publish(self.topics.recordings, status, retain=True)

    def republish(self) -> None:
        """Everything retained, whatever was sent before (the link is up again)."""
        self.states()
        for camera in self.cameras:
            if self.publishes(camera.id):
                self._publish_motion(camera.id)
        self.hub_state(force=True)
        self.recordings_changed(self.recordings.store.status())
