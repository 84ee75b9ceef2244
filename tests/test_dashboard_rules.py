"""The dashboard's rules in a real browser: which field each chip and state line follows, and when each control
is enabled. Headless Debian chromium against the hub's HTTP side served in this process (tests/support/
hubhttp.py: the real HTTP server, camera registry, motion detection and recordings, wired as the hub wires
them), so the test sets a camera's state exactly and sees the page follow within a second (the event stream).

Two cameras: ``porch``, a node (it offers settings) whose moving picture motion detection sees, recording
off; and ``door``, a plain source with motion detection off, recording always. So each chip has a camera on
which its own source is on and the other's is off. The node's side of a settings change (its re-announce)
is played by the test here; test_dashboard_controls.py does it with the real firmware.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from camhub.hub.core.camera import OFFLINE, STREAMING
from camhub.hub.taps import segments
from camhub.hub.taps.motion import MotionSettings
from tests.support import scenes
from tests.support.browser import assert_no_serious_axe_violations, chromium, page, require_chromium
from tests.support.hubhttp import NODE_ANNOUNCE, ServedWorld

PORCH = {**NODE_ANNOUNCE, "controls": {"fps": [1, 25], "jpeg_quality": [5, 60], "frame_size": ["QVGA", "VGA"]}}


@dataclass
class World:
    served: ServedWorld
    browser: Any
    recorded_event: float  # a motion event that a recording holds
    missed_event: float  # one that none does
    recording_id: str

    def set_state(self, camera_id: str, state: str, **attributes: Any) -> None:
        def change() -> None:
            camera = self.served.services.cameras.get(camera_id)
            assert camera is not None
            for name, value in attributes.items():
                setattr(camera, name, value)
            self.served.services.cameras.set_state(camera, state)
            self.served.services.changes.notify()
        self.served.call(change)


def _today_start(now: float) -> float:
    return datetime.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def _pump(served: ServedWorld) -> None:
    """The cameras' frames, 8 a second: the porch sees someone crossing, the door a still view."""
    moving, still = scenes.moving(30, size=(160, 120)), scenes.still(5, size=(160, 120))
    cameras = served.services.cameras
    i = 0
    while True:
        for camera_id, frames in (("porch", moving), ("door", still)):
            camera = cameras.get(camera_id)
            if camera is not None:
                camera.feed.publish(frames[i % len(frames)], time.time())
        i += 1
        await asyncio.sleep(0.125)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("dashboard-rules")
    now = time.time()
    base = max(now - 120, _today_start(now) + 1)  # today's, whenever the test runs
    # An earlier run left on disk: a recording of the door from 2 s before the first motion event to 8 s after
    # it, and two motion events, the second after the recording had ended.
    rec_start = base - 2
    recording_id = f"{int(rec_start * 1000)}-motion"
    jpeg = scenes.still(1, size=(160, 120))[0]
    writer = segments.SegmentWriter(tmp / "rec" / "door" / f"{recording_id}.mkv", rec_start, jpeg, "door")
    for i in range(21):
        writer.write(jpeg, rec_start + i / 2)
    writer.close()
    (tmp / "rec" / "door" / f"{recording_id}.json").write_text(json.dumps({
        "id": recording_id, "camera": "door", "kind": "motion", "start": rec_start, "end": writer.end,
        "frames": writer.frames, "bytes": writer.bytes, "peak": 1.5}))
    (tmp / "motion").mkdir()
    (tmp / "motion" / "door.jsonl").write_text(
        json.dumps({"start": base, "end": base + 3, "peak": 1.5}) + "\n"
        + json.dumps({"start": base + 20, "end": base + 23, "peak": 2.0}) + "\n")
    served = ServedWorld(tmp, motion_log=tmp / "motion", motion_settings=MotionSettings(quiet_s=30))

    def cameras() -> None:
        services = served.services
        porch = services.cameras.add("porch", "Porch", "mqtt", PORCH["stream_url"], dict(PORCH))
        door = services.cameras.add("door", "Door", "static", "http://127.0.0.1:9/door")
        for camera in (porch, door):
            camera.available = True
            services.cameras.set_state(camera, STREAMING)
        services.options.update("door", {"motion": "off", "record": "always"})
        services.recordings.start()
        asyncio.get_running_loop().create_task(_pump(served))

    served.call(cameras)
    try:
        with chromium() as browser:
            yield World(served, browser, base, base + 20, recording_id)
    finally:
        served.close()


def _visible(pg: Any, selector: str) -> bool:
    return bool(pg.evaluate(f"() => {{ const e = document.querySelector({json.dumps(selector)}); "
                            "return !!e && !e.hidden && e.getClientRects().length > 0; }"))


def _tile(camera_id: str, part: str) -> str:
    return f'#grid .tile[data-id="{camera_id}"] .{part}'


