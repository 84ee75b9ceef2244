"""Recordings: each camera's JPEGs stored as they arrived, on motion or always, plus a daily time-lapse.

On the event loop, a ``CameraRecorder`` (one per camera, fed by a frame tap) keeps a ring of the last
``preroll_s`` seconds of frames — references to the JPEGs the broker already holds, never copies —
and decides what is written: on motion the ring (pre-roll), every frame while motion lasts, and
``postroll_s`` more; in ``always`` mode everything; with a time-lapse interval one frame per
interval into the day's time-lapse file. Segments are cut every ``segment_s``; a day's time-lapse is cut
into parts at a share of the size limit (``TIMELAPSE_SHARE``), because recordings being written count
towards the limit and cannot be deleted: open time-lapses that outgrew it would have retention delete
every other recording as it closes.

All disk work happens on one writer thread (``Store``): opening, writing and closing segment files
(``segments.py``), the index (a JSON sidecar per closed segment, written atomically after the
file is closed and synced, so a sidecar means "complete"), retention (oldest first, by age and by
total size), and the free-space check that stops recording before the disk gets too full. At start
the index is rebuilt from disk: a segment without a sidecar was open when the hub died, so it is
probed (read up to its last whole frame) and listed like the others.

If the disk cannot keep up, frames beyond ``max_pending_bytes`` waiting for the writer are dropped
and counted, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av

from camhub.hub.core.broker import Frame
from camhub.hub.taps import segments
from camhub.hub.util.counters import Family
from camhub.hub.util.files import atomic_write
from camhub.hub.util.ratelimit import LogLimiter
from camhub.hub.util.signals import Signal

log = logging.getLogger(__name__)

GB = 1_000_000_000
RECORDING_ID = re.compile(r"^\d{10,16}-(motion|always|timelapse)$")
TIMELAPSE_FRAME_MS = 100  # a time-lapse plays at 10 frames per second
TIMELAPSE_SHARE = 0.1  # of CAMHUB_RECORD_MAX_GB, for all cameras' open time-lapse parts together


class MotionState(Protocol):
    """What a recorder reads of its camera's motion detection (``taps.motion.CameraMotion``)."""

    active: bool
    peak: float


@dataclass(frozen=True)
class RecordSettings:
    """What the recorder needs of the hub's settings (their defaults live in config.HubConfig)."""

    root: Path
    preroll_s: float
    postroll_s: float
    segment_s: float
    keep_days: float
    max_gb: float
    min_free_gb: float
    timelapse_s: float
    max_pending_bytes: int = 64 * 1024 * 1024  # JPEGs waiting for the writer, all cameras
    idle_close_s: float = 5.0  # a camera that sends nothing for this long has its segment closed


class Segment:
    """A segment being written (loop side): what the API shows until its sidecar exists."""

    def __init__(self, camera_id: str, kind: str, start: float) -> None:
        self.camera_id = camera_id
        self.kind = kind
        self.start = start
        self.id = f"{int(start * 1000)}-{kind}"
        self.end = start
        self.frames = 0
        self.bytes = 0
        self.peak: float | None = None
        self.writer: segments.SegmentWriter | None = None  # the writer thread's

    def restart(self, start: float) -> None:
        """Carry on as a new recording from ``start`` (writer thread, when the frame size changed). The loop's
        counters for the open segment may lose a frame or two to the race; the sidecar's come from the writer."""
        self.start = self.end = start
        self.id = f"{int(start * 1000)}-{self.kind}"
        self.frames = self.bytes = 0

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "start": round(self.start, 3), "end": round(self.end, 3),
                "frames": self.frames, "bytes": self.bytes, "peak": self.peak, "open": True}


