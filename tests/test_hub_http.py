"""The hub's HTTP side in this process (``tests/support/hubhttp.py``: built as the hub builds it, from real
parts and a stand-in MQTT link): the API's refusals and limits. Requests go over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import aiomqtt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.cluster.members import ClusterSettings
from camhub.hub.cluster.role import ClusterRole
from camhub.hub.core.broker import Feed
from camhub.hub.core.camera import Camera
from camhub.hub.http import api, streams
from camhub.hub.http import server as server_module
from camhub.hub.http.auth import FAILURE_LIMIT
from camhub.hub.http.server import HttpServer
from camhub.hub.http.streams import ViewerLimits
from camhub.hub.ingest.pulls import AlwaysPull
from camhub.hub.ingest.sources import AllowedSources
from camhub.hub.mqtt.link import LinkSettings, MqttLink
from camhub.hub.mqtt.topics import Topics
from tests.support import scenes
from tests.support.cluster import SECRET
from tests.support.hubhttp import NODE_ANNOUNCE, World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    made = await make_world(tmp_path, limits=ViewerLimits(max_viewers=10, max_viewers_per_camera=10))
    node = made.services.cameras.add("porch", "Porch", "mqtt", NODE_ANNOUNCE["stream_url"], dict(NODE_ANNOUNCE))
    node.available = True
    made.services.cameras.add("door", "door", "static", "http://127.0.0.1:9/door").available = True
    yield made
    await made.client.close()


def camera(world: World, camera_id: str) -> Camera:
    found = world.services.cameras.get(camera_id)
    assert found is not None
    return found


# ---- unknown cameras and bad paths ---------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/cameras/nope", "/api/cameras/BAD", "/api/cameras/_porch",
                                  "/cameras/nope/stream", "/cameras/nope/snapshot.jpg",
                                  "/api/cameras/nope/recordings", "/api/cameras/nope/motion"])
async def test_an_unknown_or_illegal_camera_id_is_a_json_404(world: World, path: str) -> None:
    status, body, headers = await world.json(path)
    assert status == 404 and body["error"] == "unknown camera"
    assert headers["Content-Type"].startswith("application/json")


async def test_a_known_camera_lists_with_what_the_parts_add(world: World) -> None:
    status, body, _ = await world.json("/api/cameras")
    assert status == 200 and [c["id"] for c in body] == ["door", "porch"]
    assert body[1]["motion"]["enabled"] is True and body[1]["name"] == "Porch"


# ---- streams and snapshots -----------------------------------------------------------------------
@pytest.mark.parametrize(("query", "message"), [("fps=abc", "fps must be a number"),
                                                ("fps=0", "fps must be in (0, 120]"),
                                                ("fps=121", "fps must be in (0, 120]")])
async def test_a_bad_fps_is_a_400_naming_it(world: World, query: str, message: str) -> None:
    status, body, _ = await world.json(f"/cameras/porch/stream?{query}")
    assert status == 400 and body == {"error": message}


async def test_viewers_over_a_limit_get_503_with_retry_after_and_are_counted(tmp_path: Path) -> None:
    for limits, reason in ((ViewerLimits(0, 10), "hub_limit"), (ViewerLimits(10, 0), "camera_limit")):
        made = await make_world(tmp_path / reason, limits=limits)
        try:
            made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
            status, body, headers = await made.json("/cameras/porch/stream")
            assert status == 503 and headers["Retry-After"] == "5" and body["error"] == f"too many viewers ({reason})"
            assert await made.metric("camhub_viewers_refused_total", f'reason="{reason}"') == 1
        finally:
            await made.client.close()


async def test_the_hubs_own_pull_is_refused_as_a_loop(world: World) -> None:
    own = {"User-Agent": world.services.identity.user_agent}
    for path in ("/cameras/porch/stream", "/cameras/porch/snapshot.jpg"):
        status, body, _ = await world.json(path, headers=own)
        assert status == 508 and "leads back to the hub" in body["error"]
    assert await world.metric("camhub_viewers_refused_total", 'reason="self_loop"') == 2


async def test_a_snapshot_before_any_frame_is_503_and_then_the_latest_frame(world: World) -> None:
    status, body, headers = await world.json("/cameras/porch/snapshot.jpg")
    assert status == 503 and headers["Retry-After"] == "5" and body["id"] == "porch"
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    camera(world, "porch").feed.publish(jpeg, time.time())
    async with world.client.get("/cameras/porch/snapshot.jpg") as response:
        assert response.status == 200 and await response.read() == jpeg and response.headers["X-Frame-Seq"] == "1"


async def test_a_viewer_gets_the_frames_as_mjpeg(world: World) -> None:
    feed = camera(world, "porch").feed
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    async with world.client.get("/cameras/porch/stream") as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        for _ in range(100):
            if feed.viewers:
                break
            await asyncio.sleep(0.01)
        feed.publish(jpeg, time.time())
        body = b""
        while jpeg not in body:
            body += await asyncio.wait_for(response.content.read(65536), 5)
    assert b"X-Frame-Seq: 1" in body


async def test_a_viewer_is_listed_with_its_fps_limit_and_its_leaving_recorded(world: World) -> None:
    feed = camera(world, "porch").feed
    async with world.client.get("/cameras/porch/stream?fps=2.5", headers={"User-Agent": "VLC/3.0"}) as response:
        assert response.status == 200 and response.headers["X-Camera-Id"] == "porch"
        for _ in range(200):
            if feed.viewers:
                break
            await asyncio.sleep(0.01)
        _, detail, _ = await world.json("/api/cameras/porch")
        (viewer,) = detail["clients"]
        assert viewer["max_fps"] == 2.5 and viewer["user_agent"] == "VLC/3.0"
        assert viewer["peer"].startswith("127.0.0.1:")
        assert detail["clients"] and (await world.json("/api/hub"))[1]["viewers"] == 1
    for _ in range(200):
        if not feed.viewers:
            break
        await asyncio.sleep(0.01)
    _, detail, _ = await world.json("/api/cameras/porch")
    assert detail["clients"] == [] and [d["reason"] for d in detail["disconnects"]] == ["closed"]


@pytest.mark.parametrize(("query", "status"), [("fps=", 200), ("fps=120", 200), ("fps=0.1", 200),
                                               ("fps=120.01", 400), ("fps=-1", 400)])
async def test_a_viewers_fps_may_be_anything_up_to_120_or_left_out(world: World, query: str, status: int) -> None:
    async with world.client.get(f"/cameras/porch/stream?{query}") as response:
        assert response.status == status


async def test_a_snapshot_waits_a_moment_for_the_first_frame_of_a_camera_being_pulled(world: World) -> None:
    porch = camera(world, "porch")
    porch.pull = object()  # type: ignore[assignment]  (a pull under way: only whether there is one matters here)
    jpeg = scenes.still(count=1, size=(160, 120))[0]

    async def arrives() -> None:
        await asyncio.sleep(0.3)
        porch.feed.publish(jpeg, time.time())
        porch.frame_arrived.set()

    task = asyncio.create_task(arrives())
    async with world.client.get("/cameras/porch/snapshot.jpg") as response:
        assert response.status == 200 and await response.read() == jpeg
        assert response.headers["Cache-Control"] == "no-cache, no-store" and response.content_type == "image/jpeg"
        assert float(response.headers["X-Timestamp"]) == pytest.approx(time.time(), abs=5)
    await task
    porch.pull = None


async def test_a_snapshot_asks_for_the_camera_to_be_kept_warm(tmp_path: Path) -> None:
    made = await make_world(tmp_path)
    warmed: list[str] = []
    made.services.__dict__["warm"] = lambda camera: warmed.append(camera.id)  # frozen: set as the hub would build it
    made.services.cameras.add("door", "Door", "static", "http://127.0.0.1:9/")
    try:
        assert (await made.json("/cameras/door/snapshot.jpg"))[0] == 503
        assert warmed == ["door"]
    finally:
        await made.client.close()


async def _viewers(feed: Feed, count: int) -> None:
    for _ in range(300):
        if len(feed.viewers) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(feed.viewers)} viewers, not {count}")


async def test_a_viewer_without_a_user_agent_or_a_frame_rate_is_served_every_frame(world: World) -> None:
    """A bare client (a script, a camera app) sends no User-Agent; no ``fps`` (or an empty one): no limit."""
    feed = camera(world, "porch").feed
    bare = {"skip_auto_headers": ("User-Agent",)}
    async with world.client.get("/cameras/porch/stream", **bare) as plain, \
            world.client.get("/cameras/porch/stream?fps=", headers={"User-Agent": "x" * 300}) as long:
        assert plain.status == long.status == 200
        await _viewers(feed, 2)
        _, detail, _ = await world.json("/api/cameras/porch")
        assert sorted((v["user_agent"], v.get("max_fps")) for v in detail["clients"]) == [  # no limit shown
            ("", None), ("x" * 200, None)]
    assert (await world.json("/cameras/porch/snapshot.jpg", **bare))[0] == 503  # no frame yet, no error


async def test_a_snapshot_of_a_camera_whose_first_frame_does_not_come_is_a_503(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "SNAPSHOT_WAIT_S", 0.2)
    porch = camera(world, "porch")
    porch.pull = object()  # type: ignore[assignment]  (a pull under way that delivers nothing)
    try:
        status, body, headers = await world.json("/cameras/porch/snapshot.jpg")
        assert status == 503 and headers["Retry-After"] == "5"
        assert body == {"error": "no frame from this camera yet", "id": "porch"}
    finally:
        porch.pull = None


async def test_each_viewer_over_the_limit_is_refused_naming_the_camera(tmp_path: Path) -> None:
    made = await make_world(tmp_path, limits=ViewerLimits(10, 0))
    try:
        made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
        for _ in range(2):
            status, body, _ = await made.json("/cameras/porch/stream")
            assert status == 503 and body == {"error": "too many viewers (camera_limit)", "id": "porch"}
        assert await made.metric("camhub_viewers_refused_total", 'reason="camera_limit"') == 2
    finally:
        await made.client.close()


async def test_the_hubs_own_pull_is_logged_with_its_path(world: World, caplog: pytest.LogCaptureFixture) -> None:
    own = {"User-Agent": world.services.identity.user_agent}
    status, body, _ = await world.json("/cameras/porch/stream?fps=1", headers=own)
    assert status == 508 and body == {"error": "this is the hub's own stream: a camera's source leads back to the hub"}
    assert [r.getMessage() for r in caplog.records if r.name == "camhub.hub.http.streams"] == [
        "refused a stream request from this hub itself (/cameras/porch/stream): a camera's source leads back to "
        "the hub"]


async def test_a_viewer_still_watching_when_the_hub_stops_is_recorded_as_server_shutdown(tmp_path: Path) -> None:
    made = await make_world(tmp_path)
    made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
    feed = camera(made, "porch").feed
    server = HttpServer(replace(made.server.settings, port=_free_port()), made.services)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
        writer.write(b"GET /cameras/porch/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await _viewers(feed, 1)
        await server.stop()
        assert [d["reason"] for d in feed.disconnects] == ["server_shutdown"]
        writer.close()
    finally:
        await server.stop()
        await made.client.close()


# ---- in a cluster: another hub's pull, redirect mode -----------------------------------------------
async def cluster_hub(tmp_path: Path) -> tuple[World, TestClient]:
    """Hub "b", an origin with auth and redirect mode, in a cluster with origin "a" (which claims the porch) and
    edge "e": the real cluster parts, told what the broker would say through the stand-in link."""
    made = await make_world(tmp_path, auth_required=True, password="pw", token_key=b"k" * 32,
                            cluster=ClusterKey(SECRET, "b"))
    made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
    settings = ClusterSettings(hub_id="b", role="origin", url="http://127.0.0.1:2", version="9.9.9", instance="ib",
                               allowed=AllowedSources.parse(None), redirect_percent=150)
    role = ClusterRole(settings, SECRET, made.link, Topics(hub_id="b"), made.services.cameras,  # type: ignore[arg-type]
                       AlwaysPull(), made.services.identity.user_agent)
    role.subscribe()
    for hub, hub_role, port in (("a", "origin", 1), ("e", "edge", 3)):
        info = {"id": hub, "role": hub_role, "url": f"http://127.0.0.1:{port}", "version": "9.9.9",
                "instance": f"i{hub}", "cameras": [], "started": 1.0}
        made.link.handlers["camhub/hubs/+/info"](f"camhub/hubs/{hub}/info", json.dumps(info).encode())
        made.link.handlers["camhub/hubs/+/availability"](f"camhub/hubs/{hub}/availability", b"online")
    claim = {"hub": "a", "url": "http://127.0.0.1:1", "since": 1.0}
    made.link.handlers["camhub/cameras/+/owner"]("camhub/cameras/porch/owner", json.dumps(claim).encode())
    server = HttpServer(made.server.settings, replace(made.services, cluster=role))
    client = TestClient(TestServer(server.app, host="127.0.0.1"))
    await client.start_server()
    return made, client


async def test_another_hubs_pull_of_a_camera_this_hub_does_not_own_is_refused_naming_the_owner(
        tmp_path: Path) -> None:
    made, client = await cluster_hub(tmp_path)
    try:
        from_edge = ClusterKey(SECRET, "e").headers("b")  # the edge follows an old claim: it must pull from "a"
        for path in ("/cameras/porch/stream", "/cameras/porch/snapshot.jpg"):
            async with client.get(path, headers=from_edge) as response:
                assert response.status == 409, path
                assert await response.json() == {"error": "this hub does not own the camera", "id": "porch",
                                                  "owner": "a"}
        async with client.get("/metrics", headers=from_edge) as response:
            assert 'camhub_viewers_refused_total{reason="not_owner"} 2' in await response.text()
        claim = {"hub": "c", "url": "http://127.0.0.1:4", "since": 2.0}  # a hub not (or no longer) in the cluster
        made.link.handlers["camhub/cameras/+/owner"]("camhub/cameras/porch/owner", json.dumps(claim).encode())
        async with client.get("/cameras/porch/snapshot.jpg", headers=from_edge) as response:
            assert response.status == 409 and (await response.json())["owner"] is None
        basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
        async with client.get("/cameras/porch/snapshot.jpg", headers=basic) as response:
            assert response.status == 503  # a person's snapshot is served here (no frame yet), whoever owns it
    finally:
        await client.close()
        await made.client.close()


async def test_in_redirect_mode_a_viewer_is_sent_to_the_edge_with_its_frame_rate_and_a_token(tmp_path: Path) -> None:
    made, client = await cluster_hub(tmp_path)
    try:
        basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
        async with client.get("/cameras/porch/stream?fps=2.5", headers=basic, allow_redirects=False) as response:
            assert response.status == 307
            location = urlsplit(response.headers["Location"])
        query = parse_qs(location.query)
        assert (location.netloc, location.path, query["fps"]) == ("127.0.0.1:3", "/cameras/porch/stream", ["2.5"])
        assert made.server.auth.token_ok("porch", query["token"][0])  # good for that camera, for a minute
    finally:
        await client.close()
        await made.client.close()


# ---- the API's own answers -----------------------------------------------------------------------
async def test_the_hub_says_how_it_is(world: World) -> None:
    camera(world, "porch").state = "streaming"
    status, hub, _ = await world.json("/api/hub")
    assert status == 200 and hub["version"] == "9.9.9" and hub["cameras_total"] == 2 and hub["cameras_online"] == 1
    assert hub["viewers"] == 0 and hub["auth"] is False and hub["auth_failures"] == {} and hub["hosts_refused"] == 0
    assert abs(hub["time"] - time.time()) < 5 and 0 <= hub["uptime_s"] < 600
    assert hub["recordings"]["state"] == "ok"  # what the parts add
    assert hub["counters"]["camhub_settings_refused"] == {} and "camhub_motion_frames_analysed" not in hub["counters"]


async def test_a_cameras_detail_has_its_viewers_disconnects_and_motion_events(world: World) -> None:
    status, detail, _ = await world.json("/api/cameras/porch")
    assert status == 200 and detail["id"] == "porch" and detail["clients"] == [] and detail["disconnects"] == []
    assert detail["motion_events"] == [] and detail["motion"]["enabled"] is True and detail["upstream"] is None
    assert detail["controls"]["frame_size"][0] == "R96X96" and detail["recording"]["mode"] == "off"
    assert (await world.json("/api/cameras/door"))[1]["controls"] is None  # a plain source offers no settings


async def test_stream_urls_follow_the_name_the_hub_was_reached_by(world: World) -> None:
    status, urls, _ = await world.json("/api/cameras/porch/urls", headers={"Host": "localhost:8123"})
    assert status == 200 and urls == {"stream": "http://localhost:8123/cameras/porch/stream",
                                      "snapshot": "http://localhost:8123/cameras/porch/snapshot.jpg"}


async def test_motion_events_are_listed_by_time(world: World) -> None:
    state = world.services.motion.camera("porch")
    state.events.extend([{"start": 2000.0, "end": 2010.0, "peak": 3.0}, {"start": 1000.0, "end": 1010.0, "peak": 1.0}])
    assert [e["start"] for e in (await world.json("/api/cameras/porch/motion"))[1]] == [2000.0, 1000.0]
    assert [e["start"] for e in (await world.json("/api/cameras/porch/motion?since=1500"))[1]] == [2000.0]
    assert [e["start"] for e in (await world.json("/api/cameras/porch/motion?until=1500"))[1]] == [1000.0]


async def test_the_event_stream_sends_the_whole_picture_at_once_and_on_every_change(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "SSE_INTERVAL_S", 60.0)  # so an event within the test's wait is one of a change
    async with world.client.get("/api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"

        async def next_event() -> dict:
            lines = []
            while not lines or lines[-1] != b"\n":
                lines.append(await asyncio.wait_for(response.content.readline(), 10))
            assert lines[0] == b"event: state\n"
            return json.loads(lines[1].removeprefix(b"data: "))

        first = await next_event()
        assert [c["id"] for c in first["cameras"]] == ["door", "porch"] and first["hub"]["version"] == "9.9.9"
        await world.post("/api/cameras/porch/options", {"motion": "off"})
        assert (await next_event())["cameras"][1]["motion"]["enabled"] is False
        monkeypatch.setattr(api, "SSE_INTERVAL_S", 0.1)
        world.services.changes.notify()
        await next_event()
        await next_event()  # and again without a change: the periodic refresh


async def test_a_cameras_detail_says_how_old_its_last_frame_is(world: World) -> None:
    camera(world, "porch").feed.publish(scenes.still(count=1, size=(160, 120))[0], time.time())
    status, detail, _ = await world.json("/api/cameras/porch")
    assert status == 200 and 0 <= detail["last_frame_age_ms"] < 60_000


async def test_a_dashboard_that_leaves_the_event_stream_is_no_longer_told(world: World) -> None:
    async with world.client.get("/api/events") as response:
        await asyncio.wait_for(response.content.readline(), 10)
        assert world.services.changes.sizes() == {"listeners": 1}
    for _ in range(300):
        if world.services.changes.sizes() == {"listeners": 0}:
            break
        await asyncio.sleep(0.01)
    assert world.services.changes.sizes() == {"listeners": 0}


async def test_a_refused_change_says_why(world: World) -> None:
    assert await world.post("/api/cameras/porch/options", {"motion": "maybe"}) == (
        400, {"error": "motion must be one of on, off"})
    assert await world.post("/api/cameras/porch/settings", {"fps": 5}, headers={"Origin": "http://evil.example"}) == (
        403, {"error": "cross-origin requests may not change camera settings"})
    assert await world.post("/api/cameras/door/settings", {"fps": 5}) == (
        409, {"error": "this camera is a plain MJPEG source: it has no settings to change", "reason": "no_node"})


# ---- errors: one JSON shape ------------------------------------------------------------------------
async def test_every_error_is_json_and_only_a_503_says_when_to_retry(world: World) -> None:
    for method, path, status, message in (("GET", "/nothing/here", 404, "Not Found"),
                                          ("POST", "/api/cameras", 405, "Method Not Allowed"),
                                          ("GET", "/api/cameras/nope", 404, "unknown camera")):
        async with world.client.request(method, path) as response:
            assert response.status == status and response.content_type == "application/json"
            assert (await response.json())["error"] == message and "Retry-After" not in response.headers
    long_id = "a" * 100
    assert (await world.json(f"/api/cameras/{long_id}"))[1] == {"error": "unknown camera", "id": "a" * 64}


async def test_a_change_needs_a_json_body_from_the_same_site(world: World) -> None:
    origin = f"http://127.0.0.1:{world.client.port}"
    assert (await world.post("/api/cameras/porch/options", {"record": "always"}, headers={"Origin": origin}))[0] == 200
    status, body = await world.post("/api/cameras/porch/options", {"record": "off"},
                                    headers={"Origin": "http://127.0.0.1:1"})
    assert status == 403 and body == {"error": "cross-origin requests may not change camera options"}
    status, body = await world.post("/api/cameras/porch/options", None, data=b"{not json",
                                    headers={"Content-Type": "application/json"})
    assert status == 400 and body == {"error": "the body is not JSON"}
    status, body = await world.post("/api/cameras/porch/options", None, data=b"record=off")
    assert status == 415 and body == {"error": "send Content-Type: application/json"}
    assert world.services.options.get("porch", "record") == "always"


# ---- settings changes ----------------------------------------------------------------------------
async def test_a_settings_change_goes_to_the_node_as_its_set(world: World) -> None:
    status, body = await world.post("/api/cameras/porch/settings", {"fps": 5, "frame_size": "qvga"})
    assert status == 202 and body == {"id": "porch", "requested": {"fps": 5, "frame_size": "QVGA"},
                                      "current": {"fps": 10, "jpeg_quality": 12, "frame_size": "VGA"}}
    assert world.link.published == [("camhub/nodes/porch/set", {"fps": 5, "frame_size": "QVGA"}, 1)]


async def test_settings_changes_that_cannot_work_are_refused_and_counted(world: World) -> None:
    cases = [
        ("/api/cameras/porch/settings", {"fps": 0}, {}, 400, "bad_value"),
        ("/api/cameras/porch/settings", {"colour": 1}, {}, 400, "bad_value"),
        ("/api/cameras/door/settings", {"fps": 5}, {}, 409, "no_node"),
        ("/api/cameras/porch/settings", {"fps": 5}, {"headers": {"Origin": "http://evil.example"}}, 403,
         "cross_origin"),
        ("/api/cameras/porch/settings", None, {"data": "fps=5", "headers": {"Content-Type": "text/plain"}}, 415,
         "not_json"),
    ]
    for path, body, extra, status, reason in cases:
        got, answer = await world.post(path, body, **extra)
        assert got == status, (reason, answer)
        assert await world.metric("camhub_settings_refused_total", f'reason="{reason}"') >= 1, reason
    camera(world, "porch").available = False
    assert (await world.post("/api/cameras/porch/settings", {"fps": 5}))[0] == 409  # node_offline
    camera(world, "porch").available = True
    world.link.connected = False
    status, answer = await world.post("/api/cameras/porch/settings", {"fps": 5})
    assert status == 503 and answer["reason"] == "mqtt_down"
    assert world.link.published == []  # nothing refused ever reached the node
    _, hub, _ = await world.json("/api/hub")
    assert hub["counters"]["camhub_settings_refused"] == {"bad_value": 2, "no_node": 1, "cross_origin": 1,
                                                          "not_json": 1, "node_offline": 1, "mqtt_down": 1}


async def test_a_body_over_the_limit_is_refused_before_it_is_read(world: World) -> None:
    status, body = await world.post("/api/cameras/porch/options", {"motion": "x" * 70_000})
    assert status == 413 and "error" in body


# ---- options, motion, recordings -----------------------------------------------------------------
async def test_options_are_checked_and_reach_motion_detection(world: World) -> None:
    assert (await world.post("/api/cameras/porch/options", {"motion": "maybe"}))[0] == 400
    assert (await world.post("/api/cameras/porch/options", {"colour": "on"}))[0] == 400
    assert (await world.post("/api/cameras/porch/options", ["motion"]))[0] == 400
    status, body = await world.post("/api/cameras/porch/options", {"motion": "off"})
    assert status == 200 and body == {"motion": "off", "record": "off"}
    assert world.services.motion.camera("porch").enabled is False


@pytest.mark.parametrize(("path", "message"), [
    ("/api/cameras/porch/motion?since=yesterday", "since must be Unix seconds"),
    ("/api/cameras/porch/recordings?until=soon", "until must be Unix seconds"),
])
async def test_a_bad_time_range_is_a_400(world: World, path: str, message: str) -> None:
    status, body, _ = await world.json(path)
    assert status == 400 and body == {"error": message}


async def test_an_unknown_recording_is_a_404(world: World) -> None:
    for path in ("/cameras/porch/recordings/1764000000000-motion/stream",
                 "/cameras/porch/recordings/../video.mkv", "/cameras/porch/recordings/x/video.mkv"):
        status, body, _ = await world.json(path)
        assert status == 404, path
    assert (await world.json("/api/cameras/porch/recordings"))[1] == []


# ---- the guard: Host names, credentials ----------------------------------------------------------
async def test_a_foreign_host_name_is_refused_and_counted(world: World) -> None:
    status, body, _ = await world.json("/api/cameras", headers={"Host": "evil.example"})
    assert status == 421 and "CAMHUB_ALLOWED_HOSTS" in body["error"]
    async with world.client.get("/healthz", headers={"Host": "evil.example"}) as health:
        assert health.status == 200  # health checks pass whatever the name
    _, hub, _ = await world.json("/api/hub")
    assert hub["hosts_refused"] == 1 and hub["counters"]["camhub_http_requests_refused"]["host"] == 1


async def test_with_auth_a_view_token_opens_its_camera_only(tmp_path: Path) -> None:
    made = await make_world(tmp_path, auth_required=True, password="pw", token_key=b"k" * 32)
    try:
        made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
        made.services.cameras.add("yard", "Yard", "static", "http://127.0.0.1:9/").available = True
        assert (await made.json("/api/cameras"))[0] == 401
        token = made.server.auth.view_token("porch")
        assert (await made.json(f"/cameras/porch/snapshot.jpg?token={token}"))[0] == 503  # in: no frame yet
        assert (await made.json(f"/cameras/yard/snapshot.jpg?token={token}"))[0] == 401
        assert (await made.json(f"/api/cameras/porch?token={token}"))[0] == 401  # not the API
        basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
        status, urls, _ = await made.json("/api/cameras/porch/urls", headers=basic)
        assert status == 200 and urls["stream"].endswith(f"/cameras/porch/stream?token={token}")
        assert await made.metric("camhub_auth_failures_total", 'reason="bad_token"', basic) == 2
    finally:
        await made.client.close()


async def test_view_tokens_handed_out_stay_the_same_across_restarts_and_versions(tmp_path: Path) -> None:
    """A player keeps the URL it was given (VLC's playlist, Home Assistant's camera): the token is the HMAC-SHA256
    of ``view:<id>`` (an expiring one's: ``view:<id>\\n<expiry>``) under the hub's key, cut to 32 hex digits."""
    made = await make_world(tmp_path, auth_required=True, password="pw", token_key=b"k" * 32)
    try:
        made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
        basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
        _, urls, _ = await made.json("/api/cameras/porch/urls", headers=basic)
        assert urls["snapshot"].endswith("/cameras/porch/snapshot.jpg?token=b3f27ced40dae6316012d391cc42cd03")
        assert made.server.auth.view_token("porch", 1764000000) == "1764000000.946b9ab8c2cc7575fe8e3b04b3655bd1"
    finally:
        await made.client.close()


async def test_with_auth_a_basic_header_that_is_not_clean_base64_is_refused(tmp_path: Path) -> None:
    made = await make_world(tmp_path, auth_required=True, password="pw", token_key=b"k" * 32)
    try:
        good = base64.b64encode(b"admin:pw").decode()
        assert (await made.json("/api/cameras", headers={"Authorization": f"Basic {good}"}))[0] == 200
        for bad in (f"Basic {good}!", f"Basic {good[:4]}*{good[4:]}"):  # junk a lax decoder would skip
            assert (await made.json("/api/cameras", headers={"Authorization": bad}))[0] == 401
        assert await made.metric("camhub_auth_failures_total", 'reason="bad_credentials"', {
            "Authorization": f"Basic {good}"}) == 2
    finally:
        await made.client.close()


async def test_without_credentials_a_browser_is_asked_for_them_and_guessing_is_throttled_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = await make_world(tmp_path, auth_required=True, password="pw", token_key=b"k" * 32)
    caplog.set_level("INFO", logger="camhub.hub.http.server")
    try:
        async with made.client.get("/api/cameras") as response:  # a browser's first request: the login prompt
            assert response.status == 401 and await response.text() == "credentials required\n"
            assert response.headers["WWW-Authenticate"] == 'Basic realm="camhub", charset="UTF-8"'
        assert caplog.records == []  # not a failed login
        wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
        for _ in range(FAILURE_LIMIT):
            assert (await made.json("/api/cameras", headers=wrong))[0] == 401
        async with made.client.get("/api/cameras", headers=wrong) as response:
            assert response.status == 429 and await response.text() == "too many failed attempts; try again later\n"
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert [r.getMessage() for r in caplog.records] == [  # once per kind and client a minute: no log flood
            "failed login from 127.0.0.1 (bad_credentials)",
            "too many failed logins from 127.0.0.1; refusing it for a while"]
        assert made.server.sizes() == {"connections": 0, "deadline_served": 1, "deadline_watched": 0,
                                       "auth_throttle": 1, "playbacks": 0, "refusal_reasons": 3, "log_keys": 2}
    finally:
        await made.client.close()


async def test_a_refused_host_name_is_logged_and_an_allowed_one_answered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = await make_world(tmp_path, allowed_hosts="cams.example")
    try:
        assert (await made.json("/api/cameras", headers={"Host": "cams.example"}))[0] == 200
        assert (await made.json("/api/cameras", headers={"Host": "evil.example:8000"}))[0] == 421
        assert [r.getMessage() for r in caplog.records if r.name == "camhub.hub.http.server"] == [
            "refused a request for Host 'evil.example:8000' from 127.0.0.1 (not one of the hub's names)"]
    finally:
        await made.client.close()


def _listening(port: int) -> list[str]:
    """The local addresses of the sockets listening on ``port``, as the kernel lists them (/proc/net/tcp
    and tcp6: what ``ss -ltn`` shows): hex, e.g. ``0100007F`` for 127.0.0.1, ``00000000`` for every address."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.append(address)
    return found


async def test_the_hub_listens_only_on_the_address_it_is_told(tmp_path: Path) -> None:
    # Security by default: CAMHUB_HOST=127.0.0.1 must not open the hub to the network too.
    made = await make_world(tmp_path)
    server = HttpServer(replace(made.server.settings, host="127.0.0.1", port=_free_port()), made.services)
    await server.start()
    try:
        assert _listening(server.settings.port) == ["0100007F"]
    finally:
        await server.stop()
        await made.client.close()


async def test_a_hub_on_every_address_answers_to_the_address_it_was_reached_by(tmp_path: Path) -> None:
    """Bound to 0.0.0.0, the hub takes a Host that is the address the request came in on (here 127.0.0.1 as an
    IPv4-mapped IPv6 address, which is not a loopback address to Python 3.11): a page at an address cannot be
    rebound."""
    made = await make_world(tmp_path, host="0.0.0.0")
    try:
        host = {"Host": f"[::ffff:127.0.0.1]:{made.client.port}"}
        assert (await made.json("/api/cameras", headers=host))[0] == 200
        assert (await made.json("/api/cameras", headers={"Host": "[::ffff:10.1.2.3]:80"}))[0] == 421
    finally:
        await made.client.close()


async def test_without_the_dashboard_files_the_hub_says_so(world: World, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setattr(server_module, "WEB_DIR", tmp_path / "web")
    async with world.client.get("/") as page:
        assert await page.text() == "camhub hub is running; the dashboard files (web/) are missing.\n"


async def test_the_dashboard_its_files_and_the_health_check_are_served(world: World) -> None:
    async with world.client.get("/") as page:
        assert page.status == 200 and page.content_type == "text/html" and "<html" in await page.text()
        assert page.headers["Cache-Control"] == "no-cache"
    async with world.client.get("/static/app.js") as script:
        assert script.status == 200 and "javascript" in script.content_type
    async with world.client.get("/healthz") as health:
        assert health.status == 200 and await health.text() == "ok\n"


async def _started(made: World, **deadline: float) -> HttpServer:
    server = HttpServer(replace(made.server.settings, port=_free_port()), made.services)
    for name, value in deadline.items():
        setattr(server.deadline, name, value)
    await server.start()
    return server


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bytes:
    """One request on a kept-alive connection: the response's status line."""
    writer.write(head)
    status = await asyncio.wait_for(reader.readline(), 5)
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), 5)) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def test_a_malformed_request_is_a_400_counted_and_logged_quietly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = await make_world(tmp_path)
    server = await _started(made)
    caplog.set_level("INFO", logger="aiohttp.access")
    caplog.set_level("DEBUG", logger="camhub.hub.http")
    try:
        for request in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n", b"BREW\x01 / HTTP/1.1\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
            writer.write(request)
            assert (await asyncio.wait_for(reader.readline(), 5)).split(b" ")[1] == b"400"
            writer.close()
        records = [r for r in caplog.records if r.name == "camhub.hub.http"]
        assert [(r.levelname, r.exc_info, r.getMessage()) for r in records] == [  # why, not the bytes sent
            ("DEBUG", None, "malformed request (400): Invalid header token"),
            ("DEBUG", None, "malformed request (400): Invalid method encountered")]
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{server.settings.port}/metrics") as response:
            metrics = (await response.text()).splitlines()
        assert 'camhub_http_requests_malformed_total{kind="malformed"} 2.0' in metrics
        assert 'camhub_http_requests_refused_total{reason="host"} 0.0' in metrics
        assert "camhub_http_forwarded_ignored_total 0.0" in metrics
        assert not [r for r in caplog.records if r.name.startswith("aiohttp.access")]  # no access log
    finally:
        await server.stop()
        await made.client.close()


