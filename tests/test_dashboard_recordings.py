"""Motion and recordings in the dashboard (headless Debian chromium): the tile's motion badge, the camera
page's timeline of the day with the motion event, and playing that event back from the timeline."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import scenes
from tests.support.browser import assert_no_serious_axe_violations, chromium, page, require_chromium
from tests.support.procs import HubProcess, Mosquitto, running
from tests.support.quirky_camera import Quirks, serve_in_thread
from tests.support.waiting import get_json, wait_until


def test_timeline_shows_the_motion_event_and_plays_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    require_chromium()
    still, moving = scenes.still(20, size=(320, 240)), scenes.moving(20, size=(320, 240), object_pct=4)
    with serve_in_thread(Quirks(fps=8)) as camera:
        camera.jpegs = still
        env = {"CAMHUB_SOURCES": f"yard={camera.url}", "CAMHUB_MOTION_QUIET_S": "1",
               "CAMHUB_RECORD_PREROLL_S": "1", "CAMHUB_RECORD_POSTROLL_S": "1"}
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub, chromium() as browser, \
                page(browser) as tab:
            hub.wait_ready()
            tab.goto(f"{hub.url}/")
            tile = tab.locator('#grid .tile[data-id="yard"]')
            tile.wait_for()
            assert tile.locator(".motion-chip").is_hidden()
            camera.jpegs = moving
            tile.locator(".motion-chip").wait_for(state="visible", timeout=10_000)  # the badge while it moves
            time.sleep(1.5)
            camera.jpegs = still
            tile.locator(".motion-chip").wait_for(state="hidden", timeout=10_000)
            rec = wait_until(lambda: [r for r in get_json(f"{hub.url}/api/cameras/yard/recordings")
                                      if not r["open"]], what="the motion recording")[0]

            tab.goto(f"{hub.url}/#/camera/yard")
            event = tab.locator("#timeline .tl-motion")
            event.wait_for(timeout=10_000)  # the day's timeline shows the motion event...
            assert tab.locator(f'#timeline .tl-rec[data-rec="{rec["id"]}"]').count() == 1  # ...and its recording
            assert tab.locator(f'#recordings-body tr[data-rec="{rec["id"]}"]').count() == 1
            assert tab.locator("#motion-events li").count() == 1
            event.click()  # play it
            tab.wait_for_function("() => { const i = document.querySelector('#playback');"
                                  " return i.complete && i.naturalWidth === 320; }", timeout=10_000)
            assert tab.locator("#playback-box").get_attribute("data-rec") == rec["id"]
            assert "?t=" in tab.locator("#playback").get_attribute("src")
            assert_no_serious_axe_violations(tab, "the camera page with a recording playing")
            tab.locator("#playback-close").click()
            assert tab.locator("#playback-box").is_hidden()
