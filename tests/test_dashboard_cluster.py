"""The dashboard of one hub of a cluster, in headless chromium: one UI over all the hubs.

An edge (it owns nothing) lists every camera of the cluster, each tile naming the hub that owns it,
all of them online and showing pictures (pulled from their owners on demand); the Hubs card lists
every member with its role, address, status and cameras owned, and follows one going offline; a
camera's page names its owner. No serious accessibility violation on either view.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import assert_no_serious_axe_violations, chromium, page, require_chromium
from tests.support.cluster import cluster_env, owned_once
from tests.support.procs import HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

CAMERAS = ["garage", "porch", "garden"]
pytestmark = pytest.mark.timeout(180)


@dataclass
class World:
    hubs: dict[str, HubProcess]
    owners: dict[str, str]
    page: Any

    def wait_js(self, expression: str, what: str, timeout: float = 20.0) -> None:
        try:
            self.page.wait_for_function(f"() => ({expression})", timeout=timeout * 1000, polling=100)
        except Exception as exc:
            raise AssertionError(f"{what}: not seen within {timeout}s") from exc


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    require_chromium()
    tmp: Path = tmp_path_factory.mktemp("cluster")
    broker = Mosquitto()
    nodes = [SimNode(c, broker.port, fps=2, frame_size="QQVGA") for c in CAMERAS]
    hubs = {name: HubProcess(broker.port, tmp / name, env=cluster_env(role, name))
            for name, role in (("o1", "origin"), ("o2", "origin"), ("e1", "edge"))}
    try:
        for proc in [*nodes, *hubs.values()]:
            proc.wait_ready()  # type: ignore[attr-defined]
        owners = wait_until(lambda: owned_once(get_json, [h.url for h in hubs.values()], CAMERAS), 20, "owned")
        with chromium() as browser, page(browser) as pg:
            pg.goto(hubs["e1"].url + "/")
            yield World(hubs, owners, pg)
    finally:
        for proc in [*hubs.values(), *nodes]:
            proc.stop()
        broker.stop()


def test_an_edge_lists_every_camera_with_its_owner_and_every_hub(world: World) -> None:
    world.wait_js(f"document.querySelectorAll('#grid .tile[data-state=\"streaming\"]').length === {len(CAMERAS)}",
                  "every camera streaming on the edge's grid")
    world.wait_js(f"document.querySelector('#h-cams').textContent.includes('{len(CAMERAS)}/{len(CAMERAS)} online')",
                  "all online in the header")
    for camera_id, owner in world.owners.items():
        assert world.page.locator(f'.tile[data-id="{camera_id}"] .tile-owner').inner_text() == f"on {owner}"
    world.wait_js(f"[...document.querySelectorAll('#grid .tile img.frame.live')].filter(i => i.naturalWidth)"
                  f".length === {len(CAMERAS)}", "a picture in every tile")
    world.wait_js("document.querySelectorAll('#cluster-body tr').length === 3", "the hubs listed")
    rows = [r.split("\t") for r in world.page.locator("#cluster-body tr").all_inner_texts()]
    assert [(r[0].replace("this hub", "").strip(), r[1], r[3]) for r in rows] == [
        ("e1", "edge", "online"), ("o1", "origin", "online"), ("o2", "origin", "online")]
    owned = {r[0]: int(r[4]) for r in rows if r[1] == "origin"}
    assert owned == {o: list(world.owners.values()).count(o) for o in ("o1", "o2")}
    assert world.page.locator("#f-hub").inner_text() == "hub e1 (edge)"
    assert_no_serious_axe_violations(world.page, "the edge's grid with the Hubs card")


def test_a_camera_page_names_its_owner_and_the_hubs_card_follows_a_hub_going_away(world: World) -> None:
    camera_id = CAMERAS[0]
    owner = world.owners[camera_id]
    world.page.goto(world.hubs["e1"].url + f"/#/camera/{camera_id}")
    world.wait_js("[...document.querySelectorAll('#camera-details dt')].some(d => d.textContent === 'Owner')",
                  "the owner in the camera's details")
    details = world.page.locator("#camera-details").inner_text()
    assert f"{owner} ({world.hubs[owner].url})" in details
    assert_no_serious_axe_violations(world.page, "a camera's page on an edge")
    world.page.goto(world.hubs["e1"].url + "/#/")
    other = "o2" if owner == "o1" else "o1"
    world.hubs[other].stop(signal.SIGKILL)
    world.wait_js(f"[...document.querySelectorAll('#cluster-body tr')].some(r => r.textContent.startsWith('{other}')"
                  " && r.textContent.includes('offline'))", "the killed hub shown offline")