async def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "IDLE_KEEPALIVE_S", 0.3)
    made = await make_world(tmp_path)
    server = await _started(made)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
        assert (await _request(reader, writer, GET)).startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the hub once idle
        writer.close()
        await server.stop()
        await server.start()  # a restart takes its port again at once (its closed connections in TIME_WAIT)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
        assert (await _request(reader, writer, GET)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await server.stop()
        await made.client.close()


async def test_only_connections_that_never_complete_a_request_head_in_time_are_closed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = await make_world(tmp_path)
    server = await _started(made, timeout=1.6)
    sweep = asyncio.create_task(server.deadline.sweep(server._runner.server, 0.2))  # type: ignore[union-attr]
    caplog.set_level("INFO", logger="camhub.hub.http.server")
    port = server.settings.port
    try:
        kept = await asyncio.open_connection("127.0.0.1", port)  # served, then idle: not this sweep's business
        assert (await _request(*kept, GET)).startswith(b"HTTP/1.1 200")
        slow = await asyncio.open_connection("127.0.0.1", port)  # takes its time, but sends its head in time
        lazy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]  # never do
        await asyncio.sleep(0.8)
        assert (await _request(*slow, GET)).startswith(b"HTTP/1.1 200")
        for reader, _ in lazy:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.sleep(0.6)  # more sweeps
        for served in (kept, slow):
            assert (await _request(*served, GET)).startswith(b"HTTP/1.1 200")  # still open
        assert server.deadline.closed == 2
        sizes = server.sizes()
        assert (sizes["connections"], sizes["deadline_served"], sizes["log_keys"]) == (2, 2, 1)
        assert [r.getMessage() for r in caplog.records] == [
            "closing a connection that sent no complete request in 2 s"]  # once a minute
        for _, writer in (kept, slow, *lazy):
            writer.close()
    finally:
        sweep.cancel()
        await server.stop()
        await made.client.close()


