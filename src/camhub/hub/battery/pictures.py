"""Pictures battery cameras push: ``<prefix>/nodes/<id>/snapshot`` (a raw JPEG, retained, QoS 1) into the feed.

The ingest side's second kind of source, beside the HTTP pull: a node in snapshot mode wakes, pushes
one picture and sleeps, so its pictures arrive over MQTT. Each one becomes the camera's latest frame
(``Camera.frame_in``, as a pulled frame does): the snapshot URL, the MJPEG stream (each picture a new
frame; between them the broker's keep-alive re-sends the last one, so players and Home Assistant's
MJPEG integration keep going), motion between consecutive pictures, recordings and the time-lapse
all see it like any other frame.

Everything on the topic is untrusted, from any MQTT client: only a camera whose announce says snapshot
mode takes pictures here (a spoofed picture never enters a streaming camera's feed); at most
``CAMHUB_MAX_FRAME_BYTES``; a JPEG by the parser's rule (``core.jpeg``) (SOI first, EOI last, padding trimmed); at
most ``PICTURES_PER_MINUTE`` per camera. Each rejection is counted by reason and logged at most once
a minute per reason.

A retained picture (what the broker hands the hub when it subscribes, maybe hours old) becomes the
latest frame too -- the snapshot URL works right after a hub restart -- but it is no wake, and its
capture time is the camera's last picture time when the hub knows it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

from camhub.hub.battery.wakes import Wakes
from camhub.hub.core.jpeg import SOI, jpeg_end
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.ratelimit import AttemptThrottle, LogLimiter

log = logging.getLogger(__name__)

# A wake takes seconds (the board boots, joins Wi-Fi, warms its sensor up): more pictures than this from
# one camera in a minute are a loop or a flood, whatever its interval or its wake pin.
PICTURES_PER_MINUTE = 30


class PushedPictures:
    def __init__(self, cameras: Cameras, wakes: Wakes, topics: Topics, max_frame_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.cameras = cameras
        self.wakes = wakes
        self.topics = topics
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock
        self.received = 0
        self.rejections: Counter[str] = Counter()  # pictures refused, by reason
        self._recent = AttemptThrottle(limit=PICTURES_PER_MINUTE, window_s=60.0, max_keys=4096)  # per camera
        self._warnings = LogLimiter(log)

    def subscribe(self, link: MqttLink) -> None:
        link.subscribe_retained(self.topics.nodes("snapshot"), 1, self.picture)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_pictures_pushed", "Pictures battery cameras pushed that became frames", "",
                     {"": float(self.received)})
        yield Family("camhub_pictures_rejected", "Pushed pictures refused", "reason", dict(self.rejections))

    def picture(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = self.topics.parse_node(topic)
        if parsed is None or not payload:  # an empty retained picture only clears the broker's copy
            return
        camera_id = parsed[0]
        camera = self.cameras.get(camera_id)
        end = -1
        if camera is None:
            reason = "unknown_camera"
        elif camera.mode != "snapshot":
            reason = "not_battery_camera"
        elif len(payload) > self.max_frame_bytes:
            reason = "oversized"
        elif not payload.startswith(SOI) or (end := jpeg_end(payload, 0, len(payload))) < 0:
            reason = "not_jpeg"
        elif not retained and self._recent.blocked(camera_id):
            reason = "rate"
        else:
            reason = ""
        if camera is None or reason:
            self._reject(camera_id, reason, len(payload))
            return
        jpeg = payload if end == len(payload) else payload[:end]
        now = self.clock()
        if retained:
            camera.feed.publish(jpeg, camera.last_seen or now)
            self.wakes.heard(camera_id, live=False)
            return
        self._recent.failed(camera_id)  # counts pictures, not failures: the throttle's window is the rate
        self.received += 1
        camera.frame_in(jpeg, now, now)
        self.wakes.heard(camera_id, live=True)

    def _reject(self, camera_id: str, reason: str, size: int) -> None:
        self.rejections[reason] += 1
        shown = camera_id[:40].encode("unicode_escape").decode()  # no terminal escapes in the log
        self._warnings.warning(f"picture:{reason}", "picture on %s (%d bytes) refused: %s",
                               self.topics.node(shown, "snapshot"), size, reason)