# ---- the grid's chips ------------------------------------------------------------------------------
def test_the_motion_chip_follows_motion_and_the_rec_chip_follows_recording(world: World) -> None:
    with page(world.browser) as pg:
        pg.goto(world.served.url + "/")
        pg.wait_for_function(f"() => !document.querySelector('{_tile('porch', 'motion-chip')}')?.hidden")
        pg.wait_for_function(f"() => !document.querySelector('{_tile('door', 'rec-chip')}')?.hidden")
        pg.wait_for_timeout(1500)  # a few more summaries: the other chips stay as they are
        assert _visible(pg, _tile("porch", "motion-chip")) and not _visible(pg, _tile("porch", "rec-chip"))
        assert _visible(pg, _tile("door", "rec-chip")) and not _visible(pg, _tile("door", "motion-chip"))
        assert pg.get_attribute(_tile("door", "rec-chip"), "title").startswith("Recording since ")
        assert pg.get_attribute(_tile("porch", "rec-chip"), "title") == ""
        assert_no_serious_axe_violations(pg, "the grid with its Motion and Rec chips")


def test_the_fps_chip_shows_while_streaming_and_last_seen_while_offline(world: World) -> None:
    with page(world.browser) as pg:
        pg.goto(world.served.url + "/")
        pg.wait_for_function(f"() => !document.querySelector('{_tile('porch', 'fps-chip')}')?.hidden")
        assert not _visible(pg, _tile("porch", "last-seen"))
        world.set_state("porch", OFFLINE, last_seen=time.time() - 150)
        try:
            pg.wait_for_function(f"() => !document.querySelector('{_tile('porch', 'last-seen')}').hidden")
            assert pg.inner_text(_tile("porch", "last-seen")) == "last seen 2 min ago"
            assert not _visible(pg, _tile("porch", "fps-chip"))
        finally:
            world.set_state("porch", STREAMING)
        pg.wait_for_function(f"() => document.querySelector('{_tile('porch', 'last-seen')}').hidden")
        assert _visible(pg, _tile("porch", "fps-chip"))


# ---- the header -----------------------------------------------------------------------------------
def test_the_header_counts_the_hubs_viewers_and_its_cameras_online(world: World) -> None:
    # The grid itself holds no stream (its tiles are snapshots), so every viewer counted is one opened here.
    host, port = world.served.url.removeprefix("http://").split(":")
    streams: list[http.client.HTTPResponse] = []  # held open: a response collected closes its stream
    with page(world.browser) as pg:
        pg.goto(world.served.url + "/")
        pg.wait_for_function("() => document.querySelector('#h-cams .pill-text').textContent === '2/2 online'")
        assert pg.get_attribute("#h-cams", "data-level") == "ok"
        assert pg.inner_text("#h-viewers .pill-text") == "0 viewers"
        try:
            for expected in ("1 viewer", "2 viewers"):
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
                connection.request("GET", "/cameras/porch/stream")
                streams.append(connection.getresponse())
                assert streams[-1].status == 200
                pg.wait_for_function(
                    f"() => document.querySelector('#h-viewers .pill-text').textContent === '{expected}'")
        finally:
            for stream in streams:
                stream.close()
        pg.wait_for_function("() => document.querySelector('#h-viewers .pill-text').textContent === '0 viewers'")

        world.set_state("porch", OFFLINE)
        try:
            pg.wait_for_function("() => document.querySelector('#h-cams .pill-text').textContent === '1/2 online'")
            assert pg.get_attribute("#h-cams", "data-level") == "warn"
            world.set_state("door", OFFLINE)
            pg.wait_for_function("() => document.querySelector('#h-cams .pill-text').textContent === '0/2 online'")
            assert pg.get_attribute("#h-cams", "data-level") == "bad"
        finally:
            world.set_state("porch", STREAMING)
            world.set_state("door", STREAMING)
        pg.wait_for_function("() => document.querySelector('#h-cams').dataset.level === 'ok'")