# ---- counters no one could see before ------------------------------------------------------------
async def test_a_failing_frame_tap_is_counted_by_tap_in_metrics_and_the_hub(world: World) -> None:
    feed = camera(world, "porch").feed
    feed.add_tap("broken", lambda frame: 1 / 0)
    jpeg = scenes.still(count=1, size=(160, 120))[0]
    for _ in range(3):
        feed.publish(jpeg, time.time())
    assert feed.latest is not None and feed.latest.seq == 3  # the fan-out went on
    assert await world.metric("camhub_frame_tap_errors_total", 'tap="broken"') == 3
    assert (await world.json("/api/hub"))[1]["counters"]["camhub_frame_tap_errors"] == {"broken": 3}


async def test_a_connection_that_never_sends_a_request_is_closed_and_counted(tmp_path: Path) -> None:
    made = await make_world(tmp_path)
    server = HttpServer(replace(made.server.settings, port=_free_port()), made.services)
    server.deadline.timeout = 0.3
    await server.start()
    sweep = asyncio.create_task(server.enforce_request_deadline())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
        writer.write(b"GET / HT")  # and nothing more
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the hub
        writer.close()
        families = {f.name: dict(f.values) for f in server.counters()}
        assert families["camhub_http_requests_refused"]["request_timeout"] == 1
    finally:
        sweep.cancel()
        await server.stop()
        await made.client.close()


async def test_mqtt_messages_no_subscription_wanted_are_counted() -> None:
    link = MqttLink(LinkSettings(), Topics())
    seen: list[str] = []
    link.subscribe("camhub/nodes/+/announce", 1, lambda topic, payload: seen.append(topic))
    for topic in ("camhub/nodes/porch/announce", "camhub/other/thing", "camhub/nodes/porch/stats"):
        await link._dispatch(aiomqtt.Message(topic, b"{}", 1, False, 1, None))
    assert seen == ["camhub/nodes/porch/announce"] and link.ignored == 2 and link.stats()["ignored"] == 2
    families = {f.name: dict(f.values) for f in link.counters()}
    assert families["camhub_mqtt_messages_ignored"] == {"unsubscribed_topic": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