class Store:
    """The recordings on disk, and the one thread that writes, indexes and deletes them."""

    def __init__(self, settings: RecordSettings, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self._on_change = on_change  # called on the writer thread (thread-safe callers only)
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, dict[str, Any]]] = {}  # camera -> id -> sidecar
        self._ops: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._pending = 0  # bytes queued for the writer (changed under the lock)
        self.disk_low = False
        self.free_bytes: int | None = None
        self.errors = 0
        self.deleted = 0
        self._warnings = LogLimiter(log)
        self._thread = threading.Thread(target=self._run, name="camhub-recorder", daemon=True)
        self._last_sweep = 0.0

    # ---- called from the event loop ----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close what is open and wait for the writer (blocking: call it from a worker thread)."""
        self._ops.put(None)
        if self._thread.ident is not None:  # a hub that stops before it started (bad settings) has no writer
            self._thread.join(timeout)

    def submit(self, *op: Any) -> None:
        self._ops.put(op)

    def submit_frame(self, segment: Segment, jpeg: bytes, at: float | None, pts_ms: int | None = None) -> bool:
        """Queue a frame for ``segment``; False (dropped) when the writer is too far behind."""
        with self._lock:
            if self._pending + len(jpeg) > self.settings.max_pending_bytes:
                return False
            self._pending += len(jpeg)
        self._ops.put(("frame", segment, jpeg, at, pts_ms))
        segment.frames += 1
        segment.bytes += len(jpeg)
        return True

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {"index_cameras": len(self._index), "index_recordings": sum(len(r) for r in self._index.values()),
                    "writer_queue": self._ops.qsize(), "writer_pending_bytes": self._pending,
                    "log_keys": len(self._warnings)}

    def recordings(self, camera_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._index.get(camera_id, {}).values())

    def path(self, camera_id: str, recording_id: str) -> Path:
        return self.settings.root / camera_id / f"{recording_id}.mkv"

    def status(self) -> dict[str, Any]:
        with self._lock:
            used = sum(r["bytes"] for recs in self._index.values() for r in recs.values())
            count = sum(len(recs) for recs in self._index.values())
        return {"state": "stopped" if self.disk_low else "ok", "reason": "disk_low" if self.disk_low else None,
                "free_bytes": self.free_bytes, "min_free_bytes": int(self.settings.min_free_gb * GB),
                "used_bytes": used, "max_bytes": int(self.settings.max_gb * GB), "recordings": count,
                "deleted": self.deleted, "errors": self.errors}

    # ---- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        self._rebuild()
        self._check_disk()
        self._on_change()
        open_segments: set[Segment] = set()
        while True:
            try:
                op = self._ops.get(timeout=1.0)
            except queue.Empty:
                op = ()
            if op is None:
                for segment in list(open_segments):  # each closed, whatever another's close does
                    self._guarded(("close", segment), open_segments)
                return
            self._guarded(op, open_segments)
            if time.monotonic() - self._last_sweep > 5.0:
                self._last_sweep = time.monotonic()
                low = self.disk_low
                self._check_disk()
                self._retention(open_segments)
                if low != self.disk_low:
                    self._on_change()

    def _guarded(self, op: tuple[Any, ...], open_segments: set[Segment]) -> None:
        try:
            self._do(op, open_segments)
        except Exception as exc:  # a bad frame or a full disk must not stop the writer
            self.errors += 1
            self._warnings.warning(f"recordings-{op[0]}", "recordings: %s of %s failed (%d errors so far): %s",
                                   op[0], op[1].id, self.errors, exc)

    def _do(self, op: tuple[Any, ...], open_segments: set[Segment]) -> None:
        if not op:
            return
        kind, segment = op[0], op[1]
        if kind == "frame":
            jpeg, at, pts_ms = op[2], op[3], op[4]
            with self._lock:
                self._pending -= len(jpeg)
            if segment.writer is not None and segments.jpeg_size(jpeg) != segment.writer.size:
                # the camera changed its frame size: a track has one size, so the rest is a new recording
                self._close(segment, open_segments)
                segment.restart(at if at is not None else time.time())
            if segment.writer is None:
                if segment in open_segments:
                    return  # it failed to open: already counted
                open_segments.add(segment)
                title = f"camhub {segment.camera_id} {segment.kind}"
                segment.writer = segments.SegmentWriter(self.path(segment.camera_id, segment.id), segment.start,
                                                        jpeg, title)
            segment.writer.write(jpeg, at, pts_ms)
        elif kind == "close":
            self._close(segment, open_segments)

    def _close(self, segment: Segment, open_segments: set[Segment]) -> None:
        open_segments.discard(segment)
        writer, segment.writer = segment.writer, None
        if writer is None:
            return
        writer.close()
        # a time-lapse's timestamps are its playback pace; its real end is the last frame's capture time
        end = segment.end if segment.kind == "timelapse" else writer.end
        sidecar = {"id": segment.id, "camera": segment.camera_id, "kind": segment.kind,
                   "start": round(writer.start, 3), "end": round(end, 3), "frames": writer.frames,
                   "bytes": writer.bytes, "peak": segment.peak}
        self._write_sidecar(writer.path, sidecar)
        with self._lock:
            self._index.setdefault(segment.camera_id, {})[segment.id] = sidecar
        self._retention(open_segments)
        self._on_change()

    def _write_sidecar(self, video: Path, sidecar: dict[str, Any]) -> None:
        atomic_write(video.with_suffix(".json"), json.dumps(sidecar))

    def _rebuild(self) -> None:
        """The index from disk; a segment that was open when the hub died is probed and indexed."""
        root = self.settings.root
        index: dict[str, dict[str, dict[str, Any]]] = {}
        for camera_dir in sorted(root.iterdir()) if root.is_dir() else []:
            if not camera_dir.is_dir():
                continue
            for video in sorted(camera_dir.glob("*.mkv")):
                rec_id = video.stem
                if not RECORDING_ID.match(rec_id):
                    continue
                sidecar_path = video.with_suffix(".json")
                sidecar = None
                with contextlib.suppress(OSError, ValueError):
                    sidecar = json.loads(sidecar_path.read_text())
                if not isinstance(sidecar, dict):
                    sidecar = self._recover(camera_dir.name, video)
                if sidecar is not None:
                    index.setdefault(camera_dir.name, {})[rec_id] = sidecar
            for stale in camera_dir.glob("*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
        with self._lock:
            self._index = index
        log.info("recordings: %d found in %s", sum(len(v) for v in index.values()), root)

    def _recover(self, camera_id: str, video: Path) -> dict[str, Any] | None:
        rec_id = video.stem
        start_ms, kind = rec_id.split("-", 1)
        try:
            found = segments.probe(video)
        except (OSError, av.error.FFmpegError) as exc:
            found = None
            log.warning("recordings: %s is unreadable (%s)", video, exc)
        if found is None or found.frames == 0:
            log.warning("recordings: removing %s, which holds no whole frame (the hub stopped as it began)", video)
            with contextlib.suppress(OSError):
                video.unlink()
            return None
        start = found.start if found.start is not None else int(start_ms) / 1000
        # a time-lapse's timestamps are its playback pace: its last frame was written about when the file was
        end = max(start, video.stat().st_mtime) if kind == "timelapse" else start + found.duration_s
        sidecar = {"id": rec_id, "camera": camera_id, "kind": kind, "start": round(start, 3),
                   "end": round(end, 3), "frames": found.frames, "bytes": found.bytes,
                   "peak": None, "recovered": True}
        self._write_sidecar(video, sidecar)
        log.info("recordings: recovered %s (%d frames) after an unclean stop", video, found.frames)
        return sidecar

    def _check_disk(self) -> None:
        root = self.settings.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.free_bytes = shutil.disk_usage(root).free
        except OSError as exc:
            log.warning("recordings: cannot use %s: %s", root, exc)
            self.free_bytes = 0
        limit = self.settings.min_free_gb * GB
        # stop below the limit plus what is still queued; start again with some room (no flapping)
        if not self.disk_low and self.free_bytes - self._pending <= limit + 64 * 1024 * 1024:
            self.disk_low = True
            log.warning("recordings: stopped, %.2f GB free on %s (CAMHUB_RECORD_MIN_FREE_GB = %s)",
                        self.free_bytes / GB, root, self.settings.min_free_gb)
        elif self.disk_low and self.free_bytes > limit + 256 * 1024 * 1024:
            self.disk_low = False
            log.info("recordings: %.2f GB free again, recording resumes", self.free_bytes / GB)

    def _retention(self, open_segments: set[Segment]) -> None:
        """Delete closed recordings older than keep_days, then the oldest until under max_gb.

        The recordings being written count towards max_gb too (they cannot be deleted, older ones
        make room for them), so the disk use stays within the limit while they grow."""
        busy = {(s.camera_id, s.id) for s in open_segments}
        with self._lock:
            closed = sorted(((r["start"], camera, rec_id, r["bytes"], r["end"])
                             for camera, recs in self._index.items() for rec_id, r in recs.items()
                             if (camera, rec_id) not in busy))
        growing = sum(s.writer.bytes for s in open_segments if s.writer is not None)
        total = growing + sum(item[3] for item in closed)
        oldest_kept = time.time() - self.settings.keep_days * 86400
        limit = self.settings.max_gb * GB
        removed = False
        for _start, camera, rec_id, size, end in closed:
            if end >= oldest_kept and total <= limit:
                break
            self._delete(camera, rec_id)
            total -= size
            removed = True
        if removed:
            self._on_change()

    def _delete(self, camera_id: str, rec_id: str) -> None:
        video = self.path(camera_id, rec_id)
        with contextlib.suppress(FileNotFoundError):
            video.with_suffix(".json").unlink()  # the sidecar first: a half-deleted pair is never listed
        with contextlib.suppress(FileNotFoundError):
            video.unlink()
        with self._lock:
            recordings = self._index.get(camera_id)
            if recordings is not None:
                recordings.pop(rec_id, None)
                if not recordings:  # a camera whose recordings are all gone (perhaps gone itself) is not kept
                    del self._index[camera_id]
        self.deleted += 1
        log.info("recordings: deleted %s/%s (retention)", camera_id, rec_id)


class CameraRecorder:
    """One camera's recording decisions (event loop): pre-roll ring, motion, post-roll, time-lapse."""

    def __init__(self, camera_id: str, store: Store, mode: str, motion: MotionState,
                 cameras: Callable[[], int] = lambda: 1) -> None:
        self.camera_id = camera_id
        self.cameras = cameras  # how many cameras record (and may keep a time-lapse open): they share a budget
        self.store = store
        self.settings = store.settings
        self.mode = mode
        self.motion = motion
        self.ring: deque[tuple[float, bytes]] = deque()  # (capture time, JPEG): the pre-roll
        self.ring_bytes = 0
        self.segment: Segment | None = None
        self.timelapse: Segment | None = None
        self.timelapse_next = 0.0
        self.timelapse_day = ""
        self.post_until = 0.0  # monotonic: keep recording until then after motion ended
        self.written_until = 0.0  # capture time of the last frame recorded: never twice in two segments
        self.last_frame = 0.0
        self.dropped = 0

    def status(self) -> dict[str, Any]:
        segment = self.segment
        return {"mode": self.mode, "active": segment is not None, "since": segment.start if segment else None,
                "stopped": "disk_low" if self.store.disk_low and self.mode != "off" else None,
                "frames_dropped": self.dropped, "timelapse_s": self.settings.timelapse_s or None}

    def frame(self, frame: Frame) -> None:
        """The frame tap: called on the event loop for every frame of this camera."""
        now = time.monotonic()  # when it is handled here (frame.arrived: when the broker got it)
        self.last_frame = now
        at, jpeg = frame.capture_time, frame.jpeg
        if self.settings.preroll_s > 0 and self.mode == "motion":  # only a motion recording starts early
            self.ring.append((at, jpeg))
            self.ring_bytes += len(jpeg)
            while self.ring and (at - self.ring[0][0] > self.settings.preroll_s
                                 or self.ring_bytes > self.settings.max_pending_bytes // 4):
                self.ring_bytes -= len(self.ring.popleft()[1])
        if self.motion.active:
            self.post_until = now + self.settings.postroll_s
        wanted = not self.store.disk_low and (
            self.mode == "always" or (self.mode == "motion" and (self.motion.active or now < self.post_until)))
        segment = self.segment
        if segment is not None and (not wanted or at - segment.start >= self.settings.segment_s):
            self.close()
            segment = None
        if wanted:
            if segment is None:
                # motion: the pre-roll first (what is not in an earlier segment already), then this frame
                backlog = [(a, j) for a, j in self.ring if a > self.written_until] if self.mode == "motion" else []
                if not backlog or backlog[-1][1] is not jpeg:
                    backlog.append((at, jpeg))
                segment = self.segment = Segment(self.camera_id, self.mode, backlog[0][0])
                for ring_at, ring_jpeg in backlog:
                    self._write(segment, ring_jpeg, ring_at)
            else:
                self._write(segment, jpeg, at)
            if self.motion.active:
                segment.peak = max(segment.peak or 0.0, self.motion.peak)
        if self.settings.timelapse_s > 0 and at >= self.timelapse_next and not self.store.disk_low:
            self._timelapse(jpeg, at)

    def _write(self, segment: Segment, jpeg: bytes, at: float) -> None:
        if self.store.submit_frame(segment, jpeg, at):
            segment.end = max(segment.end, at)
            self.written_until = at
        else:
            self.dropped += 1

    def _timelapse(self, jpeg: bytes, at: float) -> None:
        self.timelapse_next = at + self.settings.timelapse_s
        day = time.strftime("%Y-%m-%d", time.localtime(at))
        part_limit = self.settings.max_gb * GB * TIMELAPSE_SHARE / max(1, self.cameras())
        if self.timelapse is not None and (day != self.timelapse_day
                                           or self.timelapse.bytes + len(jpeg) > part_limit):
            self.store.submit("close", self.timelapse)
            self.timelapse = None
        if self.timelapse is None:
            self.timelapse = Segment(self.camera_id, "timelapse", at)
            self.timelapse_day = day
        segment = self.timelapse
        if self.store.submit_frame(segment, jpeg, None, segment.frames * TIMELAPSE_FRAME_MS):
            segment.end = at

    def tick(self, now: float) -> None:
        """About once a second: post-roll over, camera silent, or the disk too full: close."""
        if self.segment is None:
            return
        if self.store.disk_low or now - self.last_frame > self.settings.idle_close_s or (
                self.mode == "motion" and not self.motion.active and now >= self.post_until) or self.mode == "off":
            self.close()

    def close(self) -> None:
        if self.segment is not None:
            self.store.submit("close", self.segment)
            self.segment = None

    def close_all(self) -> None:
        self.close()
        if self.timelapse is not None:
            self.store.submit("close", self.timelapse)
            self.timelapse = None

    def recordings(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Closed and open recordings, newest first, overlapping [since, until]."""
        items = [dict(r, open=False) for r in self.store.recordings(self.camera_id)]
        open_ids = {r["id"] for r in items}
        for segment in (self.segment, self.timelapse):
            if segment is not None and segment.id not in open_ids and segment.frames:
                items.append(segment.info())
        items = [r for r in items if (since is None or r["end"] >= since) and (until is None or r["start"] <= until)]
        return sorted(items, key=lambda r: r["start"], reverse=True)


class Recordings:
    """Every camera's recorder, the store, and the status the API and MQTT show."""

    def __init__(self, settings: RecordSettings) -> None:
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self.status_changed: Signal[[dict[str, Any]]] = Signal()  # the store's status (on the event loop)
        self.store = Store(settings, self._changed_in_thread)
        self.cameras: dict[str, CameraRecorder] = {}

    def _changed_in_thread(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._status_changed)

    def _status_changed(self) -> None:
        self.status_changed.emit(self.store.status())

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_recording_frames_dropped", "Frames not recorded: the disk writer was too far behind",
                     "camera", {c: r.dropped for c, r in self.cameras.items()})
        yield Family("camhub_recordings_deleted", "Recordings deleted", "reason", {"retention": self.store.deleted})
        yield Family("camhub_recording_errors", "Recording writes that failed", "kind", {"write": self.store.errors})

    def sizes(self) -> dict[str, int]:
        recorders = list(self.cameras.values())
        return {"recorders": len(recorders), "preroll_frames": sum(len(r.ring) for r in recorders),
                "preroll_bytes": sum(r.ring_bytes for r in recorders),
                "open_segments": sum((r.segment is not None) + (r.timelapse is not None) for r in recorders),
                **self.store.sizes()}

    def apply_options(self, camera_id: str, options: dict[str, str]) -> None:
        """A camera's hub options changed (``core.options``): its recording mode."""
        self.set_mode(camera_id, options["record"])

    def health(self) -> dict[str, Any]:
        """What ``/api/hub`` shows of the recordings."""
        return {"recordings": self.store.status()}

    def summary(self, camera_id: str) -> dict[str, Any]:
        """What a camera's summary in the API shows of its recordings."""
        return {"recording": self.recorder_for(camera_id).status()}

    def start(self) -> None:
        self.store.start()

    async def stop(self) -> None:
        for recorder in self.cameras.values():
            recorder.close_all()
        await asyncio.to_thread(self.store.stop)

    def recorder(self, camera_id: str, mode: str, motion: MotionState) -> CameraRecorder:
        recorder = self.cameras.get(camera_id)
        if recorder is None:
            recorder = self.cameras[camera_id] = CameraRecorder(camera_id, self.store, mode, motion,
                                                                lambda: len(self.cameras))
        return recorder

    def forget(self, camera_id: str) -> None:
        """The camera was removed: its open recording and time-lapse are closed, its pre-roll let go, its recorder
        dropped (its recordings stay on disk, under retention like any others)."""
        recorder = self.cameras.pop(camera_id, None)
        if recorder is not None:
            recorder.close_all()
            recorder.ring.clear()
            recorder.ring_bytes = 0

    def recorder_for(self, camera_id: str) -> CameraRecorder:
        """A known camera's recorder (every feed gets one when it is made)."""
        return self.cameras[camera_id]

    def set_mode(self, camera_id: str, mode: str) -> None:
        recorder = self.cameras.get(camera_id)
        if recorder is not None and recorder.mode != mode:
            recorder.close()
            recorder.mode = mode
            recorder.ring.clear()
            recorder.ring_bytes = 0
            log.info("recording on %s: %s", camera_id, mode)

    def tick(self) -> None:
        now = time.monotonic()
        for recorder in self.cameras.values():
            recorder.tick(now)
