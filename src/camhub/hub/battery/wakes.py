"""Battery cameras: each one's wakes, when it is missing, and the settings waiting for its next wake.

A node in snapshot mode (``camhub_node.snapshot``) wakes every ``interval_s`` (or when its wake pin
fires), is awake for about a second -- ``online``, its announce, its stats, one picture -- and deep-
sleeps again with a clean DISCONNECT: its retained ``online`` stays, and it has no last will. So a
battery camera is ``sleeping`` between its wakes, not ``offline``; the hub judges it *missing*
(``offline``) only when no wake was heard for ``MISSING_INTERVALS`` intervals plus
``MISSING_GRACE_S`` (a wake's own time: boot, Wi-Fi, clock drift), and the next wake brings it back.

A wake is heard from any message the node sends *now*; a retained one (what the broker hands the
hub when it subscribes, maybe hours old) tells what the camera is, never that it is awake.

Settings (``set``) cannot reach a node that is awake for a second, so for a battery camera the hub
*queues* them: it keeps what is pending, merged, as a retained ``set`` the node reads when it
wakes. The node applies it, clears it and announces the new values; the hub drops what the
announce shows done. What it does not show was refused by the node (logged, dropped) -- unless the
hub sent it during that very wake, when the node may have missed it: then it waits for the next.
After a hub restart the pending change is learnt back from the retained ``set``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from camhub.hub.core.camera import OFFLINE, SLEEPING, Camera
from camhub.hub.core.controls import ControlError, controls_of
from camhub.hub.core.registry import Cameras
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family

log = logging.getLogger(__name__)

MISSING_INTERVALS = 2.5  # no wake heard for this many intervals (plus the grace): the camera is missing
MISSING_GRACE_S = 10.0
NEW_WAKE_GAP_S = 5.0  # without its "online" first, messages further apart than this are another wake
SENT_DURING_WAKE_S = 1.0  # a set published this close before a wake began may have missed it


class Wake:
    """What the hub knows of one battery camera's wakes (``core.camera.WakeStats``); Unix times."""

    def __init__(self, interval_s: int, baseline: float) -> None:
        self.interval_s = interval_s
        self.baseline = baseline  # since when the hub waits for a wake (its start, or the camera's discovery)
        self.last_wake: float | None = None  # the latest wake heard
        self.woke_at: float | None = None  # the start of the latest wake heard
        self.wake_reason: str | None = None
        self.wake_pin = False
        self.battery_v: float | None = None
        self.wakes = 0  # wakes heard since the hub started
        self.missing = False
        self.pending: dict[str, Any] = {}  # settings queued for the next wake
        self.pending_sent_at: float | None = None

    @property
    def missing_at(self) -> float:
        since = self.last_wake if self.last_wake is not None else self.baseline
        return since + MISSING_INTERVALS * self.interval_s + MISSING_GRACE_S

    @property
    def next_wake(self) -> float | None:
        """When the timer wakes it next, about (its interval after the last wake began)."""
        start = self.woke_at if self.woke_at is not None else self.last_wake
        return None if start is None else start + self.interval_s

    def summary(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "last_wake": _round(self.last_wake), "next_wake": _round(self.next_wake),
                "missing_at": _round(self.missing_at), "missing": self.missing, "wake_reason": self.wake_reason,
                "wake_pin": self.wake_pin, "battery_v": self.battery_v, "wakes": self.wakes,
                "pending": dict(self.pending)}

    def state_fields(self) -> dict[str, Any]:
        return {"mode": "snapshot", "interval_s": self.interval_s, "last_wake": _round(self.last_wake),
                "next_wake": _round(self.next_wake), "wake_reason": self.wake_reason, "battery_v": self.battery_v,
                "pending": dict(self.pending)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Wakes:
    """Every battery camera's ``Wake``: heard, judged missing, and the settings queued for it."""

    def __init__(self, cameras: Cameras, link: MqttLink, topics: Topics,
                 clock: Callable[[], float] = time.time) -> None:
        self.cameras = cameras
        self.link = link
        self.topics = topics
        self.clock = clock
        self._wakes: dict[str, Wake] = {}
        self.queued = 0  # settings changes queued for a next wake
        self.outcomes: Counter[str] = Counter()  # queued changes by what became of them: applied, refused
        self.went_missing = 0

    def subscribe(self) -> None:
        """The retained ``set`` of each node: a change queued before the hub restarted is still pending."""
        self.link.subscribe_retained(self.topics.nodes("set"), 1, self.set_seen)

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_battery_cameras_missing", "Battery cameras that missed their wakes", "",
                     {"": float(sum(1 for w in self._wakes.values() if w.missing))}, kind="gauge")
        yield Family("camhub_battery_cameras_went_missing", "Times a battery camera missed its wakes", "",
                     {"": float(self.went_missing)})
        yield Family("camhub_settings_queued", "Settings changes queued for a battery camera's next wake", "",
                     {"": float(self.queued)})
        yield Family("camhub_settings_queued_outcomes", "What became of queued settings changes", "outcome",
                     dict(self.outcomes))

    def get(self, camera_id: str) -> Wake | None:
        return self._wakes.get(camera_id)

    def holds(self, camera: Camera) -> bool:
        """A battery camera's settings wait here for its next wake (``ingest.control.SettingsQueue``)."""
        return camera.mode == "snapshot" and camera.id in self._wakes

    def next_wake(self, camera: Camera) -> float | None:
        wake = self._wakes.get(camera.id)
        return None if wake is None else wake.summary()["next_wake"]

    # ---- what the node says ----------------------------------------------------------------
    def restore(self) -> None:
        """The battery cameras known from an earlier run (their announce says so): missing or not."""
        for camera in self.cameras:
            self.announced(camera, live=False)

    def announced(self, camera: Camera, live: bool) -> None:
        """A (re-)announce: the camera's wake settings; a live one is a wake, and shows what it applied."""
        if camera.mode != "snapshot":
            if self._wakes.pop(camera.id, None) is not None:
                camera.wakes = None  # it streams now: its pull decides its state
            return
        announce = camera.announce or {}
        wake = self._wakes.get(camera.id)
        if wake is None:
            baseline = max(self.clock(), 0.0) if camera.last_seen is None else camera.last_seen
            wake = self._wakes[camera.id] = Wake(int(announce.get("interval_s") or 1), baseline)
            if camera.last_seen is not None:
                wake.last_wake = camera.last_seen  # its latest picture: the hub's last word on it
            camera.wakes = wake
        wake.interval_s = int(announce.get("interval_s") or wake.interval_s)
        wake.wake_pin = bool(announce.get("wake_pin"))
        wake.battery_v = announce.get("battery_v")
        if live:
            wake.wake_reason = announce.get("wake")
            self._heard(camera, wake)
            self._settle_pending(camera, wake)
        else:
            wake.wake_reason = wake.wake_reason or announce.get("wake")
            self._judge(camera, wake)

    def heard(self, camera_id: str, live: bool, starts: bool = False) -> None:
        """Availability ``online`` (a wake ``starts``: the node says it first), stats or a picture."""
        camera = self.cameras.get(camera_id)
        wake = self._wakes.get(camera_id)
        if camera is None or wake is None:
            return
        if live:
            self._heard(camera, wake, starts)
        else:
            self._judge(camera, wake)

    def _heard(self, camera: Camera, wake: Wake, starts: bool = False) -> None:
        now = self.clock()
        if starts or wake.last_wake is None or now - wake.last_wake > NEW_WAKE_GAP_S:
            wake.woke_at = now
            wake.wakes += 1
        wake.last_wake = now
        if wake.missing:
            wake.missing = False
            log.info("camera %s woke again (%s); no longer missing", camera.id, wake.wake_reason or "a wake")
        self._judge(camera, wake)

    def _judge(self, camera: Camera, wake: Wake) -> None:
        if not wake.missing and self.clock() >= wake.missing_at:
            wake.missing = True
        state = OFFLINE if wake.missing or not camera.available else SLEEPING
        if camera.state == state:
            self.cameras.changed.emit(camera)  # its wake figures moved even when its state did not
        else:
            self.cameras.set_state(camera, state)

    def tick(self) -> None:
        """Often (the hub's tick): a camera whose wakes stopped goes missing."""
        now = self.clock()
        for camera_id, wake in list(self._wakes.items()):
            camera = self.cameras.get(camera_id)
            if camera is None:
                del self._wakes[camera_id]
                continue
            if not wake.missing and now >= wake.missing_at:
                wake.missing = True
                self.went_missing += 1
                last = "never heard" if wake.last_wake is None else f"last heard {now - wake.last_wake:.0f} s ago"
                log.warning("camera %s missed its wakes (every %d s; %s): missing", camera_id, wake.interval_s, last)
                self.cameras.set_state(camera, OFFLINE)

    # ---- settings for the next wake --------------------------------------------------------
    def queue(self, camera: Camera, change: dict[str, Any]) -> dict[str, Any]:
        """Queue a checked settings change for ``camera``'s next wake; what is pending now."""
        wake = self._wakes[camera.id]
        wake.pending.update(change)
        self.queued += 1
        self._send_pending(camera, wake)
        self.cameras.changed.emit(camera)
        return dict(wake.pending)

    def _send_pending(self, camera: Camera, wake: Wake) -> None:
        wake.pending_sent_at = self.clock()
        self.link.publish(self.topics.node(camera.id, "set"), wake.pending if wake.pending else "", retain=True, qos=1)

    def _settle_pending(self, camera: Camera, wake: Wake) -> None:
        """A live announce: what it shows applied is done; what it does not, refused or missed."""
        if not wake.pending:
            return
        announce = camera.announce or {}
        done = {key: value for key, value in wake.pending.items() if announce.get(key) == value}
        for key in done:
            del wake.pending[key]
        if done:
            self.outcomes["applied"] += 1
            log.info("camera %s applied the queued %s at its wake", camera.id, done)
        if not wake.pending:
            return
        sent, began = wake.pending_sent_at, wake.woke_at
        if sent is not None and began is not None and sent >= began - SENT_DURING_WAKE_S:
            self._send_pending(camera, wake)  # sent while it was awake: it may have read the set before
            return
        self.outcomes["refused"] += 1
        log.warning("camera %s did not apply the queued %s (its node refused it; its log says why): dropped",
                    camera.id, dict(wake.pending))  # a copy: a record may be formatted after the clear below
        wake.pending.clear()

    def set_seen(self, topic: str, payload: bytes, retained: bool) -> None:
        """A retained ``set`` at subscribe time: a change queued before the hub (re)started."""
        parsed = self.topics.parse_node(topic)
        if not retained or not payload or parsed is None:
            return
        camera = self.cameras.get(parsed[0])
        wake = self._wakes.get(parsed[0])
        if camera is None or wake is None or wake.pending:
            return
        controls = controls_of(camera.announce, camera.source)
        try:
            request = json.loads(payload[:4096].decode("utf-8"))
            if controls is None:
                raise ControlError("set", "no controls announced")
            wake.pending = controls.check(request)
        except (ValueError, ControlError):
            return  # not one of ours; the node will say what it makes of it
        self.cameras.changed.emit(camera)
