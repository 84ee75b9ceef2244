"""The recorder's rules, in process: what is recorded when (pre-roll, motion, post-roll, segments, time-lapse),
what is kept (retention by age and by size, at the boundaries), and what a restart finds on disk.

A camera's recorder is fed frames at scripted capture times (every 0.125 s: exact binary fractions) and its
motion state is switched by the script; the real ``Store`` writes real segment files on its writer thread.
Only the clock is the test's (``tests/support/clock.py``, the recordings module's ``time``), and, where a
disk that fills up is needed, the free space the module reads (a disk cannot be filled safely on a shared
machine; the real disk's refusal is test_hub_recordings.py's). End to end (a real hub, ffprobe): that file.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from camhub.hub.core.broker import Frame
from camhub.hub.taps import recordings as recordings_module
from camhub.hub.taps import segments
from camhub.hub.taps.motion import CameraMotion, MotionSettings
from camhub.hub.taps.recordings import GB, CameraRecorder, Recordings, RecordSettings, Store
from tests.support.clock import Clock
from tests.support.families import families
from tests.support.waiting import wait_until

T0 = 1_700_000_000.0  # Unix seconds (2023): recording ids have 10 digits or more
STEP = 0.125
DAY = 86400.0


def jpeg(i: int, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 40 + 7 * (i % 30)).save(out, "JPEG", quality=80)
    return out.getvalue()


JPEGS = [jpeg(i) for i in range(30)]


def settings(root: Path, **changes: Any) -> RecordSettings:
    return replace(RecordSettings(root=root, preroll_s=2.0, postroll_s=3.0, segment_s=60.0, keep_days=7.0,
                                  max_gb=10.0, min_free_gb=0.0, timelapse_s=0.0), **changes)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(T0)
    monkeypatch.setattr(recordings_module, "time", clock)
    return clock


class FreeSpace:
    """The free space the recordings module sees (``shutil.disk_usage``), set by the test."""

    def __init__(self, free: int) -> None:
        self.free = free

    def disk_usage(self, path: Any) -> Any:
        return SimpleNamespace(total=10 * self.free, used=0, free=self.free)


@dataclass
class Cam:
    """One camera's recorder and its motion state, driven by a script."""

    clock: Clock
    store: Store
    recorder: CameraRecorder
    motion: CameraMotion
    seq: int = 0

    def feed(self, start: float, end: float, active: Iterable[tuple[float, float]] = (), peak: float = 1.5,
             step: float = STEP, frames: list[bytes] | None = None) -> None:
        """Frames every ``step`` from ``start`` to before ``end``; motion on in the ``active`` spans."""
        spans = list(active)
        t = start
        while t < end - 1e-9:
            self.motion.active = any(a <= t < b for a, b in spans)
            self.motion.peak = peak if self.motion.active else 0.0
            self.frame(t, (frames or JPEGS)[self.seq % len(frames or JPEGS)])
            t += step

    def frame(self, t: float, data: bytes) -> None:
        self.clock.now = T0 + t
        self.seq += 1
        self.recorder.frame(Frame(data, self.seq, T0 + t, T0 + t, in_memfd=False))

    def tick(self, t: float) -> None:
        self.clock.now = T0 + t
        self.recorder.tick(T0 + t)

    def finish(self) -> list[dict[str, Any]]:
        """Stop as the hub stops; the recordings, oldest first, times relative to T0."""
        self.recorder.close_all()
        self.store.stop()
        return relative(self.store.recordings("yard"))


def relative(recs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({**r, "start": round(r["start"] - T0, 3), "end": round(r["end"] - T0, 3)} for r in recs),
                  key=lambda r: r["start"])


@pytest.fixture
def cams(tmp_path: Path, clock: Clock) -> Iterator[Any]:
    made: list[Store] = []

    def make(mode: str = "motion", start: bool = True, root: Path | None = None, **changes: Any) -> Cam:
        """A camera's recorder; each with its own folder unless ``root`` is given (one store per folder)."""
        store = Store(settings(root or tmp_path / f"rec-{len(made)}", **changes), lambda: None)
        made.append(store)
        if start:
            store.start()
        motion = CameraMotion("yard", MotionSettings(), enabled=True)
        return Cam(clock, store, CameraRecorder("yard", store, mode, motion), motion)

    yield make
    for store in made:
        store.stop(timeout=10)


def packets(store: Store, rec: dict[str, Any]) -> list[float]:
    """The capture times (relative to T0) of the frames in a recording's file."""
    path = store.path("yard", rec["id"])
    return [round(rec["start"] + pts / 1000, 3) for pts, _ in segments.read(path)]


# ---- what a motion recording holds ---------------------------------------------------------------
def test_a_motion_recording_is_the_preroll_the_motion_and_the_postroll(cams: Any) -> None:
    cam = cams()  # pre-roll 2 s, post-roll 3 s
    cam.feed(0.0, 15.0, active=[(5.0, 7.0)])  # motion from 5 s; its last frame at 6.875
    (rec,) = cam.finish()
    # from 2 s before the first motion frame to the last frame before 3 s after the last motion frame
    assert (rec["kind"], rec["start"], rec["end"], rec["frames"]) == ("motion", 3.0, 9.75, 55)
    assert rec["peak"] == 1.5 and rec["bytes"] == sum(len(JPEGS[i % 30]) for i in range(24, 79))
    assert packets(cam.store, rec) == [3.0 + STEP * i for i in range(55)]


def test_the_postroll_and_preroll_are_their_own_settings(cams: Any) -> None:
    cam = cams(preroll_s=1.0, postroll_s=0.5)
    cam.feed(0.0, 15.0, active=[(5.0, 7.0)])
    (rec,) = cam.finish()
    assert (rec["start"], rec["end"]) == (4.0, 7.25)


def test_motion_again_within_the_postroll_continues_the_recording(cams: Any) -> None:
    cam = cams()
    cam.feed(0.0, 20.0, active=[(5.0, 6.0), (8.0, 9.0)])  # 2 s apart: within the 3 s post-roll
    (rec,) = cam.finish()
    assert (rec["start"], rec["end"], rec["frames"]) == (3.0, 11.75, 71)


def test_a_later_event_records_no_frame_twice(cams: Any) -> None:
    cam = cams()
    cam.feed(0.0, 20.0, active=[(5.0, 6.0), (10.0, 11.0)])  # the second's pre-roll overlaps the first's post-roll
    first, second = cam.finish()
    assert (first["start"], first["end"]) == (3.0, 8.75)
    assert (second["start"], second["end"]) == (8.875, 13.75)  # its pre-roll starts after the first's last frame
    assert first["frames"] + second["frames"] == (13.75 - 3.0) / STEP + 1


def test_the_recording_ends_at_the_tick_after_the_postroll_when_frames_stop(cams: Any) -> None:
    cam = cams()
    cam.feed(0.0, 6.0, active=[(5.0, 7.0)])  # the camera goes silent at 6 s, motion still on
    cam.motion.active = False  # motion ends (its own tick)
    cam.tick(8.0)
    assert cam.recorder.segment is not None  # post-roll: until 5.875 + 3
    cam.tick(8.875)
    assert cam.recorder.segment is None
    (rec,) = cam.finish()
    assert (rec["start"], rec["end"]) == (3.0, 5.875)


