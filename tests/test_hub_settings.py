"""``POST /api/cameras/<id>/settings``: the hub forwards a checked change to the node, which re-announces it.

Real mosquitto, the real hub with auth on, the real firmware as a simulated node, and a plain MJPEG
source (the same node's stream, listed in CAMHUB_SOURCES) that has no settings.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

PASSWORD = "settings-test-password"
AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


@dataclass
class World:
    broker: Mosquitto
    observer: Observer
    node: SimNode
    hub: HubProcess

    def post(self, camera: str, body: Any, content_type: str = "application/json", auth: str | None = AUTH,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.hub.url}/api/cameras/{camera}/settings", data=data, method="POST",
                                         headers={"Content-Type": content_type, **(headers or {})})
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()
            return exc.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}

    def api(self, path: str) -> Any:
        request = urllib.request.Request(self.hub.url + path, headers={"Authorization": AUTH})
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if path.startswith("/api/") else body.decode()

    def sets(self) -> list[bytes]:
        return [m.payload for m in self.observer.on("camhub/nodes/+/set")]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    broker = Mosquitto()
    observer = Observer(broker.port, ["camhub/nodes/#"])
    node = SimNode("garage", broker.port, fps=5, frame_size="QQVGA")
    hub = None
    try:
        node.wait_ready()
        hub = HubProcess(broker.port, tmp_path_factory.mktemp("hub-state"), env={
            "CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": PASSWORD, "CAMHUB_SOURCES": f"door={node.url}/stream"})
        hub.wait_ready()
        holder = World(broker, observer, node, hub)
        wait_until(lambda: {c["id"]: c["state"] for c in holder.api("/api/cameras")}.get("garage") == "streaming",
                   20, "the node streaming at the hub")
        yield holder
    finally:
        if hub is not None:
            hub.stop()
        node.stop()
        observer.close()
        broker.stop()


def test_a_change_reaches_the_node_which_re_announces_it(world: World) -> None:
    sent = time.time()
    status, answer = world.post("garage", {"fps": 6, "jpeg_quality": 20, "frame_size": "qvga"})
    assert status == 202, answer
    assert answer["requested"] == {"fps": 6, "jpeg_quality": 20, "frame_size": "QVGA"}
    assert answer["current"]["fps"] == 5  # the node has not answered yet
    announce = world.observer.wait_for("camhub/nodes/garage/announce", lambda m: m.json()["fps"] == 6,
                                       timeout=10, after=sent)
    assert (announce.json()["jpeg_quality"], announce.json()["frame_size"]) == (20, "QVGA")
    status_page = get_json(world.node.url + "/status")
    assert (status_page["fps_target"], status_page["width"]) == (6, 320)
    wait_until(lambda: world.api("/api/cameras/garage")["announce"]["fps"] == 6, 10, "the hub's view updated")


def test_without_credentials_nothing_is_sent(world: World) -> None:
    before = len(world.sets())
    status, _ = world.post("garage", {"fps": 7}, auth=None)
    assert status == 401
    status, _ = world.post("garage", {"fps": 7}, auth="Basic " + base64.b64encode(b"admin:wrong").decode())
    assert status == 401
    time.sleep(0.3)
    assert len(world.sets()) == before


@pytest.mark.parametrize("body,names", [
    ({"fps": 0}, "fps"), ({"fps": 31}, "fps"), ({"fps": "10"}, "fps"), ({"fps": True}, "fps"),
    ({"fps": 7.5}, "fps"), ({"jpeg_quality": 1}, "jpeg_quality"), ({"jpeg_quality": 64}, "jpeg_quality"),
    ({"frame_size": "HUGE"}, "frame_size"), ({"frame_size": 5}, "frame_size"), ({"brightness": 3}, "brightness"),
    ({}, "body"), ([6], "body"), ("fps=6", "body"),
])
def test_a_bad_value_is_refused_naming_it_and_never_sent(world: World, body: Any, names: str) -> None:
    before = len(world.sets())
    status, answer = world.post("garage", body)
    assert status == 400, answer
    assert answer["error"].startswith(names) and answer["reason"] == "bad_value"
    time.sleep(0.2)
    assert len(world.sets()) == before


def test_a_cross_site_form_cannot_post_a_change(world: World) -> None:
    before = len(world.sets())
    # What an HTML form on another site can send: a form content type (no CORS preflight) ...
    status, _ = world.post("garage", b"fps=6", content_type="application/x-www-form-urlencoded")
    assert status == 415
    status, _ = world.post("garage", b'{"fps": 6}', content_type="text/plain")
    assert status == 415
    # ... and any request a page on another origin makes carries that origin.
    status, answer = world.post("garage", {"fps": 6}, headers={"Origin": "http://evil.example"})
    assert status == 403, answer
    status, answer = world.post("garage", {"fps": 9}, headers={"Origin": world.hub.url})  # the dashboard itself
    assert status == 202, answer
    world.observer.wait_for("camhub/nodes/garage/announce", lambda m: m.json()["fps"] == 9, timeout=10)
    assert len(world.sets()) == before + 1
    metrics = world.api("/metrics")
    assert 'camhub_settings_refused_total{reason="cross_origin"} 1.0' in metrics
    assert 'camhub_settings_refused_total{reason="not_json"}' in metrics


def test_a_plain_mjpeg_source_has_no_settings(world: World) -> None:
    status, answer = world.post("door", {"fps": 6})
    assert (status, answer["reason"]) == (409, "no_node")
    status, _ = world.post("nope", {"fps": 6})
    assert status == 404


def test_an_offline_node_is_told_apart(world: World) -> None:
    world.node.kill()
    wait_until(lambda: world.api("/api/cameras/garage")["state"] == "offline", 20, "the node offline at the hub")
    status, answer = world.post("garage", {"fps": 6})
    assert (status, answer["reason"]) == (409, "node_offline")
