"""Battery cameras on the dashboard, in a real browser (headless Debian chromium), with the real hub and
the real firmware in snapshot mode on CPython (owl) and on the MicroPython Unix port (wren).

Each tile shows its camera's latest picture (exactly one its node pushed, and the next one after the
next wake), the picture's age, when the next one is due and the battery where the board reads one,
and is greyed only when the camera is missing. The camera page plays the hub's stream of it, lists
its wakes, and queues a settings change for the next wake, saying so until the camera applies it.
axe-core finds nothing serious on either view.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.battery import BatteryNode
from tests.support.browser import assert_no_serious_axe_violations, chromium, page, require_chromium
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto
from tests.support.waiting import get_json, wait_until

INTERVAL = 4
# The picture on show in a tile, as bytes: the blob the tile fetched, hashed (the same JPEG as pushed).
TILE_PICTURE_JS = """async (id) => {
  const img = document.querySelector(`#grid .tile[data-id="${id}"] img.frame.live`);
  if (!img || !img.src.startsWith('blob:')) return null;
  const data = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  const digest = await crypto.subtle.digest('SHA-256', data);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}"""


@dataclass
class World:
    broker: Mosquitto
    observer: Observer
    hub: HubProcess
    nodes: dict[str, BatteryNode]
    page: Any

    def pushed(self, camera_id: str) -> set[str]:
        return {hashlib.sha256(m.payload).hexdigest() for m in self.observer.on(f"camhub/nodes/{camera_id}/snapshot")
                if m.payload}

    def tile(self, camera_id: str) -> str:
        return f'#grid .tile[data-id="{camera_id}"]'


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    require_chromium()
    broker = Mosquitto()
    observer = Observer(broker.port, ["camhub/nodes/#"])
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("hub-state"))
    nodes = {"owl": BatteryNode("owl", broker.port, interval=INTERVAL, runtime="cpython",
                                env={"CAMHUB_NODE_NAME": "Owl box"}),
             "wren": BatteryNode("wren", broker.port, interval=INTERVAL, runtime="micropython", battery_mv=3870,
                                 env={"CAMHUB_NODE_NAME": "Wren box"})}
    try:
        hub.wait_ready()
        wait_until(lambda: all(c.get("sleep") and c["sleep"]["last_wake"] for c in get_json(hub.url + "/api/cameras"))
                   and len(get_json(hub.url + "/api/cameras")) == 2, 60, "both battery cameras heard waking")
        with chromium() as browser, page(browser) as pg:
            pg.goto(hub.url + "/")
            yield World(broker, observer, hub, nodes, pg)
    finally:
        for node in nodes.values():
            node.stop()
        hub.stop()
        observer.close()
        broker.stop()


@pytest.mark.parametrize("camera_id", ["owl", "wren"])
def test_a_battery_cameras_tile_shows_its_pushed_picture_its_age_and_its_next_wake(world: World,
                                                                                 camera_id: str) -> None:
    pg, tile = world.page, world.tile(camera_id)
    pg.wait_for_selector(f"{tile} img.frame.live", timeout=20000)
    first = wait_until(lambda: (h := pg.evaluate(TILE_PICTURE_JS, camera_id)) in world.pushed(camera_id) and h, 20,
                       "the tile's picture is one the node pushed")
    assert pg.get_attribute(tile, "data-state") == "sleeping" and pg.get_attribute(tile, "data-mode") == "snapshot"
    assert "is-offline" not in (pg.get_attribute(tile, "class") or "")  # asleep is not greyed
    assert pg.text_content(f"{tile} .badge") == "Asleep"
    assert pg.is_visible(f"{tile} .wake-chip") and pg.inner_text(f"{tile} .wake-chip").startswith("next picture")
    assert pg.get_attribute(f"{tile} .stat-age", "title") == "Picture age"
    assert pg.inner_text(f"{tile} .stat-age .stat-value").endswith(("ms", " s"))
    if camera_id == "wren":
        assert pg.inner_text(f"{tile} .battery-chip") == "Battery 3.87 V"
    else:
        assert not pg.is_visible(f"{tile} .battery-chip")  # its board reads no battery
    # The next wake's picture replaces it.
    wait_until(lambda: (h := pg.evaluate(TILE_PICTURE_JS, camera_id)) != first and h in world.pushed(camera_id),
               25, "the next wake's picture in the tile")


def test_the_grid_with_battery_cameras_passes_axe(world: World) -> None:
    world.page.wait_for_selector(f"{world.tile('wren')} .battery-chip", state="visible")
    assert_no_serious_axe_violations(world.page, "the grid with battery cameras")


def test_the_camera_page_plays_its_stream_and_queues_a_setting_for_the_next_wake(world: World) -> None:
    pg = world.page
    pg.goto(world.hub.url + "/#/camera/wren")
    pg.wait_for_selector("#controls-card", state="visible")
    pg.wait_for_function("document.querySelector('#stream').naturalWidth === 320", timeout=20000)
    details = pg.inner_text("#camera-details")
    assert "battery camera: a picture every 4 s" in details and "3.87 V" in details and "next picture" in details
    assert_no_serious_axe_violations(pg, "a battery camera's page")
    pg.select_option("#ctl-frame-size", "QQVGA")
    queued = time.time()
    pg.click("#ctl-apply")
    pg.wait_for_selector("#ctl-status[data-state='pending']", timeout=5000)
    assert "Queued for the camera’s next wake" in pg.inner_text("#ctl-status")
    assert "frame size QQVGA" in pg.inner_text("#ctl-status")
    world.nodes["wren"].next_wake(world.observer, queued)
    pg.wait_for_selector("#ctl-status[data-state='applied']", timeout=15000)
    assert "frame size QQVGA" in pg.inner_text("#ctl-status")
    # The stream, still the same connection, now shows the smaller pictures.
    pg.wait_for_function("document.querySelector('#stream').naturalWidth === 160", timeout=20000)


def test_a_missing_camera_is_greyed_and_a_late_wake_brings_it_back(world: World) -> None:
    pg, tile = world.page, world.tile("owl")
    pg.goto(world.hub.url + "/")
    pg.wait_for_selector(f"{tile}[data-state='sleeping']")
    world.nodes["owl"].stop()  # asleep: it just never wakes again
    pg.wait_for_selector(f"{tile}.is-offline", timeout=40000)  # 2.5 intervals + 10 s without a wake
    assert pg.text_content(f"{tile} .badge") == "Offline" and not pg.is_visible(f"{tile} .wake-chip")
    assert pg.is_visible(f"{tile} img.frame.live")  # its last picture stays, greyed
    assert not pg.is_visible(f"{world.tile('wren')}.is-offline")
    world.nodes["owl"] = BatteryNode("owl", world.broker.port, interval=INTERVAL, runtime="cpython",
                                     env={"CAMHUB_NODE_NAME": "Owl box"})
    pg.wait_for_selector(f"{tile}[data-state='sleeping']:not(.is-offline)", timeout=40000)