def test_a_silent_camera_has_its_recording_closed_after_idle_close_s(cams: Any) -> None:
    cam = cams(mode="always", idle_close_s=5.0)
    cam.feed(0.0, 2.0)
    cam.tick(6.875)  # 5 s after the last frame (1.875): not yet
    assert cam.recorder.segment is not None
    cam.tick(6.876)
    assert cam.recorder.segment is None
    (rec,) = cam.finish()
    assert (rec["kind"], rec["start"], rec["end"], rec["frames"]) == ("always", 0.0, 1.875, 16)


def test_always_mode_records_everything_in_segments_of_segment_s(cams: Any) -> None:
    cam = cams(mode="always", segment_s=10.0)
    cam.feed(0.0, 25.0)
    recs = cam.finish()
    assert [(r["kind"], r["start"], r["end"], r["frames"]) for r in recs] == [
        ("always", 0.0, 9.875, 80), ("always", 10.0, 19.875, 80), ("always", 20.0, 24.875, 40)]
    assert all(r["peak"] is None for r in recs)  # no motion: no peak


def test_off_records_nothing_and_motion_mode_records_nothing_without_motion(cams: Any) -> None:
    for mode in ("off", "motion"):
        cam = cams(mode=mode)
        cam.feed(0.0, 10.0, active=[(2.0, 4.0)] if mode == "off" else [])
        assert cam.recorder.segment is None and cam.recorder.recordings() == []
        assert cam.finish() == []
    assert not list((cam.store.settings.root).rglob("*.mkv"))


def test_only_a_motion_recorder_keeps_its_ring_and_within_the_byte_limit(cams: Any) -> None:
    cam = cams(mode="motion", max_pending_bytes=4 * 5 * len(JPEGS[0]))  # a quarter: five frames of pre-roll
    cam.feed(0.0, 4.0, frames=[JPEGS[0]])
    assert len(cam.recorder.ring) == 5 and cam.recorder.ring_bytes == 5 * len(JPEGS[0])
    always = cams(mode="always")
    always.feed(0.0, 1.0)
    assert len(always.recorder.ring) == 0
    no_preroll = cams(mode="motion", preroll_s=0.0)
    no_preroll.feed(0.0, 1.0)
    assert len(no_preroll.recorder.ring) == 0


# ---- what the recorder shows ---------------------------------------------------------------------
def test_status_follows_the_open_recording(cams: Any) -> None:
    cam = cams(mode="motion", timelapse_s=30.0)
    assert cam.recorder.status() == {"mode": "motion", "active": False, "since": None, "stopped": None,
                                     "frames_dropped": 0, "timelapse_s": 30.0}
    cam.feed(0.0, 6.0, active=[(5.0, 7.0)])
    status = cam.recorder.status()
    assert status["active"] is True and status["since"] == T0 + 3.0
    assert cams(mode="off").recorder.status()["timelapse_s"] is None


def test_open_and_closed_recordings_are_listed_newest_first_by_overlap(cams: Any, clock: Clock) -> None:
    cam = cams(mode="always", segment_s=10.0)
    cam.feed(0.0, 25.0)
    wait_until(lambda: len(cam.store.recordings("yard")) == 2, 10, "two closed segments")
    listed = relative(cam.recorder.recordings())
    assert [(r["start"], r["open"]) for r in sorted(listed, key=lambda r: -r["start"])] == [
        (20.0, True), (10.0, False), (0.0, False)]
    assert [r["start"] for r in cam.recorder.recordings()] == [T0 + 20.0, T0 + 10.0, T0]  # newest first
    open_one = cam.recorder.recordings()[0]
    assert (open_one["frames"], open_one["end"], open_one["kind"]) == (40, T0 + 24.875, "always")
    starts = [r["start"] - T0 for r in cam.recorder.recordings(since=T0 + 9.875)]
    assert starts == [20.0, 10.0, 0.0]  # the first ends at 9.875: it overlaps
    assert [r["start"] - T0 for r in cam.recorder.recordings(since=T0 + 9.876)] == [20.0, 10.0]
    assert [r["start"] - T0 for r in cam.recorder.recordings(until=T0 + 10.0)] == [10.0, 0.0]
    assert [r["start"] - T0 for r in cam.recorder.recordings(until=T0 + 9.999)] == [0.0]


def test_a_recording_without_frames_yet_is_not_listed(cams: Any) -> None:
    cam = cams(mode="always", start=False, max_pending_bytes=10)  # nothing fits: every frame dropped
    cam.feed(0.0, 1.0)
    assert cam.recorder.segment is not None and cam.recorder.recordings() == []
    assert cam.recorder.dropped == 8 and cam.recorder.status()["frames_dropped"] == 8


def test_frames_the_writer_cannot_take_are_dropped_and_counted(cams: Any) -> None:
    size = len(JPEGS[0])
    cam = cams(mode="always", start=False, max_pending_bytes=3 * size)  # the writer is not running: nothing drains
    cam.feed(0.0, 1.0, frames=[JPEGS[0]])
    assert cam.recorder.dropped == 5 and cam.recorder.segment is not None
    assert cam.recorder.segment.frames == 3 and cam.recorder.segment.bytes == 3 * size
    assert cam.recorder.segment.end == T0 + 0.25  # the last frame that was taken


# ---- time-lapse ----------------------------------------------------------------------------------
def test_a_timelapse_takes_one_frame_per_interval_and_plays_at_ten_a_second(cams: Any) -> None:
    cam = cams(mode="off", timelapse_s=1.0)
    cam.feed(0.0, 10.0)
    (lapse,) = cam.finish()
    assert (lapse["kind"], lapse["frames"], lapse["start"], lapse["end"]) == ("timelapse", 10, 0.0, 9.0)
    pts = [p for p, _ in segments.read(cam.store.path("yard", lapse["id"]))]
    assert pts == [100 * i for i in range(10)]


def test_a_timelapse_starts_a_new_file_each_day(cams: Any, clock: Clock) -> None:
    midnight = time.mktime(time.localtime(T0 + 3 * DAY)[:3] + (0, 0, 0, 0, 0, -1))  # a local midnight
    cam = cams(mode="off", timelapse_s=1.0)
    cam.feed(midnight - T0 - 3.0, midnight - T0 + 3.0)
    days = cam.finish()
    assert [(r["start"] - (midnight - T0), r["frames"]) for r in days] == [(-3.0, 3), (0.0, 3)]