# ---- the camera view ---------------------------------------------------------------------------------
def test_the_state_lines_and_option_menus_follow_the_hub(world: World) -> None:
    services = world.served.services
    with page(world.browser) as pg:
        pg.goto(world.served.url + "/#/camera/porch")
        pg.wait_for_function("() => document.querySelector('#motion-state').textContent === 'Motion now'")
        assert pg.get_attribute("#motion-state", "data-active") == "true"
        assert pg.inner_text("#rec-state") == "" and pg.get_attribute("#rec-state", "data-state") == "idle"
        assert (pg.input_value("#opt-motion"), pg.input_value("#opt-record")) == ("on", "off")
        world.served.call(services.options.update, "porch", {"record": "motion"})  # changed elsewhere
        pg.wait_for_function("() => document.querySelector('#opt-record').value === 'motion'")
        world.served.call(services.options.update, "porch", {"record": "off"})
        pg.wait_for_function("() => document.querySelector('#opt-record').value === 'off'")

        pg.goto(world.served.url + "/#/camera/door")
        pg.wait_for_function("() => document.querySelector('#rec-state').dataset.state === 'recording'")
        assert pg.inner_text("#rec-state").startswith("Recording since ")
        assert pg.inner_text("#motion-state") == "Motion detection off"
        assert pg.get_attribute("#motion-state", "data-active") == "false"
        assert (pg.input_value("#opt-motion"), pg.input_value("#opt-record")) == ("off", "always")

        def disk(low: bool) -> None:
            store = services.recordings.store
            # the writer's own free-space check (every 5 s) reads this machine's disk: held off meanwhile
            store._last_sweep = float("inf") if low else 0.0
            store.disk_low = low
            services.changes.notify()

        world.served.call(disk, True)  # the store found the disk nearly full
        try:
            pg.wait_for_function("() => document.querySelector('#rec-state').dataset.state === 'stopped'")
            assert pg.inner_text("#rec-state") == "Recording stopped: the disk is nearly full"
        finally:
            world.served.call(disk, False)
        pg.wait_for_function("() => document.querySelector('#rec-state').dataset.state === 'recording'")


def test_apply_is_disabled_for_an_offline_camera_and_while_a_change_is_on_its_way(world: World) -> None:
    with page(world.browser) as pg:
        pg.goto(world.served.url + "/#/camera/porch")
        pg.wait_for_selector("#controls-card", state="visible")
        pg.wait_for_function("() => document.querySelector('#ctl-fps').value === '10'")
        assert pg.is_enabled("#ctl-apply")
        world.set_state("porch", OFFLINE)
        try:
            pg.wait_for_function("() => document.querySelector('#ctl-apply').disabled")
            assert pg.get_attribute("#ctl-status", "data-state") == "offline"
            assert "offline" in pg.inner_text("#ctl-status")
        finally:
            world.set_state("porch", STREAMING)
        pg.wait_for_function("() => !document.querySelector('#ctl-apply').disabled")
        assert pg.get_attribute("#ctl-status", "data-state") == "idle"

        held: list[Any] = []
        pg.route("**/api/cameras/porch/settings", lambda route: held.append(route))  # held here until let through
        pg.fill("#ctl-fps", "7")
        # a double click: the first sends, and the button is disabled before the second lands
        pg.evaluate("() => { const apply = document.querySelector('#ctl-apply'); apply.click(); apply.click(); }")
        pg.wait_for_timeout(500)
        assert len(held) == 1 and pg.is_disabled("#ctl-apply")  # one request, on its way: no answer yet
        held[0].continue_()
        pg.wait_for_selector("#ctl-status[data-state='pending']")
        assert pg.is_enabled("#ctl-apply")
        assert world.served.world.link.published[-1][:2] == ("camhub/nodes/porch/set", {"fps": 7})

        def reannounce() -> None:  # the node applies it and says so
            camera = world.served.services.cameras.get("porch")
            assert camera is not None and camera.announce is not None
            camera.announce = {**camera.announce, "fps": 7}
            world.served.services.changes.notify()

        world.served.call(reannounce)
        pg.wait_for_selector("#ctl-status[data-state='applied']")
        assert_no_serious_axe_violations(pg, "the camera view with its settings applied")


def test_a_motion_event_can_be_played_only_when_a_recording_holds_it(world: World) -> None:
    with page(world.browser) as pg:
        pg.goto(world.served.url + "/#/camera/door")
        pg.wait_for_function("() => document.querySelectorAll('#motion-events li').length === 2")
        # newest first: the one after the recording had ended, then the recorded one
        assert pg.eval_on_selector_all("#motion-events li button", "bs => bs.map((b) => b.disabled)") == [True, False]
        pg.wait_for_function("() => document.querySelectorAll('#timeline .tl-motion').length === 2")
        marks = pg.eval_on_selector_all("#timeline .tl-motion", "bs => bs.map((b) => [b.disabled, b.ariaLabel])")
        assert [disabled for disabled, _ in marks] == [True, False]
        assert marks[0][1].endswith("(not recorded)") and marks[1][1].endswith(": play it")
        assert_no_serious_axe_violations(pg, "the camera view with its motion events and recordings")
        pg.click("#motion-events li:nth-child(2) button")
        pg.wait_for_selector(f"#playback-box[data-rec='{world.recording_id}']", state="visible")
        # from a second before the event (it started 2 s into the recording)
        src = pg.get_attribute("#playback", "src")
        assert src.endswith(f"/door/recordings/{world.recording_id}/stream?t=1.0&speed=1")
        pg.wait_for_function("() => document.querySelector('#playback').naturalWidth === 160")  # it plays
