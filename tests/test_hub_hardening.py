"""The hub against hostile and broken input, end to end: the real hub process, real sockets."""

from __future__ import annotations

from pathlib import Path

from tests.support.browser import chromium, page, require_chromium
from tests.support.procs import HubProcess, Mosquitto
from tests.support.quirky_camera import Quirks, serve_in_thread
from tests.support.waiting import get_json, wait_until


def test_a_camera_serving_html_is_offline_with_its_error_in_the_api_and_dashboard(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    require_chromium()
    with serve_in_thread(Quirks(content_type="text/html")) as camera:
        hub = HubProcess(mosquitto.port, tmp_path, env={"CAMHUB_SOURCES": f"door={camera.url}"}).wait_ready()
        try:
            door = wait_until(lambda: get_json(hub.url + "/api/cameras/door")["state"] == "offline"
                              and get_json(hub.url + "/api/cameras/door"), timeout=30,
                              what="offline after a few failed attempts")
            assert door["last_error"].startswith("content_type: not multipart")
            assert door["upstream"]["failures"] >= 3 and camera.connections >= 3
            listed = [c for c in get_json(hub.url + "/api/cameras") if c["id"] == "door"]
            assert listed[0]["last_error"] == door["last_error"] and listed[0]["state"] == "offline"
            with chromium() as browser, page(browser) as tab:
                tab.goto(hub.url + "/")
                tab.wait_for_function("() => (document.querySelector('#grid .tile .placeholder-text')"
                                      "?.textContent || '').includes('content_type')")
        finally:
            hub.stop()