def test_a_timelapse_is_cut_into_parts_at_a_tenth_of_the_size_limit_shared_by_the_cameras(cams: Any) -> None:
    size = len(JPEGS[0])
    cam = cams(mode="off", timelapse_s=1.0, max_gb=100 * size / GB)  # a tenth: 10 frames
    cam.feed(0.0, 35.0, step=1.0, frames=[JPEGS[0]])
    assert [(r["start"], r["frames"]) for r in cam.finish()] == [(0.0, 10), (10.0, 10), (20.0, 10), (30.0, 5)]
    two = cams(mode="off", timelapse_s=1.0, max_gb=100 * size / GB)
    two.recorder.cameras = lambda: 2  # two cameras recording: a twentieth each
    two.feed(0.0, 12.0, step=1.0, frames=[JPEGS[0]])
    assert [r["frames"] for r in two.finish()] == [5, 5, 2]


def test_open_timelapses_leave_the_motion_recordings_under_a_small_size_limit(cams: Any, clock: Clock) -> None:
    size = len(JPEGS[0])
    cam = cams(mode="motion", timelapse_s=1.0, preroll_s=0.0, postroll_s=0.0, max_gb=100 * size / GB)
    # 150 s of time-lapse would be 1.5 times the limit; the one event, near the end, is the newest recording
    cam.feed(0.0, 150.0, active=[(140.0, 141.0)], step=0.5, frames=[JPEGS[0]])
    cam.tick(150.0)
    wait_until(lambda: any(r["kind"] == "motion" for r in cam.store.recordings("yard"))
               or cam.store.deleted and cam.recorder.segment is None, 10, "the event's recording closed")
    clock.now = T0 + 160.0
    cam.store.submit()  # wakes the writer: its sweep (every 5 s) is due
    wait_until(lambda: cam.store._last_sweep == T0 + 160.0, 10, "the sweep")
    assert [r["frames"] for r in cam.store.recordings("yard") if r["kind"] == "motion"] == [2]
    assert cam.store.status()["used_bytes"] <= 100 * size


