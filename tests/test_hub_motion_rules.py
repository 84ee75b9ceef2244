"""Motion detection's rules, in process: scripted frame sequences in, motion ON/OFF out at exact times.

The frames are real JPEGs the detector decodes: a 320×240 grey picture in which whole 8×8 blocks are
painted (each block is one pixel of the detector's 1/8-scale picture, 40×30 = 1200 pixels, so a
3×3-block square is exactly 0.75 % of the picture). They go through ``Motion`` as the broker's tap
hands them over, analysed on a real worker thread; only the clock is the test's (``tests/support/
clock.py``, the motion module's ``time``), so every ON and OFF lands at an exact second. Frames come
every 0.25 s (motion analyses 4 a second here), times are exact binary fractions.
The end-to-end behaviour (a real hub, a camera, MQTT) is test_hub_motion.py.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from camhub.hub.core.broker import Frame
from camhub.hub.taps import motion as motion_module
from camhub.hub.taps.motion import Detector, Motion, MotionSettings
from tests.support.clock import Clock
from tests.support.families import families

POOL = ThreadPoolExecutor(1)  # never used: each test gets its own worker thread here (the `pool` fixture)
T0 = 1_000_000.0
WIDTH, HEIGHT = 40, 30  # the detector's picture: one pixel per 8×8 block of the 320×240 frame
STEP = 0.25  # seconds between frames

Box = tuple[int, int, int, int]  # x, y, width, height in blocks


@functools.lru_cache(maxsize=256)
def picture(level: int = 128, boxes: tuple[Box, ...] = (), box_level: int = 255,
            size: tuple[int, int] = (320, 240)) -> bytes:
    """A grey picture with ``boxes`` (whole 8×8 blocks) painted ``box_level``, as a JPEG."""
    pixels = np.full((size[1], size[0]), level, dtype=np.uint8)
    for x, y, w, h in boxes:
        pixels[y * 8:(y + h) * 8, x * 8:(x + w) * 8] = box_level
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


STILL = picture()


def square(i: int, side: int = 3) -> bytes:
    """An object of side×side blocks, somewhere else in each frame ``i`` (it moves)."""
    return picture(boxes=((4 * (i % 9), 10 + 3 * (i % 5), side, side),))


@dataclass
class Run:
    """One camera's motion detection, fed frames at scripted times."""

    motion: Motion
    clock: Clock
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    seq: int = 0
    camera: str = "yard"

    def __post_init__(self) -> None:
        self.motion.emitted.connect(lambda camera_id, event: self.events.append(
            (self.clock.now - T0, event["phase"], event)))
        self.tap = self.motion.tap(self.camera)
        self.state = self.motion.camera(self.camera)

    def at(self, t: float) -> None:
        self.clock.now = T0 + t

    async def frame(self, t: float, jpeg: bytes, settle: bool = True) -> None:
        self.at(t)
        self.seq += 1
        self.tap(Frame(jpeg, self.seq, T0 + t, T0 + t, in_memfd=False))
        if settle:
            await self.settled()

    async def settled(self) -> None:
        for _ in range(2000):
            if not self.state.busy:
                return
            await asyncio.sleep(0.002)
        raise AssertionError("a frame's analysis did not finish")

    async def play(self, start: float, frames: Iterable[bytes]) -> float:
        """Frames every STEP seconds from ``start``; returns the time after the last."""
        t = start
        for jpeg in frames:
            await self.frame(t, jpeg)
            t += STEP
        return t

    def tick(self, t: float) -> None:
        self.at(t)
        self.motion.tick()

    def phases(self) -> list[tuple[float, str]]:
        return [(t, phase) for t, phase, _ in self.events]


