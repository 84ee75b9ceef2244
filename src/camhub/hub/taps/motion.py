"""Motion detection: each camera's frames, decoded small, compared with a slowly adapting background.

A JPEG is decoded at 1/8 scale in grayscale straight from its DCT (Pillow's ``draft``: each 8×8
block's DC coefficient becomes one pixel, so a 640×480 frame is an 80×60 image and is never fully
decoded). At most ``fps`` frames per camera per second are analysed, on a worker thread (Pillow
releases the GIL while decoding), so the fan-out on the event loop is never held up; a frame that
arrives while the camera's previous one is still being analysed is skipped, never queued.

A pixel has changed when it differs from the background by more than ``threshold`` grey levels; a
frame has changed when the changed pixels that are part of a changed 2×2 block (isolated pixels —
sensor noise, JPEG block artefacts — are ignored) cover at least ``min_area_pct`` of the picture.
Motion starts after ``frames`` changed frames in a row and ends after ``quiet_s`` without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from camhub.hub.core.broker import Frame
from camhub.hub.util.counters import Family
from camhub.hub.util.files import atomic_write
from camhub.hub.util.ratelimit import LogLimiter
from camhub.hub.util.signals import Signal

log = logging.getLogger(__name__)

SCENE_CHANGE = 0.6  # this much of the picture changed at once: the light changed, relearn the scene


@dataclass(frozen=True)
class MotionSettings:
    fps: float = 5.0  # frames analysed per camera per second, at most
    threshold: float = 24.0  # grey levels (0..255) a pixel must differ from the background by
    min_area_pct: float = 0.5  # percent of the picture that must change
    frames: int = 2  # changed frames in a row that start motion
    quiet_s: float = 5.0  # seconds without a changed frame that end it
    adapt: float = 0.05  # how fast the background follows the scene, per analysed frame
    history: int = 200  # motion events kept per camera


def small_gray(jpeg: bytes) -> np.ndarray:
    """The JPEG at 1/8 scale, grayscale, as float32 (decoded from the DC coefficients only)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        width, height = image.size
        image.draft("L", (max(1, width // 8), max(1, height // 8)))
        if image.mode != "L":  # not a JPEG that drafts to grayscale (e.g. CMYK): convert
            return np.asarray(image.convert("L"), dtype=np.float32)
        return np.asarray(image, dtype=np.float32)


class Detector:
    """One camera's background model; ``score()`` runs on the worker thread, one frame at a time."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self.background: np.ndarray | None = None

    def score(self, jpeg: bytes) -> float:
        """Percent of the picture that moved (regions of at least 2×2 pixels); updates the background."""
        gray = small_gray(jpeg)
        background = self.background
        if background is None or background.shape != gray.shape:
            self.background = gray
            return 0.0
        changed = np.abs(gray - background) > self.settings.threshold
        solid = changed[:-1, :-1] & changed[1:, :-1] & changed[:-1, 1:] & changed[1:, 1:]
        # a pixel counts when it belongs to at least one fully changed 2×2 block
        counted = np.zeros_like(changed)
        counted[:-1, :-1] |= solid
        counted[1:, :-1] |= solid
        counted[:-1, 1:] |= solid
        counted[1:, 1:] |= solid
        fraction = float(counted.mean())
        if fraction >= SCENE_CHANGE:
            self.background = gray
            return 0.0
        background += self.settings.adapt * (gray - background)
        return round(fraction * 100, 2)


class CameraMotion:
    """One camera's motion state, on the event loop."""

    def __init__(self, camera_id: str, settings: MotionSettings, enabled: bool) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self.enabled = enabled
        self.detector = Detector(settings)
        self.busy = False
        self.next_at = 0.0  # monotonic time the next frame may be analysed
        self.active = False
        self.started: float | None = None  # Unix time of the current event's first changed frame
        self.peak = 0.0
        self.score = 0.0
        self.streak = 0
        self.last_change = 0.0  # monotonic
        self.analysed = 0
        self.skipped = 0  # frames that arrived while the previous one was still being analysed
        self.errors = 0
        self.starts = 0  # motion events started
        self.events: deque[dict[str, Any]] = deque(maxlen=settings.history)

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "active": self.active, "score": self.score,
                "since": self.started if self.active else None,
                "peak": self.peak if self.active else None,
                "frames_analysed": self.analysed, "frames_skipped": self.skipped}

    def update(self, score: float, captured: float, now: float) -> str | None:
        """Feed one analysed frame's score; returns ``"start"`` or ``"end"`` when that happens."""
        self.analysed += 1
        self.score = score
        if score >= self.settings.min_area_pct:
            self.streak += 1
            self.last_change = now
            if not self.active and self.streak == 1:
                self.started = captured
                self.peak = score  # the event's peak counts from its first changed frame
            self.peak = max(self.peak, score)
            if not self.active and self.streak >= self.settings.frames:
                self.active = True
                self.starts += 1
                return "start"
            return None
        self.streak = 0
        if not self.active:
            self.started = None
        return self.quiet(now)

    def quiet(self, now: float) -> str | None:
        """End the event once nothing has changed for ``quiet_s``."""
        if self.active and now - self.last_change >= self.settings.quiet_s:
            self.active = False
            self.streak = 0  # a camera silent that long (ended by a tick) starts a new streak when it sends again
            return "end"
        return None

    def reset(self) -> str | None:
        """Motion detection switched off: an open event ends now."""
        self.detector = Detector(self.settings)
        self.streak = 0
        self.score = 0.0
        if self.active:
            self.active = False
            return "end"
        self.started = None
        return None


class Motion:
    """Every camera's motion detection; frames come in through ``tap(camera_id)``, events go out on
    ``events`` (camera id, ``{"event": "motion", "phase": "start"|"end", "start", "end"?, "peak"}``)."""

    def __init__(self, settings: MotionSettings, enabled: bool, executor: Executor,
                 log_dir: Path | None = None) -> None:
        self.settings = settings
        self._warnings = LogLimiter(log)
        self.default_enabled = enabled
        self._executor = executor
        self.emitted: Signal[[str, dict[str, Any]]] = Signal()
        self._log_dir = log_dir  # motion events, one JSON line each, per camera (the day's timeline)
        self.cameras: dict[str, CameraMotion] = {}

    def counters(self) -> Iterable[Family]:
        cameras = self.cameras
        yield Family("camhub_motion_frames_analysed", "Frames analysed for motion", "camera",
                     {c: m.analysed for c, m in cameras.items()})
        yield Family("camhub_motion_frames_skipped", "Frames not analysed: the camera's previous one still was",
                     "camera", {c: m.skipped for c, m in cameras.items()})
        yield Family("camhub_motion_frames_undecodable", "Frames motion detection could not decode", "camera",
                     {c: m.errors for c, m in cameras.items()})
        yield Family("camhub_motion_events", "Motion events started", "camera",
                     {c: m.starts for c, m in cameras.items()})

    def sizes(self) -> dict[str, int]:
        cameras = list(self.cameras.values())
        return {"cameras": len(cameras), "events_kept": sum(len(c.events) for c in cameras),
                "analysing": sum(c.busy for c in cameras), "log_keys": len(self._warnings)}

    def apply_options(self, camera_id: str, options: dict[str, str]) -> None:
        """A camera's hub options changed (``core.options``): motion detection on or off."""
        self.set_enabled(camera_id, options["motion"] == "on")

    def detail(self, camera_id: str) -> dict[str, Any]:
        """What a camera's detail in the API adds: its newest motion events."""
        return {"motion_events": self.events(camera_id)[:50]}

    def summary(self, camera_id: str) -> dict[str, Any]:
        """What a camera's summary in the API shows of its motion detection."""
        return {"motion": self.camera(camera_id).status()}

    def camera(self, camera_id: str) -> CameraMotion:
        state = self.cameras.get(camera_id)
        if state is None:
            state = self.cameras[camera_id] = CameraMotion(camera_id, self.settings, self.default_enabled)
            state.events.extend(self._load_events(camera_id))
        return state

    def forget(self, camera_id: str) -> None:
        """The camera was removed: its state goes (a camera that comes back starts afresh, with its saved events)."""
        self.cameras.pop(camera_id, None)

    def tap(self, camera_id: str) -> Callable[[Frame], None]:
        """The frame listener for one camera's feed (called on the event loop for every frame)."""
        state = self.camera(camera_id)
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.fps

        def on_frame(frame: Frame) -> None:
            if not state.enabled:
                return
            if state.busy:
                state.skipped += 1
                return
            now = time.monotonic()  # when it is handled here (frame.arrived: when the broker got it)
            if now < state.next_at:
                return
            state.next_at = max(state.next_at, now - interval / 2) + interval
            state.busy = True
            detector = state.detector
            future = loop.run_in_executor(self._executor, detector.score, frame.jpeg)
            future.add_done_callback(lambda f: self._scored(state, detector, f, frame.capture_time))

        return on_frame

    def _scored(self, state: CameraMotion, detector: Detector, future: asyncio.Future[float],
                captured: float) -> None:
        state.busy = False
        if future.cancelled() or detector is not state.detector:
            return
        exc = future.exception()
        if exc is not None:
            state.errors += 1
            self._warnings.warning(f"motion-{state.camera_id}", "motion on %s: cannot decode a frame (%d so far): %s",
                                   state.camera_id, state.errors, exc)
            return
        self._emit(state, state.update(future.result(), captured, time.monotonic()))

    def set_enabled(self, camera_id: str, enabled: bool) -> None:
        state = self.camera(camera_id)
        if state.enabled != enabled:
            state.enabled = enabled
            if not enabled:
                self._emit(state, state.reset())
            log.info("motion detection on %s %s", camera_id, "on" if enabled else "off")

    def tick(self) -> None:
        """Ends events of cameras that went quiet by sending nothing (called about once a second)."""
        now = time.monotonic()
        for state in self.cameras.values():
            self._emit(state, state.quiet(now))

    def _emit(self, state: CameraMotion, change: str | None) -> None:
        if change is None:
            return
        event: dict[str, Any] = {"event": "motion", "phase": change, "start": state.started,
                                 "peak": state.peak}
        if change == "end":
            event["end"] = round(time.time(), 3)
            record = {"start": state.started, "end": event["end"], "peak": state.peak}
            state.events.appendleft(record)
            self._save_event(state.camera_id, record)
            state.started = None
        log.info("motion on %s: %s (peak %.1f%%)", state.camera_id, change, state.peak)
        self.emitted.emit(state.camera_id, event)

    def events(self, camera_id: str, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Motion events, newest first; the open one (no ``end``) included."""
        state = self.camera(camera_id)
        out: list[dict[str, Any]] = []
        if state.active:
            out.append({"start": state.started, "end": None, "peak": state.peak})
        out.extend(state.events)
        return [e for e in out if (since is None or (e["end"] or time.time()) >= since)
                and (until is None or (e["start"] or 0) <= until)]

    # ---- the events log (so a restarted hub still shows the day's events) --------------------
    def _log_path(self, camera_id: str) -> Path | None:
        return None if self._log_dir is None else self._log_dir / f"{camera_id}.jsonl"

    def _save_event(self, camera_id: str, record: dict[str, Any]) -> None:
        path = self._log_path(camera_id)
        if path is not None:
            self._executor.submit(_append_line, path, json.dumps(record), self.settings.history)

    def _load_events(self, camera_id: str) -> list[dict[str, Any]]:
        path = self._log_path(camera_id)
        if path is None:
            return []
        try:
            lines = path.read_text().splitlines()[-self.settings.history:]
        except OSError:
            return []
        events = []
        for line in reversed(lines):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                data = json.loads(line)
                events.append({"start": float(data["start"]), "end": float(data["end"]),
                               "peak": float(data["peak"])})
        return events


def _append_line(path: Path, line: str, keep: int) -> None:
    """Append one event; every ``keep`` lines the file is cut back to the newest ``keep``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(line + "\n")
            lines = out.tell() // 60  # cheap estimate; trimming is rare and exactness is not needed
        if lines > 4 * keep:
            atomic_write(path, "\n".join(path.read_text().splitlines()[-keep:]) + "\n")
    except OSError as exc:
        log.warning("cannot write motion events to %s: %s", path, exc)
