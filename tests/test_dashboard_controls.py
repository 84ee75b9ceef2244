"""The camera page's node settings in a real browser: headless Debian chromium, the real hub with auth
on (the browser signed in with HTTP Basic), the real firmware as simulated nodes.

Changing the fps in the page reaches the node, which re-announces it, and the page says so; a node
that does not answer (frozen with SIGSTOP: its MQTT session still looks alive) is reported as not
having confirmed; a plain MJPEG source shows no settings; axe-core finds nothing serious with the
settings card on screen.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.browser import assert_no_serious_axe_violations, chromium, page, require_chromium
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode
from tests.support.waiting import wait_until

PASSWORD = "dashboard-controls-password"


@dataclass
class World:
    observer: Observer
    nodes: dict[str, SimNode]
    hub: HubProcess
    page: Any


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    require_chromium()
    broker = Mosquitto()
    observer = Observer(broker.port, ["camhub/nodes/#"])
    nodes = {cid: SimNode(cid, broker.port, fps=4, frame_size="QQVGA", env={"CAMHUB_NODE_NAME": cid.title()})
             for cid in ("garage", "attic")}
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("hub-state"), env={
        "CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": PASSWORD,
        "CAMHUB_SOURCES": f"door={nodes['attic'].url}/stream"})
    try:
        for node in nodes.values():
            node.wait_ready()
        hub.wait_ready()
        with chromium() as browser, page(browser, http_credentials={"username": "admin", "password": PASSWORD}) as pg:
            holder = World(observer, nodes, hub, pg)
            pg.goto(hub.url + "/#/camera/garage")
            pg.wait_for_selector("#controls-card", state="visible")
            yield holder
    finally:
        for node in nodes.values():
            node.stop()
        hub.stop()
        observer.close()
        broker.stop()


def test_changing_the_fps_in_the_page_makes_the_node_re_announce_it(world: World) -> None:
    pg = world.page
    pg.wait_for_function("document.querySelector('#ctl-fps').value === '4'")  # the node's announced fps
    assert pg.input_value("#ctl-frame-size") == "QQVGA"
    options = pg.eval_on_selector_all("#ctl-frame-size option", "els => els.map(e => e.value)")
    assert options[:2] == ["R96X96", "QQVGA"] and "UXGA" in options  # what the node offers, smallest first
    assert (pg.get_attribute("#ctl-fps", "min"), pg.get_attribute("#ctl-fps", "max")) == ("1", "30")
    # Every state the status line takes, in order: a node on loopback confirms within milliseconds, so
    # "pending" may last less than one of Playwright's polls.
    pg.evaluate("""() => {
        const el = document.querySelector('#ctl-status');
        window.ctlStates = [];
        new MutationObserver(() => window.ctlStates.push([el.dataset.state, el.textContent]))
            .observe(el, {attributes: true, childList: true, subtree: true, characterData: true});
    }""")
    sent = time.time()
    pg.fill("#ctl-fps", "7")
    pg.click("#ctl-apply")
    announce = world.observer.wait_for("camhub/nodes/garage/announce", lambda m: m.json()["fps"] == 7,
                                       timeout=10, after=sent)
    assert announce.json()["frame_size"] == "QQVGA"  # only what was changed
    pg.wait_for_selector("#ctl-status[data-state='applied']", timeout=10000)
    assert "fps 7" in pg.inner_text("#ctl-status")
    # ... and it was shown as pending (naming the change) until the node said it runs at 7 fps.
    states = [state for state, _ in pg.evaluate("window.ctlStates")]
    texts = dict(pg.evaluate("window.ctlStates"))
    assert "pending" in states and states.index("pending") < states.index("applied"), states
    assert "7" in texts["pending"]
    assert pg.input_value("#ctl-fps") == "7"
    assert [m.json() for m in world.observer.on("camhub/nodes/garage/set")] == [{"fps": 7}]


def test_the_settings_card_passes_axe(world: World) -> None:
    assert world.page.is_visible("#controls-card")
    assert_no_serious_axe_violations(world.page, "the camera page with its settings")


def test_a_node_that_does_not_answer_is_reported(world: World) -> None:
    pg = world.page
    node = world.nodes["garage"]
    os.kill(node.pid, signal.SIGSTOP)  # hung: the broker still holds its session, so the hub thinks it is online
    try:
        pg.fill("#ctl-fps", "9")
        pg.click("#ctl-apply")
        pg.wait_for_selector("#ctl-status[data-state='pending']", timeout=5000)
        pg.wait_for_selector("#ctl-status[data-state='timeout']", timeout=15000)
        assert "did not confirm" in pg.inner_text("#ctl-status")
    finally:
        os.kill(node.pid, signal.SIGCONT)
    # Thawed, the node takes the queued set after all, and the page follows its announce.
    wait_until(lambda: pg.input_value("#ctl-fps") == "9", 15, "the page following the late re-announce")


def test_a_bad_value_is_explained_and_a_plain_source_has_no_settings(world: World) -> None:
    pg = world.page
    pg.fill("#ctl-fps", "99")
    pg.click("#ctl-apply")
    pg.wait_for_selector("#ctl-status[data-state='error']", timeout=5000)
    assert "fps: must be a whole number from 1 to 30" in pg.inner_text("#ctl-status")
    pg.goto(world.hub.url + "/#/camera/door")
    pg.wait_for_function("document.querySelector('#camera-title').textContent === 'door'")
    pg.wait_for_timeout(1500)  # a few summaries
    assert not pg.is_visible("#controls-card")