# ---- a disk that fills up ------------------------------------------------------------------------
def test_recording_stops_before_the_disk_is_full_and_resumes_with_room_to_spare(
        cams: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    mib = 1024 * 1024
    disk = FreeSpace(5 * GB + 64 * mib)  # exactly the limit (5 GB free) and the margin: stop
    monkeypatch.setattr(recordings_module, "shutil", disk)
    cam = cams(mode="always", min_free_gb=5.0, timelapse_s=1.0)
    wait_until(lambda: cam.store.disk_low, 10, "recording stopped")
    status = cam.store.status()
    assert (status["state"], status["reason"], status["free_bytes"], status["min_free_bytes"]) == (
        "stopped", "disk_low", 5 * GB + 64 * mib, 5 * GB)
    assert cam.recorder.status()["stopped"] == "disk_low"
    cam.feed(0.0, 2.0)
    assert cam.recorder.segment is None and cam.recorder.timelapse is None
    disk.free = 5 * GB + 256 * mib  # some room again, but not enough to start again (no flapping)
    cam.feed(10.0, 12.0)
    wait_until(lambda: cam.store.status()["free_bytes"] == disk.free, 10, "the writer's next check")
    assert cam.store.disk_low and cam.recorder.segment is None
    disk.free = 5 * GB + 256 * mib + 1
    cam.feed(20.0, 21.0)  # the writer's next check (every 5 s) ...
    wait_until(lambda: not cam.store.disk_low, 10, "recording resumed")
    cam.feed(30.0, 31.0)  # ... lets the next frames be recorded
    assert cam.recorder.segment is not None and cam.store.status()["state"] == "ok"
    assert cams(mode="off").recorder.status()["stopped"] is None  # a camera that records nothing is not "stopped"


def test_a_recording_under_way_is_closed_when_the_disk_runs_low(cams: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FreeSpace(10 * GB)
    monkeypatch.setattr(recordings_module, "shutil", disk)
    cam = cams(mode="always", min_free_gb=1.0, idle_close_s=60.0)
    cam.feed(0.0, 1.0)
    assert cam.recorder.segment is not None
    disk.free = GB + 64 * 1024 * 1024 - 1
    cam.clock.now = T0 + 10  # the writer's next check (every 5 s) finds the disk short of space
    wait_until(lambda: cam.store.disk_low, 10, "recording stopped")
    cam.tick(10.0)  # no frame came since: the tick closes it
    assert cam.recorder.segment is None


# ---- retention -----------------------------------------------------------------------------------
def put(root: Path, start: float, end: float, size: int, kind: str = "always", camera: str = "yard") -> str:
    """A closed recording on disk (its file and sidecar), as an earlier run left it."""
    rec_id = f"{int(start * 1000)}-{kind}"
    folder = root / camera
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{rec_id}.mkv").write_bytes(b"")
    (folder / f"{rec_id}.json").write_text(json.dumps({"id": rec_id, "camera": camera, "kind": kind, "start": start,
                                                       "end": end, "frames": 1, "bytes": size, "peak": None}))
    return rec_id


def swept(cam: Cam) -> bool:
    """The writer has run its retention sweep (every 5 s of the clock; the first at once)."""
    return bool(cam.store._last_sweep)


def kept_after_a_sweep(cam: Cam, clock: Clock) -> set[str]:
    cam.store.submit()  # wakes the writer, whose first sweep is due
    wait_until(lambda: swept(cam), 10, "a sweep")
    cam.store.stop()
    return {r["id"] for r in cam.store.recordings("yard")}


@pytest.mark.parametrize("keep_days", [1.0, 30.0])
def test_recordings_older_than_keep_days_are_deleted_to_the_second(
        tmp_path: Path, cams: Any, clock: Clock, keep_days: float) -> None:
    root = tmp_path / "rec"
    now = T0 + 100 * DAY
    clock.now = now
    age = keep_days * DAY
    old = put(root, now - age - 60, now - age - 0.001, 10)  # ended just over keep_days ago
    boundary = put(root, now - age - 30, now - age, 10)  # ended exactly keep_days ago: kept
    recent = put(root, now - 7200, now - 3600, 10)  # an hour ago
    cam = cams(keep_days=keep_days, root=root)
    assert kept_after_a_sweep(cam, clock) == {boundary, recent}
    assert not (root / "yard" / f"{old}.mkv").exists() and not (root / "yard" / f"{old}.json").exists()
    assert cam.store.deleted == 1 and cam.store.status()["deleted"] == 1


def test_the_oldest_recordings_go_first_until_the_total_is_within_max_gb(
        tmp_path: Path, cams: Any, clock: Clock) -> None:
    root = tmp_path / "rec"
    sizes = {T0 - 400: 200_000_000, T0 - 300: 150_000_000, T0 - 200: 100_000_000, T0 - 100: 50_000_000}
    ids = [put(root, start, start + 50, size) for start, size in sizes.items()]
    cam = cams(max_gb=0.5, root=root)  # 500 MB; there are 500 MB: all kept
    assert kept_after_a_sweep(cam, clock) == set(ids)
    put(root, T0 - 50, T0 - 10, 1)  # one byte more: the oldest goes (200 MB), the rest fit
    cam = cams(max_gb=0.5, root=root)
    assert kept_after_a_sweep(cam, clock) == set(ids[1:]) | {f"{int((T0 - 50) * 1000)}-always"}


def test_the_size_limit_counts_every_camera_and_the_oldest_go_first_whoever_recorded_them(
        tmp_path: Path, cams: Any, clock: Clock) -> None:
    root = tmp_path / "rec"
    yard = put(root, T0 - 300, T0 - 290, 300_000_000)
    door = put(root, T0 - 400, T0 - 390, 300_000_000, camera="door")
    cam = cams(max_gb=0.5, root=root)
    assert kept_after_a_sweep(cam, clock) == {yard}
    assert cam.store.recordings("door") == [] and not (root / "door" / f"{door}.mkv").exists()
    assert cam.store.status()["used_bytes"] == 300_000_000 and cam.store.status()["recordings"] == 1


def test_the_recording_being_written_counts_towards_max_gb(tmp_path: Path, cams: Any, clock: Clock) -> None:
    root = tmp_path / "rec"
    size = len(JPEGS[0])
    older = put(root, T0 - 100, T0 - 90, 20 * size)
    cam = cams(mode="always", max_gb=30 * size / GB, root=root)

    def sweep_with(frames: int, at: float) -> None:
        wait_until(lambda: cam.recorder.segment.writer and cam.recorder.segment.writer.bytes == frames * size, 10,
                   f"{frames} frames written")
        cam.clock.now = T0 + at
        cam.store.submit()  # wakes the writer: its sweep (every 5 s) is due
        wait_until(lambda: cam.store._last_sweep == T0 + at, 10, "the sweep")

    cam.feed(0.0, 1.0, frames=[JPEGS[0]])
    sweep_with(8, 10.0)  # 8 frames being written: 28 in all, within the limit
    assert cam.store.recordings("yard") != []
    cam.feed(10.0, 11.0, frames=[JPEGS[0]])
    sweep_with(16, 20.0)  # 16: 36 in all; the older recording makes room
    assert cam.store.recordings("yard") == []
    assert not (root / "yard" / f"{older}.mkv").exists()
    assert cam.recorder.segment is not None  # the one being written is never deleted


# ---- what a restart finds ------------------------------------------------------------------------
def unclosed(path: Path, start: float, frames: list[tuple[bytes, float | None, int | None]]) -> None:
    """A segment as a killed hub leaves it: what the writer had written (and flushed), never closed."""
    writer = segments.SegmentWriter(path, start, frames[0][0], "killed")
    for data, at, pts_ms in frames:
        writer.write(data, at, pts_ms)
    written = path.read_bytes()
    writer.close()
    path.write_bytes(written)


def test_a_restart_lists_closed_recordings_and_recovers_the_one_left_open(tmp_path: Path, cams: Any,
                                                                           clock: Clock) -> None:
    root = tmp_path / "rec"
    closed = put(root, T0 - 100, T0 - 90, 1234)
    crashed_id = f"{int((T0 - 50) * 1000)}-motion"
    crashed = root / "yard" / f"{crashed_id}.mkv"
    unclosed(crashed, T0 - 50, [(JPEGS[i % 30], T0 - 50 + i * 0.25, None) for i in range(20)])
    held = segments.probe(crashed)  # what it holds up to its last whole block
    assert held.start == T0 - 50 and 4 <= held.frames < 20
    empty_id = f"{int((T0 - 40) * 1000)}-always"
    (root / "yard" / f"{empty_id}.mkv").write_bytes(b"")  # killed as it began: no whole frame
    (root / "yard" / "notes.mkv").write_bytes(b"x")  # not a recording's name: left alone
    (root / "yard" / f"{closed}.json.tmp").write_text("half")  # a sidecar being written
    (root / "stray-file").write_text("x")
    cam = cams(root=root)
    wait_until(lambda: len(cam.store.recordings("yard")) == 2, 10, "the recordings indexed")
    recs = {r["id"]: r for r in cam.store.recordings("yard")}
    assert recs[closed]["bytes"] == 1234 and "recovered" not in recs[closed]
    recovered = recs[crashed_id]
    assert recovered["recovered"] is True and recovered["kind"] == "motion" and recovered["peak"] is None
    assert (recovered["frames"], recovered["bytes"]) == (held.frames, sum(len(JPEGS[i]) for i in range(held.frames)))
    assert (recovered["start"], recovered["end"]) == (T0 - 50, T0 - 50 + (held.frames - 1) * 0.25)
    assert json.loads((root / "yard" / f"{crashed_id}.json").read_text()) == recovered  # indexed for good
    assert not (root / "yard" / f"{empty_id}.mkv").exists()
    assert (root / "yard" / "notes.mkv").exists() and not (root / "yard" / f"{closed}.json.tmp").exists()


def test_a_recovered_timelapse_ends_when_its_file_was_last_written(tmp_path: Path, cams: Any) -> None:
    root = tmp_path / "rec"
    rec_id = f"{int((T0 - 500) * 1000)}-timelapse"
    unclosed(root / "yard" / f"{rec_id}.mkv", T0 - 500, [(JPEGS[i % 30], None, i * 100) for i in range(40)])
    os.utime(root / "yard" / f"{rec_id}.mkv", (T0 - 20, T0 - 20))
    frames = segments.probe(root / "yard" / f"{rec_id}.mkv").frames
    cam = cams(root=root)
    wait_until(lambda: cam.store.recordings("yard"), 10, "the time-lapse indexed")
    (lapse,) = cam.store.recordings("yard")
    assert (lapse["start"], lapse["end"], lapse["frames"]) == (T0 - 500, T0 - 20, frames)


def test_a_new_frame_size_closes_the_recording_and_starts_another(cams: Any) -> None:
    cam = cams(mode="always")
    cam.feed(0.0, 1.0)
    cam.feed(1.0, 2.0, frames=[jpeg(1, (96, 64))])
    small, large = cam.finish()
    assert (small["start"], small["end"], small["frames"]) == (0.0, 0.875, 8)
    assert (large["start"], large["end"], large["frames"]) == (1.0, 1.875, 8)
    assert segments.jpeg_size(next(segments.read(cam.store.path("yard", large["id"])))[1]) == (96, 64)


def test_a_write_that_fails_is_counted_and_the_writer_goes_on(tmp_path: Path, cams: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "yard").write_text("a file where the camera's folder belongs")
    cam = cams(mode="always", root=tmp_path / "rec")
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.recordings"):
        cam.feed(0.0, 1.0)
        wait_until(lambda: cam.store.errors, 10, "the failed write counted")
    assert "recordings: frame of" in caplog.text and "failed" in caplog.text
    cam.recorder.close_all()
    cam.store.stop()
    assert cam.store.status()["errors"] == cam.store.errors >= 1


# ---- every camera's recorders ----------------------------------------------------------------------
async def test_recordings_keep_one_recorder_per_camera_and_follow_the_options(tmp_path: Path, clock: Clock) -> None:
    recordings = Recordings(settings(tmp_path / "rec", timelapse_s=0.0))
    statuses: list[dict[str, Any]] = []
    recordings.status_changed.connect(statuses.append)
    motion = CameraMotion("yard", MotionSettings(), enabled=True)
    recorder = recordings.recorder("yard", "always", motion)
    assert recordings.recorder("yard", "off", motion) is recorder and recordings.recorder_for("yard") is recorder
    recordings.start()
    try:
        recorder.frame(Frame(JPEGS[0], 1, T0, T0, in_memfd=False))
        assert recordings.summary("yard")["recording"]["active"] is True
        recordings.apply_options("yard", {"motion": "on", "record": "motion"})  # closes what was open
        assert recorder.mode == "motion" and recorder.segment is None and not recorder.ring
        recordings.set_mode("yard", "motion")  # the same: nothing changes
        recordings.set_mode("nobody", "always")  # a camera without a recorder: nothing to do
        clock.now = T0 + 100
        recordings.tick()
        assert families(recordings) == {"camhub_recording_frames_dropped": ("camera", "counter", {"yard": 0}),
                                        "camhub_recordings_deleted": ("reason", "counter", {"retention": 0}),
                                        "camhub_recording_errors": ("kind", "counter", {"write": 0})}
        assert recordings.health()["recordings"]["state"] == "ok"
    finally:
        await recordings.stop()
    for _ in range(500):
        if statuses:
            break
        await asyncio.sleep(0.01)
    assert statuses and statuses[-1]["state"] == "ok"  # the store's status, on the event loop
    assert {r["kind"] for r in recordings.store.recordings("yard")} == {"always"}


@pytest.mark.parametrize("peak", [2.25, 0.5])
def test_a_recording_is_listed_alike_open_closed_and_after_a_restart_to_the_millisecond(
        tmp_path: Path, cams: Any, peak: float) -> None:
    root = tmp_path / "rec"
    cam = cams(mode="motion", start=False, root=root)  # the writer is not running yet: the recording stays open
    cam.feed(STEP / 2, 1.0, active=[(0.0, 2.0)], peak=peak)  # capture times at odd sixteenths of a second
    (listed,) = cam.recorder.recordings()
    times = [STEP / 2 + i * STEP for i in range(8)]
    assert listed == {"id": f"{int((T0 + times[0]) * 1000)}-motion", "kind": "motion",
                      "start": round(T0 + times[0], 3), "end": round(T0 + times[-1], 3), "frames": 8,
                      "bytes": sum(map(len, JPEGS[:8])), "peak": peak, "open": True}
    cam.store.start()
    cam.finish()
    closed = {**listed, "camera": "yard", "open": False}
    assert cam.recorder.recordings() == [closed]
    again = cams(mode="motion", root=root)  # the hub restarted
    wait_until(lambda: again.store.recordings("yard"), 10, "the recording indexed")
    assert again.recorder.recordings() == [closed]  # as it was (not "recovered": its sidecar says it all)


def test_after_a_new_frame_size_the_open_recording_is_listed_as_the_new_one(cams: Any) -> None:
    large = jpeg(1, (96, 64))
    cam = cams(mode="always", start=False)
    cam.feed(0.0, 1.0)
    cam.feed(1.0, 2.0, frames=[large])
    cam.store.start()  # the writer meets the new size: the first recording is closed, the rest is a new one
    wait_until(lambda: len(cam.store.recordings("yard")) == 1, 10, "the first size's recording closed")
    wait_until(lambda: cam.store.sizes()["writer_queue"] == 0, 10, "the writer done")
    cam.feed(2.0, 3.0, frames=[large])
    listed = cam.recorder.recordings()
    assert [(r["id"], r["start"], r["frames"], r["bytes"], r["open"]) for r in listed] == [
        (f"{int((T0 + 1.0) * 1000)}-always", T0 + 1.0, 8, 8 * len(large), True),  # since it began (and what came)
        (f"{int(T0 * 1000)}-always", T0, 8, sum(map(len, JPEGS[:8])), False)]
    (second, first) = cam.finish()[::-1]
    assert (second["id"], second["frames"]) == (listed[0]["id"], 16)  # the id the open one was listed with


async def test_the_diagnostics_count_recorders_preroll_open_recordings_index_and_writer_queue(
        tmp_path: Path, clock: Clock) -> None:
    root = tmp_path / "rec"
    put(root, T0 - 100, T0 - 90, 1000)
    put(root, T0 - 80, T0 - 70, 1000)
    put(root, T0 - 60, T0 - 50, 1000, camera="gate")
    recordings = Recordings(settings(root, timelapse_s=1.0))
    yard = recordings.recorder("yard", "motion", CameraMotion("yard", MotionSettings(), enabled=True))
    gate = recordings.recorder("gate", "always", CameraMotion("gate", MotionSettings(), enabled=True))
    recordings.recorder("door", "always", CameraMotion("door", MotionSettings(), enabled=True))  # sends nothing
    for i in range(4):  # no motion in the yard: its pre-roll fills; the gate records; both keep a time-lapse
        clock.now = T0 + i * STEP
        yard.frame(Frame(JPEGS[i], i, clock.now, clock.now, in_memfd=False))
        gate.frame(Frame(JPEGS[i], i, clock.now, clock.now, in_memfd=False))
    queued = sum(len(JPEGS[i]) for i in range(4)) + len(JPEGS[0]) * 2  # the gate's frames, both first lapse frames
    assert recordings.sizes() == {"recorders": 3, "preroll_frames": 4, "preroll_bytes": sum(map(len, JPEGS[:4])),
                                  "open_segments": 3, "index_cameras": 0, "index_recordings": 0,
                                  "writer_queue": 6, "writer_pending_bytes": queued, "log_keys": 0}
    recordings.start()
    try:
        await asyncio.to_thread(wait_until, lambda: recordings.store.sizes()["writer_queue"] == 0, 10, "all written")
        assert {k: recordings.sizes()[k] for k in ("index_cameras", "index_recordings", "writer_pending_bytes")} \
            == {"index_cameras": 2, "index_recordings": 3, "writer_pending_bytes": 0}
    finally:
        await recordings.stop()


async def test_the_cameras_that_record_share_the_timelapse_budget(tmp_path: Path, clock: Clock) -> None:
    size = len(JPEGS[0])
    recordings = Recordings(settings(tmp_path / "rec", timelapse_s=1.0, max_gb=100 * size / GB))  # a tenth: 10 frames
    recorders = [recordings.recorder(camera, "off", CameraMotion(camera, MotionSettings(), enabled=True))
                 for camera in ("yard", "gate")]
    recordings.start()
    try:
        for i in range(12):
            clock.now = T0 + i
            for recorder in recorders:
                recorder.frame(Frame(JPEGS[0], i, clock.now, clock.now, in_memfd=False))
    finally:
        await recordings.stop()
    assert [r["frames"] for r in relative(recordings.store.recordings("yard"))] == [5, 5, 2]  # a twentieth each


async def test_a_removed_camera_has_its_recording_closed_and_its_preroll_let_go(tmp_path: Path, clock: Clock) -> None:
    recordings = Recordings(settings(tmp_path / "rec"))
    yard = recordings.recorder("yard", "always", CameraMotion("yard", MotionSettings(), enabled=True))
    gate = recordings.recorder("gate", "motion", CameraMotion("gate", MotionSettings(), enabled=True))
    recordings.start()
    try:
        for i in range(4):
            clock.now = T0 + i * STEP
            yard.frame(Frame(JPEGS[i], i, clock.now, clock.now, in_memfd=False))
            gate.frame(Frame(JPEGS[i], i, clock.now, clock.now, in_memfd=False))
        recordings.forget("gate")
        recordings.forget("nobody")  # never recorded: nothing to do
        assert (gate.ring, gate.ring_bytes) == (deque(), 0) and list(recordings.cameras) == ["yard"]
        assert recordings.sizes()["preroll_frames"] == 0
        recordings.forget("yard")
        assert yard.segment is None and not recordings.cameras
        await asyncio.to_thread(wait_until, lambda: recordings.store.recordings("yard"), 10, "the yard's closed")
        (closed,) = recordings.store.recordings("yard")
        assert closed["frames"] == 4  # its recording closed and indexed (the recordings stay)
    finally:
        await recordings.stop()


async def test_a_new_recording_mode_starts_an_empty_preroll_and_is_logged_once(
        tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    recordings = Recordings(settings(tmp_path / "rec", preroll_s=1.0))
    motion = CameraMotion("yard", MotionSettings(), enabled=True)
    yard = recordings.recorder("yard", "motion", motion)
    feed = iter(range(1000))

    def frames(start: float, end: float) -> None:
        t = start
        while t < end:
            clock.now = T0 + t
            yard.frame(Frame(JPEGS[next(feed) % 30], 0, clock.now, clock.now, in_memfd=False))
            t += STEP

    frames(0.0, 1.0)
    with caplog.at_level(logging.INFO, "camhub.hub.taps.recordings"):
        recordings.set_mode("yard", "always")
        recordings.set_mode("yard", "motion")
        recordings.set_mode("yard", "motion")
    assert [r.getMessage() for r in caplog.records] == ["recording on yard: always", "recording on yard: motion"]
    assert recordings.sizes()["preroll_bytes"] == 0
    frames(1.0, 1.5)
    assert recordings.sizes()["preroll_bytes"] == sum(len(JPEGS[i % 30]) for i in range(8, 12))
    motion.active = True
    frames(1.5, 1.625)
    assert yard.segment is not None and yard.segment.start == T0 + 1.0  # the pre-roll since the mode changed


async def test_the_hubs_tick_closes_a_silent_cameras_recording(tmp_path: Path, clock: Clock) -> None:
    recordings = Recordings(settings(tmp_path / "rec", idle_close_s=5.0))
    yard = recordings.recorder("yard", "always", CameraMotion("yard", MotionSettings(), enabled=True))
    clock.now = T0
    yard.frame(Frame(JPEGS[0], 0, T0, T0, in_memfd=False))
    clock.now = T0 + 5.0
    recordings.tick()
    assert yard.segment is not None  # not silent for longer than idle_close_s yet
    clock.now = T0 + 5.125
    recordings.tick()
    assert yard.segment is None


def test_a_recovered_recording_starts_at_its_tag_else_at_its_name_and_each_step_is_logged(
        tmp_path: Path, cams: Any, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "rec" / "yard"
    tagged_start = T0 - 50 + 0.0006  # the file's tag has the microseconds; its name whole milliseconds (T0 - 50)
    tagged = folder / f"{int(tagged_start * 1000)}-motion.mkv"
    unclosed(tagged, tagged_start, [(JPEGS[i], tagged_start + i * 0.25, None) for i in range(8)])
    untagged = folder / f"{int((T0 - 30) * 1000)}-always.mkv"
    unclosed(untagged, T0 - 30, [(JPEGS[i], T0 - 30 + i * 0.25, None) for i in range(8)])
    untagged.write_bytes(untagged.read_bytes().replace(segments.START_TAG.encode(), b"CAMHUB_XTART"))  # tag lost
    single = folder / f"{int((T0 - 20) * 1000)}-always.mkv"
    writer = segments.SegmentWriter(single, T0 - 20, JPEGS[0], "one frame")  # closed, but no sidecar written
    writer.write(JPEGS[0], T0 - 20)
    writer.close()
    empty = folder / f"{int((T0 - 10) * 1000)}-always.mkv"
    empty.write_bytes(b"")
    held = {path: segments.probe(path).frames for path in (tagged, untagged)}
    with caplog.at_level(logging.INFO, "camhub.hub.taps.recordings"):
        cam = cams(root=tmp_path / "rec")
        wait_until(lambda: len(cam.store.recordings("yard")) == 3, 10, "the recordings recovered")
    recs = {r["id"]: r for r in cam.store.recordings("yard")}
    first = recs[tagged.stem]
    assert (first["camera"], first["start"], first["end"]) == (
        "yard", round(tagged_start, 3), round(tagged_start + (held[tagged] - 1) * 0.25, 3))
    second = recs[untagged.stem]
    assert (second["start"], second["end"]) == (T0 - 30, T0 - 30 + (held[untagged] - 1) * 0.25)
    assert (recs[single.stem]["frames"], recs[single.stem]["start"]) == (1, T0 - 20)  # one whole frame is kept
    assert not empty.exists()
    messages = [r.getMessage() for r in caplog.records]
    unreadable = next(m for m in messages if m.startswith(f"recordings: {empty} is unreadable ("))
    assert "Invalid data" in unreadable
    assert f"recordings: removing {empty}, which holds no whole frame (the hub stopped as it began)" in messages
    for path in (tagged, untagged):
        assert f"recordings: recovered {path} ({held[path]} frames) after an unclean stop" in messages


def test_while_the_disk_is_low_only_the_cameras_that_record_show_stopped(
        cams: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recordings_module, "shutil", FreeSpace(GB))
    cam = cams(mode="always", min_free_gb=1.0)
    wait_until(lambda: cam.store.disk_low, 10, "recording stopped")
    off = CameraRecorder("gate", cam.store, "off", CameraMotion("gate", MotionSettings(), enabled=True))
    assert (cam.recorder.status()["stopped"], off.status()["stopped"]) == ("disk_low", None)


def test_a_timelapse_keeps_one_file_all_day(cams: Any) -> None:
    cam = cams(mode="off", timelapse_s=30.0)
    cam.feed(0.0, 300.0, step=30.0)  # five minutes (T0 is 22:13:20 UTC: the day does not change anywhere)
    assert [(r["start"], r["frames"]) for r in cam.finish()] == [(0.0, 10)]


async def test_a_removed_camera_has_its_timelapse_closed_too(tmp_path: Path, clock: Clock) -> None:
    recordings = Recordings(settings(tmp_path / "rec", timelapse_s=1.0))
    yard = recordings.recorder("yard", "off", CameraMotion("yard", MotionSettings(), enabled=True))
    recordings.start()
    try:
        for i in range(3):
            clock.now = T0 + i
            yard.frame(Frame(JPEGS[i], i, clock.now, clock.now, in_memfd=False))
        recordings.forget("yard")
        await asyncio.to_thread(wait_until, lambda: recordings.store.recordings("yard"), 10, "the time-lapse closed")
        (lapse,) = recordings.store.recordings("yard")
        assert (lapse["kind"], lapse["frames"]) == ("timelapse", 3)
    finally:
        await recordings.stop()


def test_the_status_and_retention_of_recordings_whose_files_were_removed_by_hand(
        tmp_path: Path, cams: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(recordings_module, "shutil", FreeSpace(100 * GB))
    root = tmp_path / "rec"
    clock.now = T0
    first = put(root, T0 - 7200, T0 - 3600, 1000)
    second = put(root, T0 - 3000, T0 - 2000, 2000)
    cam = cams(keep_days=1.0, min_free_gb=2.0, root=root)
    cam.store.submit()
    wait_until(lambda: swept(cam), 10, "a first sweep (nothing due)")
    assert cam.store.status() == {"state": "ok", "reason": None, "free_bytes": 100 * GB, "min_free_bytes": 2 * GB,
                                  "used_bytes": 3000, "max_bytes": 10 * GB, "recordings": 2, "deleted": 0,
                                  "errors": 0}
    (root / "yard" / f"{first}.mkv").unlink()  # an operator tidies up by hand
    (root / "yard" / f"{second}.json").unlink()
    clock.now = T0 + 2 * DAY  # both are due now
    with caplog.at_level(logging.INFO, "camhub.hub.taps.recordings"):
        cam.store.submit()
        wait_until(lambda: cam.store.deleted == 2, 10, "both deleted")
    assert cam.store.recordings("yard") == [] and not list((root / "yard").iterdir())
    assert (cam.store.status()["deleted"], cam.store.status()["errors"]) == (2, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "(retention)" in m] == [f"recordings: deleted yard/{first} (retention)",
                                                          f"recordings: deleted yard/{second} (retention)"]


def test_a_new_frame_size_starts_a_new_timelapse_part_and_keeps_the_old_one(cams: Any) -> None:
    cam = cams(mode="off", timelapse_s=1.0, start=False)
    cam.feed(0.0, 3.0, step=1.0)
    cam.feed(3.0, 6.0, step=1.0, frames=[jpeg(1, (96, 64))])
    cam.store.start()  # the writer meets the new size: a new part starts when it does (a time-lapse's frames
    parts = cam.finish()  # carry their playback pace, not a capture time)
    assert [(r["kind"], r["frames"]) for r in parts] == [("timelapse", 3), ("timelapse", 3)]
    assert parts[0]["start"] == 0.0 and 3.0 <= parts[1]["start"] <= 5.0
    assert cam.store.errors == 0
    assert [segments.probe(cam.store.path("yard", r["id"])).frames for r in parts] == [3, 3]


def test_retention_tells_of_what_it_deleted_and_only_then(tmp_path: Path, clock: Clock) -> None:
    root = tmp_path / "rec"
    clock.now = T0 + 6 * DAY
    old = put(root, T0 - 60, T0, 10)  # six days old: due in a day (keep_days 7)
    recent = put(root, T0 + 6 * DAY - 60, T0 + 6 * DAY - 30, 10)
    told: list[dict[str, Any]] = []
    store: Store

    def changed() -> None:
        told.append(store.status())

    store = Store(settings(root, keep_days=7.0), changed)
    store.start()
    try:
        store.submit()
        wait_until(lambda: store._last_sweep, 10, "a first sweep")
        assert [t["recordings"] for t in told] == [2]  # the start's; a sweep that deletes nothing tells nothing
        clock.now = T0 + 8 * DAY  # the old one is due, and the next sweep
        store.submit()
        wait_until(lambda: store.deleted, 10, "the old one deleted")
        wait_until(lambda: len(told) == 2, 10, "the deletion told")
        assert (told[-1]["recordings"], told[-1]["deleted"]) == (1, 1)
        assert {r["id"] for r in store.recordings("yard")} == {recent} != {old}
    finally:
        store.stop()


def test_the_oldest_go_until_the_total_fits_however_many_that_takes(tmp_path: Path, cams: Any, clock: Clock) -> None:
    root = tmp_path / "rec"
    ids = [put(root, start, start + 10, size)
           for start, size in ((T0 - 300, 100_000_000), (T0 - 200, 100_000_000), (T0 - 100, 450_000_000))]
    cam = cams(max_gb=0.5, root=root)  # 650 MB for 500: both older ones go
    assert kept_after_a_sweep(cam, clock) == {ids[2]}


def test_a_store_stopped_with_a_recording_open_closes_it(cams: Any) -> None:
    cam = cams(mode="always")
    cam.feed(0.0, 1.0)
    cam.store.stop()  # without the recorders closing first
    assert [(r["start"], r["frames"]) for r in relative(cam.store.recordings("yard"))] == [(0.0, 8)]


@pytest.mark.parametrize(("after", "checked"), [(5.0, False), (5.125, True)])
def test_the_writer_checks_the_disk_once_more_than_five_seconds_have_passed(
        cams: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, after: float, checked: bool) -> None:
    disk = FreeSpace(10 * GB)
    monkeypatch.setattr(recordings_module, "shutil", disk)
    clock.now = T0
    cam = cams()
    cam.store.submit()
    wait_until(lambda: swept(cam), 10, "a first check")
    disk.free = 9 * GB
    clock.now = T0 + after
    cam.store.submit()
    cam.store.stop()  # the writer has handled that last wake-up
    assert cam.store.status()["free_bytes"] == (9 * GB if checked else 10 * GB)


def test_failed_writes_are_each_counted_and_logged_once_per_kind(tmp_path: Path, cams: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "yard").write_text("a file where the camera's folder belongs")
    cam = cams(mode="always", root=tmp_path / "rec", segment_s=1.0)
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.recordings"):
        cam.feed(0.0, 2.0)  # two recordings, neither can be opened
        cam.finish()
    assert cam.store.errors == 2 == cam.store.status()["errors"]
    (logged,) = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert logged.startswith(f"recordings: frame of {int(T0 * 1000)}-always failed (1 errors so far): ")
    assert "Not a directory" in logged or "File exists" in logged  # the reason


def test_the_disk_running_low_is_told_once(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FreeSpace(10 * GB)
    monkeypatch.setattr(recordings_module, "shutil", disk)
    told: list[str] = []
    store: Store

    def changed() -> None:
        told.append(store.status()["state"])

    clock.now = T0
    store = Store(settings(tmp_path / "rec", min_free_gb=5.0), changed)
    store.start()
    try:
        store.submit()
        wait_until(lambda: store._last_sweep, 10, "a first check")
        disk.free = GB
        for step in range(1, 4):  # three more checks; the disk is low from the first of them
            clock.now = T0 + 6 * step
            store.submit()
            wait_until(lambda: store._last_sweep == clock.now, 10, "the next check")
    finally:
        store.stop()
    assert told == ["ok", "stopped"]


def test_a_stray_video_named_before_the_recordings_is_passed_over(tmp_path: Path, cams: Any) -> None:
    root = tmp_path / "rec"
    kept = put(root, T0 - 100, T0 - 90, 10)
    (root / "yard" / "0-clip.mkv").write_bytes(b"x")  # an operator's own file: not a recording's name, sorts first
    cam = cams(root=root)
    wait_until(lambda: cam.store.recordings("yard"), 10, "the recording indexed")
    assert [r["id"] for r in cam.store.recordings("yard")] == [kept] and (root / "yard" / "0-clip.mkv").exists()


def test_a_recording_whose_sidecar_is_damaged_is_recovered_from_its_file(tmp_path: Path, cams: Any) -> None:
    folder = tmp_path / "rec" / "yard"
    rec_id = f"{int((T0 - 50) * 1000)}-always"
    unclosed(folder / f"{rec_id}.mkv", T0 - 50, [(JPEGS[i], T0 - 50 + i * 0.25, None) for i in range(8)])
    (folder / f"{rec_id}.json").write_text('{"id": "')  # cut short (a disk error, or edited by hand)
    cam = cams(root=tmp_path / "rec")
    wait_until(lambda: cam.store.recordings("yard"), 10, "the recording indexed")
    (found,) = cam.store.recordings("yard")
    assert (found["id"], found["start"], found["recovered"]) == (rec_id, T0 - 50, True)


def test_a_recordings_folder_whose_parents_are_missing_is_made(tmp_path: Path, cams: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "data" / "camhub" / "recordings"  # CAMHUB_RECORD_DIR on a fresh disk
    with caplog.at_level(logging.INFO, "camhub.hub.taps.recordings"):
        cam = cams(mode="always", root=root)
        wait_until(lambda: root.is_dir() and f"recordings: 0 found in {root}" in caplog.messages, 10, "the start")
    assert not cam.store.disk_low
    cam.feed(0.0, 1.0)
    assert [r["frames"] for r in cam.finish()] == [8]


def test_a_recordings_folder_that_cannot_be_used_stops_recording_and_says_why(
        tmp_path: Path, cams: Any, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "rec"
    root.write_text("a file where the folder belongs")
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.recordings"):
        cam = cams(mode="always", root=root)
        wait_until(lambda: cam.store.disk_low, 10, "recording stopped")
    (said,) = [m for m in caplog.messages if m.startswith("recordings: cannot use")]
    assert said.startswith(f"recordings: cannot use {root}: ") and "File exists" in said
    assert cam.store.status()["free_bytes"] == 0


def test_a_failed_close_and_a_failed_frame_are_each_logged(tmp_path: Path, cams: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "rec"
    cam = cams(mode="always", root=root, segment_s=1.0)
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.recordings"):
        cam.feed(0.0, 0.5)
        wait_until(lambda: list((root / "yard").glob("*.mkv")), 10, "the first recording open")
        for video in (root / "yard").glob("*.mkv"):
            video.unlink()  # removed by hand while being written: its close fails
        cam.feed(0.5, 1.5)
        wait_until(lambda: cam.store.errors == 1, 10, "the failed close counted")
        shutil.rmtree(root / "yard")
        (root / "yard").write_text("a file where the camera's folder belongs")  # the next recording cannot open
        cam.feed(1.5, 2.5)
        wait_until(lambda: cam.store.errors == 3, 10, "another failed close, and a failed frame")
        cam.finish()
    failed = [m.split(" of ")[0] for m in caplog.messages if " failed (" in m]
    assert failed == ["recordings: close", "recordings: frame"]  # the second close within the minute is not


def test_a_close_that_fails_as_the_hub_stops_leaves_the_other_recordings_closed(tmp_path: Path, cams: Any,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    # Stopping closes what is still open: a close that fails there (two files removed by hand while being
    # written) is counted and logged like any other, and every other recording is still closed and listed.
    root = tmp_path / "rec"
    cam = cams(mode="always", root=root)
    recorders = {camera_id: CameraRecorder(camera_id, cam.store, "always",
                                           CameraMotion(camera_id, MotionSettings(), enabled=True))
                 for camera_id in ("yard", "porch", "door")}
    for i in range(4):
        cam.clock.now = T0 + i * STEP
        for n, recorder in enumerate(recorders.values()):
            recorder.frame(Frame(JPEGS[i], i * 3 + n + 1, cam.clock.now, cam.clock.now, in_memfd=False))
    wait_until(lambda: all(list((root / c).glob("*.mkv")) for c in recorders), 10, "every recording open")
    for camera_id in ("yard", "porch"):
        for video in (root / camera_id).glob("*.mkv"):
            video.unlink()
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.recordings"):
        cam.store.stop(timeout=10)  # the recorders' own closes not asked for: the store closes what is open
    assert cam.store.errors == 2
    assert [m.split(" of ")[0] for m in caplog.messages if " failed (" in m] == ["recordings: close"]
    (door,) = cam.store.recordings("door")
    assert door["frames"] == 4 and (root / "door" / f"{door['id']}.json").is_file()


@pytest.mark.parametrize(("spare", "stopped"), [(64 * 1024 * 1024, True), (64 * 1024 * 1024 + 1, False)])
def test_recording_stops_with_the_margin_left_and_says_so(tmp_path: Path, cams: Any, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture, spare: int,
                                                          stopped: bool) -> None:
    monkeypatch.setattr(recordings_module, "shutil", FreeSpace(5 * GB + spare))
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.recordings"):
        cam = cams(mode="always", min_free_gb=5.0, root=tmp_path / "rec")
        cam.store.stop()  # the start's check done
    assert cam.store.disk_low is stopped
    said = [m for m in caplog.messages if m.startswith("recordings: stopped")]
    assert said == ([f"recordings: stopped, 5.07 GB free on {tmp_path / 'rec'} (CAMHUB_RECORD_MIN_FREE_GB = 5.0)"]
                    if stopped else [])


def test_before_its_first_check_the_store_knows_no_free_space_and_holds_no_exit(cams: Any) -> None:
    cam = cams(start=False)
    assert (cam.store.status()["free_bytes"], cam.store.status()["state"]) == (None, "ok")  # unknown yet: JSON null
    before = set(threading.enumerate())
    cam.store.start()
    (writer,) = set(threading.enumerate()) - before
    assert writer.daemon  # a hub that dies without stopping its recorder still exits


def test_recording_resumes_with_room_to_spare_and_says_so(tmp_path: Path, cams: Any, clock: Clock,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    disk = FreeSpace(GB)
    monkeypatch.setattr(recordings_module, "shutil", disk)
    clock.now = T0
    cam = cams(mode="always", min_free_gb=5.0)
    wait_until(lambda: cam.store.disk_low, 10, "recording stopped")
    disk.free = 5 * GB + 256 * 1024 * 1024 + 1
    clock.now = T0 + 6
    with caplog.at_level(logging.INFO, "camhub.hub.taps.recordings"):
        cam.store.submit()
        cam.store.stop()
    assert not cam.store.disk_low and "recordings: 5.27 GB free again, recording resumes" in caplog.messages