@pytest.fixture(autouse=True)
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadPoolExecutor]:
    """Each test its own worker thread. A pool kept by the module keeps, once used, a thread that a fork of
    this process does not have (``make mutate``: mutmut forks a process per mutant after a first run of the
    tests): the fork's analyses would wait for it for ever, and every mutant would count as killed."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="test-motion-rules")
    monkeypatch.setattr(sys.modules[__name__], "POOL", executor, raising=False)
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(T0)
    monkeypatch.setattr(motion_module, "time", clock)
    return clock


def run(clock: Clock, log_dir: Path | None = None, **settings: Any) -> Run:
    return Run(Motion(MotionSettings(**{"fps": 4.0, **settings}), True, POOL, log_dir=log_dir), clock)


# ---- the detector: what counts as changed --------------------------------------------------------
def _score(*frames: bytes, **settings: Any) -> float:
    detector = Detector(MotionSettings(**settings))
    scores = [detector.score(jpeg) for jpeg in frames]
    return scores[-1]


@pytest.mark.parametrize(("boxes", "score"), [
    (((5, 5, 1, 1),), 0.0),  # one changed pixel: noise
    (tuple((2 * i, 2, 1, 1) for i in range(20)), 0.0),  # twenty scattered ones: still noise
    (((5, 5, 10, 1),), 0.0),  # a line one pixel wide
    (((5, 5, 2, 1), (5, 6, 1, 1)), 0.0),  # three pixels of a 2×2 block
    (((5, 5, 2, 2),), round(4 / 12, 2)),  # a 2×2 block: 4 of 1200 pixels
    (((5, 5, 2, 2), (7, 7, 1, 1)), round(4 / 12, 2)),  # and a pixel touching it only at a corner
    (((5, 5, 2, 3),), 0.5),
    (((5, 5, 3, 3),), 0.75),
    (((5, 5, 2, 2), (5, 7, 1, 1)), round(4 / 12, 2)),  # a pixel below the block: part of no 2×2 of its own
    (((0, 0, 2, 2), (38, 28, 2, 2)), round(8 / 12, 2)),  # in the corners: every edge counts
    (((0, 28, 2, 2), (38, 0, 2, 2)), round(8 / 12, 2)),
    (((10, 10, 4, 4), (20, 20, 3, 2)), round(22 / 12, 2)),
])
def test_only_pixels_in_a_changed_2x2_block_count(boxes: tuple[Box, ...], score: float) -> None:
    assert _score(STILL, picture(boxes=boxes)) == score


def test_a_pixel_must_differ_by_more_than_the_threshold() -> None:
    box = ((5, 5, 3, 3),)
    assert _score(STILL, picture(boxes=box, box_level=128 + 24)) == 0.0  # exactly the threshold: unchanged
    assert _score(STILL, picture(boxes=box, box_level=128 + 25)) == 0.75
    assert _score(STILL, picture(boxes=box, box_level=128 - 25)) == 0.75  # darker counts as much as brighter
    assert _score(STILL, picture(boxes=box, box_level=128 + 40), threshold=40) == 0.0  # the setting is used
    assert _score(STILL, picture(boxes=box, box_level=128 + 41), threshold=40) == 0.75


def test_the_first_frame_and_a_new_frame_size_are_learnt_not_scored() -> None:
    detector = Detector(MotionSettings())
    assert detector.score(square(1)) == 0.0
    assert detector.score(STILL) == 0.75  # the first frame was the background
    assert detector.score(picture(boxes=((1, 1, 5, 5),), size=(640, 480))) == 0.0  # another size: learnt
    assert detector.score(picture(size=(640, 480))) == round(25 / 48, 2)  # compared with it from then on


@pytest.mark.parametrize(("rows", "score"), [(18, 0.0), (17, round(17 * 40 / 12, 2))])
def test_most_of_the_picture_changing_at_once_is_learnt_as_the_new_scene(rows: int, score: float) -> None:
    """60 % of the picture at once is a change of light: learnt, not scored; less is scored as it is."""
    detector = Detector(MotionSettings())
    detector.score(STILL)
    assert detector.score(picture(boxes=((0, 0, 40, rows),), box_level=200)) == score


def test_motion_right_after_a_change_of_light_is_seen() -> None:
    detector = Detector(MotionSettings())
    detector.score(STILL)
    assert detector.score(picture(level=200)) == 0.0  # the light changed: the new scene is learnt ...
    assert detector.score(picture(level=200, boxes=((5, 5, 3, 3),), box_level=60)) == 0.75  # ... and used at once


def test_the_background_follows_an_object_that_stays() -> None:
    """A parked car is motion while it arrives and part of the scene a few seconds later (adapt = 0.05)."""
    detector = Detector(MotionSettings())
    detector.score(STILL)
    parked = picture(boxes=((5, 5, 3, 3),))
    scores = [detector.score(parked) for _ in range(40)]
    assert scores[:33] == [0.75] * 33 and scores[33:] == [0.0] * 7
    fast = Detector(MotionSettings(adapt=0.5))
    fast.score(STILL)
    assert [fast.score(parked) for _ in range(4)] == [0.75, 0.75, 0.75, 0.0]


# ---- motion events: exact ON and OFF -------------------------------------------------------------
async def test_motion_starts_at_the_second_changed_frame_and_ends_quiet_s_after_the_last(clock: Clock) -> None:
    r = run(clock)
    t = await r.play(0.0, [STILL, STILL, STILL, square(1), square(2)])  # changed at 0.75 and 1.0
    assert r.phases() == [(1.0, "start")]
    assert r.events[0][2] == {"event": "motion", "phase": "start", "start": T0 + 0.75, "peak": 0.75}
    status = r.motion.summary("yard")["motion"]
    assert status["active"] and status["since"] == T0 + 0.75 and status["peak"] == 0.75 and status["score"] == 0.75
    await r.play(t, [STILL] * 20)  # 1.25 .. 6.0: the last changed frame was at 1.0
    assert r.phases() == [(1.0, "start"), (6.0, "end")]
    assert r.events[1][2] == {"event": "motion", "phase": "end", "start": T0 + 0.75, "end": T0 + 6.0, "peak": 0.75}
    assert r.motion.events("yard") == [{"start": T0 + 0.75, "end": T0 + 6.0, "peak": 0.75}]
    status = r.motion.summary("yard")["motion"]
    assert not status["active"] and status["since"] is None and status["peak"] is None
    assert status["frames_analysed"] == 25 and status["score"] == 0.0


async def test_motion_goes_on_while_frames_keep_changing_and_the_quiet_period_restarts(clock: Clock) -> None:
    r = run(clock, quiet_s=1.0)
    t = await r.play(0.0, [STILL, square(1), square(2)])  # start at 0.5
    t = await r.play(t, [STILL] * 3 + [square(3)] + [STILL] * 3 + [square(4, side=4)])  # 0.75 .. 2.75
    assert r.phases() == [(0.5, "start")]
    await r.play(t, [STILL] * 4)  # 2.75 .. 3.5: one second after the last change (2.5)
    assert r.phases() == [(0.5, "start"), (3.5, "end")]
    assert r.events[-1][2]["peak"] == round(16 / 12, 2)  # the biggest of the event's frames


async def test_the_peak_includes_the_frames_before_motion_was_reported(clock: Clock) -> None:
    r = run(clock, quiet_s=1.0)
    t = await r.play(0.0, [STILL, square(1, side=4), square(2)])  # 1.33 %, then 0.75 %: the start is reported now
    assert r.events[0][2]["peak"] == round(16 / 12, 2)
    await r.play(t, [STILL] * 5)
    assert r.events[-1][2]["peak"] == round(16 / 12, 2) and r.motion.events("yard")[0]["peak"] == round(16 / 12, 2)


async def test_an_unchanged_frame_resets_the_streak(clock: Clock) -> None:
    """Scattered changed frames (noise, a flicker) never add up to motion: only frames in a row do."""
    r = run(clock, frames=3)
    frames = []
    for i in range(20):
        frames += [square(2 * i), square(2 * i + 1), STILL]  # two changed frames, then an unchanged one
    t = await r.play(0.0, [STILL, *frames])
    assert r.events == [] and r.state.analysed == 61
    await r.play(t, [square(1), square(2), square(3)])
    assert r.phases() == [(t + 0.5, "start")]
    assert r.events[0][2]["start"] == T0 + t  # the first frame of the streak


async def test_a_camera_that_stops_sending_ends_its_motion_at_the_tick_after_quiet_s(clock: Clock) -> None:
    r = run(clock)
    await r.play(0.0, [STILL, square(1), square(2)])  # start at 0.5; the camera then goes silent
    for second in range(1, 8):
        r.tick(float(second))
    assert r.phases() == [(0.5, "start"), (6.0, "end")]  # 5.5 s after the last frame: the tick at 6
    assert r.events[-1][2]["end"] == T0 + 6.0
    assert not r.motion.camera("yard").active


async def test_a_camera_back_from_silence_after_its_motion_ended_starts_a_new_event_afresh(clock: Clock) -> None:
    """Its changed frames before the silence are not in a row with the new ones: the new event needs
    ``frames`` changed frames again, starts at its own first one and has its own peak."""
    r = run(clock)
    await r.play(0.0, [STILL, square(1, side=4), square(2, side=4)])  # start at 0.5 (peak 1.33); then silence
    for second in range(1, 8):
        r.tick(float(second))  # ends at 6.0
    await r.frame(8.0, square(3))  # it sends again, still moving: one changed frame is no event yet
    assert r.phases() == [(0.5, "start"), (6.0, "end")]
    await r.frame(8.25, square(4))
    assert r.phases() == [(0.5, "start"), (6.0, "end"), (8.25, "start")]
    assert r.events[-1][2] == {"event": "motion", "phase": "start", "start": T0 + 8.0, "peak": 0.75}
    assert families(r.motion)["camhub_motion_events"] == ("camera", "counter", {"yard": 2})


async def test_ticks_end_nothing_while_motion_is_off_or_fresh(clock: Clock) -> None:
    r = run(clock)
    await r.play(0.0, [STILL, square(1), square(2)])
    r.tick(5.49)
    assert r.phases() == [(0.5, "start")]
    r.tick(5.5)  # exactly quiet_s after the last change
    assert r.phases() == [(0.5, "start"), (5.5, "end")]
    r.tick(20.0)
    assert len(r.events) == 2  # ended once


async def test_a_change_of_light_is_learnt_and_motion_is_seen_again_in_the_new_light(clock: Clock) -> None:
    r = run(clock)
    light = picture(level=200)
    t = await r.play(0.0, [STILL, STILL, light, light, light, light])
    assert r.events == [] and r.state.score == 0.0
    lit_object = [picture(level=200, boxes=((4 * i, 10, 3, 3),), box_level=60) for i in (1, 2)]
    await r.play(t, lit_object)
    assert r.phases() == [(t + STEP, "start")]


@pytest.mark.parametrize(("settings", "side_w", "side_h", "reported"), [
    ({}, 2, 2, False),  # 0.33 % < 0.5 %
    ({}, 2, 3, True),  # exactly 0.5 %: enough
    ({"min_area_pct": 0.75}, 2, 3, False),
    ({"min_area_pct": 0.75}, 3, 3, True),
])
async def test_the_minimum_area_is_a_lower_bound(clock: Clock, settings: dict[str, float], side_w: int,
                                                 side_h: int, reported: bool) -> None:
    r = run(clock, **settings)
    await r.play(0.0, [STILL] + [picture(boxes=((4 * i, 10, side_w, side_h),)) for i in range(8)])
    assert bool(r.events) is reported


async def test_switching_detection_off_ends_an_event_at_once_and_on_again_starts_afresh(clock: Clock) -> None:
    r = run(clock)
    t = await r.play(0.0, [STILL, square(1), square(2)])
    r.at(t)
    r.motion.apply_options("yard", {"motion": "off", "record": "off"})
    assert r.phases() == [(0.5, "start"), (t, "end")]
    assert r.motion.events("yard") == [{"start": T0 + 0.25, "end": T0 + t, "peak": 0.75}]
    analysed = r.state.analysed
    t = await r.play(t, [square(3), square(4)])
    assert r.state.analysed == analysed and len(r.events) == 2  # frames are not looked at while off
    r.motion.set_enabled("yard", False)  # already off: nothing happens
    assert len(r.events) == 2
    r.motion.apply_options("yard", {"motion": "on", "record": "off"})
    await r.play(t, [picture(level=90), picture(level=90, boxes=((4, 10, 3, 3),))])  # the first is the background
    assert len(r.events) == 2
    status = r.motion.summary("yard")["motion"]
    assert status["enabled"] and not status["active"] and status["score"] == 0.75


async def test_switching_off_without_an_event_emits_nothing(clock: Clock) -> None:
    r = run(clock)
    await r.play(0.0, [STILL, square(1)])  # one changed frame: no event yet
    r.motion.set_enabled("yard", False)
    assert r.events == [] and r.motion.events("yard") == []
    assert r.motion.summary("yard")["motion"] == {"enabled": False, "active": False, "score": 0.0, "since": None,
                                                  "peak": None, "frames_analysed": 2, "frames_skipped": 0}


async def test_at_most_fps_frames_a_second_are_analysed_even_after_a_gap(clock: Clock) -> None:
    r = run(clock)  # 4 a second
    for i in range(40):  # a camera at 20 fps, for two seconds
        await r.frame(i / 20, STILL)
    assert r.state.analysed == 9  # at 0, 0.15, 0.4, 0.65 ... 1.9: the first at once, then 4 a second
    for i in range(40):  # after ten silent seconds: no burst to catch up
        await r.frame(12.0 + i / 20, STILL)
    assert r.state.analysed == 18 and r.state.skipped == 0


async def test_a_frame_arriving_while_the_last_is_analysed_is_skipped_and_counted(clock: Clock) -> None:
    r = run(clock)
    await r.frame(0.0, STILL, settle=False)
    await r.frame(0.25, STILL, settle=False)  # the first is still on the worker thread
    await r.settled()
    assert (r.state.analysed, r.state.skipped) == (1, 1)
    families = {f.name: dict(f.values) for f in r.motion.counters()}
    assert families["camhub_motion_frames_analysed"] == {"yard": 1}
    assert families["camhub_motion_frames_skipped"] == {"yard": 1}
    assert families["camhub_motion_frames_undecodable"] == {"yard": 0}
    assert families["camhub_motion_events"] == {"yard": 0}


async def test_an_undecodable_frame_is_counted_and_logged_and_detection_goes_on(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    r = run(clock)
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.motion"):
        t = await r.play(0.0, [STILL, b"\xff\xd8 not a JPEG", b"neither"])
    assert r.state.errors == 2 and r.state.analysed == 1
    assert [m for m in caplog.messages if "cannot decode" in m] == [
        caplog.messages[0]] and "motion on yard: cannot decode a frame (1 so far)" in caplog.messages[0]
    await r.play(t, [square(1), square(2)])
    assert r.phases() == [(t + STEP, "start")]
    assert {f.name: dict(f.values) for f in r.motion.counters()}["camhub_motion_events"] == {"yard": 1}


async def test_events_are_listed_newest_first_and_by_time(clock: Clock) -> None:
    r = run(clock, quiet_s=1.0)
    for i in range(3):  # events at about 1, 11 and 21 s
        await r.play(10.0 * i, [STILL, square(2 * i), square(2 * i + 1)] + [STILL] * 5)
    await r.play(30.0, [square(7), square(8)])  # and one going on
    events = r.motion.events("yard")
    assert [e["start"] - T0 for e in events] == [30.0, 20.25, 10.25, 0.25]
    assert events[0]["end"] is None and events[1]["end"] == T0 + 20.5 + 1.0
    assert [e["start"] - T0 for e in r.motion.events("yard", since=T0 + 11.5)] == [30.0, 20.25, 10.25]
    assert [e["start"] - T0 for e in r.motion.events("yard", since=T0 + 11.5001)] == [30.0, 20.25]
    assert [e["start"] - T0 for e in r.motion.events("yard", until=T0 + 10.25)] == [10.25, 0.25]
    assert [e["start"] - T0 for e in r.motion.events("yard", until=T0 + 10.2499)] == [0.25]
    assert [e["start"] - T0 for e in r.motion.events("yard", since=clock.now)] == [30.0]  # going on: it reaches now
    assert r.motion.events("yard", since=clock.now + 0.01) == []
    assert r.motion.detail("yard") == {"motion_events": events}


async def test_events_are_kept_on_disk_so_a_restarted_hub_shows_them(clock: Clock, tmp_path: Path) -> None:
    r = run(clock, log_dir=tmp_path, quiet_s=1.0, history=3)
    for i in range(5):
        await r.play(10.0 * i, [STILL, square(2 * i), square(2 * i + 1)] + [STILL] * 5)
    POOL.submit(lambda: None).result(5)  # the writes went to the same worker thread
    lines = (tmp_path / "yard.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines][-1] == r.motion.events("yard")[0]
    (tmp_path / "yard.jsonl").write_text("\n".join([*lines[:-1], "not json", '{"start": 1}', '{"start": "x", "end": 2, '
                                                    '"peak": 1}', lines[-1]]) + "\n")
    again = run(clock, log_dir=tmp_path, history=5)
    assert again.motion.events("yard") == r.motion.events("yard")[:2]  # the readable ones of the newest five
    assert run(clock, log_dir=tmp_path / "none").motion.events("yard") == []


async def test_the_events_file_stays_bounded(clock: Clock, tmp_path: Path) -> None:
    """It grows by one line per event; past about 4 × ``history`` lines it is cut back to the newest ``history``."""
    r = run(clock, log_dir=tmp_path, quiet_s=1.0, history=2)
    counts = []
    for i in range(30):
        await r.play(10.0 * i, [STILL, square(2 * i), square(2 * i + 1)] + [STILL] * 5)
        POOL.submit(lambda: None).result(5)
        saved = [json.loads(line) for line in (tmp_path / "yard.jsonl").read_text().splitlines()]  # each readable
        assert saved[-2:] == r.motion.events("yard")[::-1]  # the newest last
        counts.append(len(saved))
    assert max(counts) <= 4 * 2 + 4
    cuts = [after for before, after in itertools.pairwise(counts) if after < before]
    assert cuts and set(cuts) == {2}


def test_a_jpeg_that_is_not_grey_or_ycbcr_is_converted_and_compared_alike() -> None:
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(picture(boxes=((5, 5, 3, 3),)))).convert("CMYK").save(cmyk, "JPEG", quality=95)
    gray = motion_module.small_gray(cmyk.getvalue())
    assert gray.shape in ((30, 40), (240, 320)) and gray.dtype == np.float32
    assert gray.mean() > 100  # the picture's own greys, not zeros


async def test_an_analysis_that_finishes_after_detection_was_switched_off_and_on_is_dropped(clock: Clock) -> None:
    r = run(clock)
    await r.play(0.0, [STILL])
    await r.frame(0.25, square(1), settle=False)  # on the worker thread while ...
    r.motion.set_enabled("yard", False)  # ... detection is switched off
    r.motion.set_enabled("yard", True)  # and on again (a fresh background)
    await r.settled()
    await asyncio.sleep(0.05)
    assert r.state.analysed == 1 and r.state.score == 0.0  # the old background's result was not used
    await r.play(0.5, [STILL, square(2), square(3)])  # the first frame after it is the new background
    assert r.phases() == [(1.0, "start")]


async def test_a_motion_log_that_cannot_be_written_is_logged_not_fatal(
        clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "motion").write_text("a file where the folder belongs")
    r = run(clock, log_dir=tmp_path / "motion", quiet_s=1.0)
    with caplog.at_level(logging.WARNING, "camhub.hub.taps.motion"):
        await r.play(0.0, [STILL, square(1), square(2)] + [STILL] * 5)
        POOL.submit(lambda: None).result(5)
    assert r.phases() == [(0.5, "start"), (1.5, "end")] and len(r.motion.events("yard")) == 1
    assert f"cannot write motion events to {tmp_path / 'motion' / 'yard.jsonl'}: [Errno 17] File exists" in caplog.text


async def test_a_camera_at_fps_whose_frames_come_early_or_late_has_every_frame_analysed(clock: Clock) -> None:
    """At most ``fps`` a second, yet a camera sending exactly that many, each up to a fifth of the
    interval early or late (Wi-Fi), is not thinned out: the next frame is due half an interval early."""
    r = run(clock)  # 4 a second
    for k in range(17):  # 0, 0.30, 0.45, 0.80, 0.95, ...: 0.15 s apart, then 0.35
        await r.frame(0.25 * k + (0.05 if k % 2 else -0.05) if k else 0.0, STILL)
    assert (r.state.analysed, r.state.skipped) == (17, 0)


async def test_frames_arriving_during_an_analysis_are_all_skipped_and_counted(clock: Clock) -> None:
    r = run(clock)
    assert r.motion.summary("yard")["motion"] == {"enabled": True, "active": False, "score": 0.0, "since": None,
                                                  "peak": None, "frames_analysed": 0, "frames_skipped": 0}
    assert r.motion.sizes() == {"cameras": 1, "events_kept": 0, "analysing": 0, "log_keys": 0}
    for i in range(3):  # the first is still on the worker thread when the next two come
        await r.frame(0.25 * i, STILL, settle=False)
    assert r.motion.sizes() == {"cameras": 1, "events_kept": 0, "analysing": 1, "log_keys": 0}
    await r.settled()
    assert r.motion.sizes()["analysing"] == 0
    assert families(r.motion)["camhub_motion_frames_skipped"] == ("camera", "counter", {"yard": 2})
    assert families(r.motion)["camhub_motion_frames_analysed"] == ("camera", "counter", {"yard": 1})


async def test_each_camera_has_its_own_detection_events_counts_and_warnings(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    yard = run(clock, quiet_s=1.0)
    gate = Run(yard.motion, clock, camera="gate")
    heard: list[tuple[str, str]] = []
    yard.motion.emitted.connect(lambda camera_id, event: heard.append((camera_id, event["phase"])))
    with caplog.at_level(logging.INFO, "camhub.hub.taps.motion"):
        await yard.play(0.0, [STILL, square(1), square(2), b"not a JPEG"])  # motion at 0.5
        await gate.play(1.0, [STILL, b"nor this", STILL])  # the gate's own frames: still, and its own warning
        yard.tick(2.0)
        yard.motion.set_enabled("gate", False)
        yard.motion.set_enabled("gate", True)
    assert heard == [("yard", "start"), ("yard", "end")]
    assert yard.motion.events("gate") == [] and len(yard.motion.events("yard")) == 1
    assert yard.motion.summary("gate")["motion"]["frames_analysed"] == 2
    got = families(yard.motion)
    assert got["camhub_motion_frames_analysed"] == ("camera", "counter", {"yard": 3, "gate": 2})
    assert got["camhub_motion_frames_undecodable"] == ("camera", "counter", {"yard": 1, "gate": 1})
    assert got["camhub_motion_events"] == ("camera", "counter", {"yard": 1, "gate": 0})
    assert [m[:37] for m in caplog.messages if "cannot decode" in m] == [
        "motion on yard: cannot decode a frame", "motion on gate: cannot decode a frame"]
    assert "cannot identify image file" in caplog.messages[-4]  # and why: Pillow's reason
    assert caplog.messages[-3:] == ["motion on yard: end (peak 0.8%)", "motion detection on gate off",
                                    "motion detection on gate on"]
    assert "motion on yard: start (peak 0.8%)" in caplog.messages
    assert yard.motion.sizes() == {"cameras": 2, "events_kept": 1, "analysing": 0, "log_keys": 2}


async def test_a_removed_camera_comes_back_afresh_with_its_saved_events(clock: Clock, tmp_path: Path) -> None:
    log_dir = tmp_path / "state" / "motion"  # made as needed, with its parents
    r = run(clock, log_dir=log_dir, quiet_s=1.0)
    await r.play(0.0, [STILL, square(1), square(2)] + [STILL] * 5)  # one event, saved
    await r.play(10.0, [STILL, square(3)])  # one changed frame when it is removed
    POOL.submit(lambda: None).result(5)
    saved = r.motion.events("yard")
    r.motion.forget("yard")
    r.motion.forget("never-seen")  # nothing to forget: no error
    assert r.motion.sizes()["cameras"] == 0
    back = Run(r.motion, clock)
    assert back.motion.events("yard") == saved == [{"start": T0 + 0.25, "end": T0 + 1.5, "peak": 0.75}]
    await back.play(20.0, [square(4), square(5), square(6)])  # its first frame is its new background
    assert back.phases() == [(20.5, "start")]


async def test_the_detail_shows_the_50_newest_events_of_the_200_a_camera_keeps(clock: Clock, tmp_path: Path) -> None:
    (tmp_path / "yard.jsonl").write_text("".join(json.dumps({"start": T0 + i, "end": T0 + i + 0.5, "peak": 1.0}) + "\n"
                                                 for i in range(250)))
    r = run(clock, log_dir=tmp_path, quiet_s=1.0)  # the hub's default: 200 events per camera
    events = r.motion.events("yard")
    assert [e["start"] - T0 for e in events] == list(range(249, 49, -1))
    assert r.motion.detail("yard") == {"motion_events": events[:50]}
    await r.play(300.0, [STILL, square(1), square(2)] + [STILL] * 5)  # one more: the oldest goes
    events = r.motion.events("yard")
    assert len(events) == 200 and events[0]["start"] == T0 + 300.25 and events[-1]["start"] == T0 + 51


async def test_an_event_ends_at_the_millisecond(clock: Clock) -> None:
    r = run(clock)
    await r.play(0.0, [STILL, square(1), square(2)])
    r.tick(6.0037)
    assert r.events[-1][2]["end"] == 1_000_006.004 and r.motion.events("yard")[0]["end"] == 1_000_006.004


async def test_frames_are_analysed_on_the_worker_motion_is_given_and_wait_for_it(clock: Clock) -> None:
    """The hub gives motion detection one worker thread, so all cameras' analyses together take at most one
    core: while it is busy, a frame waits for it (and the camera's next frames are skipped)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="test-motion-busy")
    release = threading.Event()
    pool.submit(release.wait, 5)
    r = Run(Motion(MotionSettings(fps=4.0), True, pool), clock)
    await r.frame(0.0, STILL, settle=False)
    await asyncio.sleep(0.3)
    assert r.state.busy and r.state.analysed == 0
    release.set()
    await r.settled()
    assert r.state.analysed == 1
    pool.shutdown()


async def test_unreadable_lines_of_the_events_file_are_skipped(clock: Clock, tmp_path: Path) -> None:
    """Lines a hub could not have written whole (a crash mid-line, a hand edit, an older hub's null start)."""
    good = {"start": T0 + 1, "end": T0 + 2, "peak": 1.5}
    lines = [json.dumps(good), "null", "[1, 2]", '{"start": null, "end": 2, "peak": 1}', '{"start": 1, "end": 2}',
             '{"start": 1, "end']
    (tmp_path / "yard.jsonl").write_text("\n".join(lines) + "\n")
    assert run(clock, log_dir=tmp_path).motion.events("yard") == [good]


async def test_the_status_says_false_and_null_whenever_no_event_goes_on(clock: Clock) -> None:
    """The API's ``active`` is false (not null), ``since`` and ``peak`` null: with a first changed frame that
    is no event yet, after an event ends, after switching off. The open event is listed with its peak."""
    r = run(clock, quiet_s=1.0)

    def status() -> tuple[Any, Any, Any]:
        got = r.motion.summary("yard")["motion"]
        return got["active"], got["since"], got["peak"]

    await r.play(0.0, [STILL, square(1, side=4)])
    assert status() == (False, None, None) and status()[0] is False
    await r.frame(0.5, square(2))
    assert status() == (True, T0 + 0.25, round(16 / 12, 2))
    assert r.motion.events("yard") == [{"start": T0 + 0.25, "end": None, "peak": round(16 / 12, 2)}]
    await r.play(0.75, [STILL] * 4)  # ends at 1.5
    assert r.phases() == [(0.5, "start"), (1.5, "end")] and status()[0] is False and status()[1:] == (None, None)
    await r.play(2.0, [square(3), square(4)])
    r.motion.set_enabled("yard", False)
    assert r.phases()[-1] == (2.25, "end") and status()[0] is False and status()[1:] == (None, None)
