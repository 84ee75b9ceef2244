"""The recordings' HTTP side in process (``http.recordings`` on the world of tests/support/hubhttp.py):
the list, the download, and playback as MJPEG at the recording's pace, with their refusals.

The recordings are real segment files with sidecars, as an earlier run of the hub left them; the
store indexes them when it starts. Playback is read over a plain socket that trusts Content-Length
(independent of the hub's parser). End to end, with credentials and tokens: test_hub_recordings.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.cluster.members import ClusterSettings
from camhub.hub.cluster.role import ClusterRole
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.pulls import OnDemandPull
from camhub.hub.ingest.sources import AllowedSources
from camhub.hub.mqtt.link import LinkSettings, MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.taps import segments
from tests.support.hubhttp import NODE_ANNOUNCE, World, make_world
from tests.support.procs import Mosquitto, free_port

START = int(time.time()) - 3600 + 0.25  # an hour ago: within the world's retention (a day)
ID = f"{int(START * 1000)}-motion"


def jpeg(level: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (64, 48), level).save(out, "JPEG", quality=80)
    return out.getvalue()


FRAMES = [jpeg(30 + 10 * i) for i in range(20)]


def record(root: Path, start: float, times: list[float], frames: list[bytes] | None = None,
           kind: str = "motion", camera: str = "porch") -> dict[str, Any]:
    """A closed recording on disk, written as the hub writes one (file, then sidecar)."""
    frames = frames or FRAMES
    rec_id = f"{int(start * 1000)}-{kind}"
    writer = segments.SegmentWriter(root / camera / f"{rec_id}.mkv", start, frames[0], "t")
    for i, t in enumerate(times):
        writer.write(frames[i % len(frames)], start + t)
    writer.close()
    sidecar = {"id": rec_id, "camera": camera, "kind": kind, "start": start, "end": writer.end,
               "frames": writer.frames, "bytes": writer.bytes, "peak": 2.5}
    (root / camera / f"{rec_id}.json").write_text(json.dumps(sidecar))
    return sidecar


async def start(tmp_path: Path, **kwargs: Any) -> World:
    """The HTTP world (``make_world(tmp_path, **kwargs)``) with its recordings' store started on what is in
    ``tmp_path / "rec"``."""
    made = await make_world(tmp_path, **kwargs)
    made.services.cameras.add("porch", "Porch", "mqtt", NODE_ANNOUNCE["stream_url"], dict(NODE_ANNOUNCE))
    made.services.cameras.add("door", "Door", "static", "http://127.0.0.1:9/")
    recordings = made.services.recordings
    recordings.start()
    expected = len(list((tmp_path / "rec" / "porch").glob("*.json")))
    for _ in range(1000):
        if len(recordings.store.recordings("porch")) == expected:
            break
        await asyncio.sleep(0.01)
    return made


async def stop(world: World) -> None:
    await world.services.recordings.stop()
    await world.client.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    record(tmp_path / "rec", START, [0.0, 0.25, 0.5, 0.75, 1.0])
    record(tmp_path / "rec", START + 100, [0.0, 0.5], kind="always")
    made = await start(tmp_path)
    yield made
    await stop(made)


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def play(world: World, path: str, count: int | None = None) -> tuple[int, dict[str, str], list[Any]]:
    """Status, headers and the parts ``(headers, body)`` of a playback (all of it, or the first ``count``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", world.client.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    try:
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)}
        parts: list[Any] = []
        if status != 200:
            return status, headers, [json.loads(await reader.read(int(headers["content-length"])))]
        while count is None or len(parts) < count:
            try:
                block = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except asyncio.IncompleteReadError:
                break  # the recording ended: the hub closed the connection
            lines = block.decode("latin-1").split("\r\n")
            assert lines[0] == "--camhubframe", lines
            part = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
            body = await reader.readexactly(int(part["content-length"]))
            assert await reader.readexactly(2) == b"\r\n"
            parts.append((part, body))
        return status, headers, parts
    finally:
        writer.close()


# ---- the list and the download -------------------------------------------------------------------
async def test_recordings_are_listed_newest_first_with_their_urls(world: World) -> None:
    status, listed, _ = await world.json("/api/cameras/porch/recordings")
    assert status == 200 and [r["id"] for r in listed] == [f"{int((START + 100) * 1000)}-always",
                                                            f"{int(START * 1000)}-motion"]
    motion = listed[1]
    base = f"/cameras/porch/recordings/{motion['id']}"
    assert motion == {"id": motion["id"], "camera": "porch", "kind": "motion", "start": START, "end": START + 1.0,
                      "frames": 5, "bytes": sum(map(len, FRAMES[:5])), "peak": 2.5, "open": False,
                      "stream": f"{base}/stream", "download": f"{base}/video.mkv"}
    assert [r["kind"] for r in (await world.json(f"/api/cameras/porch/recordings?since={START + 1.5}"))[1]] \
        == ["always"]
    assert [r["kind"] for r in (await world.json(f"/api/cameras/porch/recordings?until={START + 99}"))[1]] \
        == ["motion"]
    assert (await world.json("/api/cameras/door/recordings"))[1] == []


async def test_a_recording_downloads_as_its_file(world: World, tmp_path: Path) -> None:
    rec_id = f"{int(START * 1000)}-motion"
    async with world.client.get(f"/cameras/porch/recordings/{rec_id}/video.mkv") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "video/x-matroska"
        assert response.headers["Content-Disposition"] == f'attachment; filename="porch-{rec_id}.mkv"'
        assert await response.read() == (tmp_path / "rec" / "porch" / f"{rec_id}.mkv").read_bytes()


async def test_a_listed_recording_without_its_file_is_a_503(world: World, tmp_path: Path) -> None:
    rec_id = f"{int(START * 1000)}-motion"
    (tmp_path / "rec" / "porch" / f"{rec_id}.mkv").unlink()
    status, body, headers = await world.json(f"/cameras/porch/recordings/{rec_id}/video.mkv")
    assert status == 503 and body == {"error": "the recording has no data on disk yet", "id": rec_id}
    assert headers["Retry-After"] == "5"
    status, _, [body] = await play(world, f"/cameras/porch/recordings/{rec_id}/stream")
    assert status == 503 and body == {"error": "the recording cannot be read yet", "id": rec_id}


@pytest.mark.parametrize("path", [
    f"/cameras/porch/recordings/{ID.replace('motion', 'timelapse')}/stream",  # a name that could be one, but is not
    f"/cameras/porch/recordings/{int((START + 100) * 1000)}-motion/video.mkv",  # the other one is "always"
    f"/cameras/door/recordings/{ID}/stream",  # another camera's
    "/cameras/porch/recordings/17-motion/stream",  # not a recording's name
    f"/cameras/porch/recordings/{ID}.json/video.mkv",
    f"/cameras/porch/recordings/{'9' * 100}-motion/stream",  # named back cut to 64 characters
], ids=["not-a-timelapse", "not-always", "another-camera", "not-a-name", "json-suffix", "too-long"])
# (stable ids: the paths hold the time of collection, and every pytest-xdist worker must collect the same names)
async def test_an_unknown_recording_is_a_404_naming_it(world: World, path: str) -> None:
    status, body, _ = await world.json(path)
    assert status == 404 and body == {"error": "unknown recording", "id": path.split("/")[4][:64]}


# ---- playback ------------------------------------------------------------------------------------
async def test_playback_sends_every_frame_as_recorded_with_its_capture_time(world: World) -> None:
    rec_id = f"{int(START * 1000)}-motion"
    status, headers, parts = await play(world, f"/cameras/porch/recordings/{rec_id}/stream?speed=8")
    assert status == 200 and headers["content-type"] == "multipart/x-mixed-replace; boundary=camhubframe"
    assert headers["x-camera-id"] == "porch" and headers["x-recording-id"] == rec_id
    assert [body for _, body in parts] == FRAMES[:5]
    assert [int(h["x-frame-seq"]) for h, _ in parts] == [1, 2, 3, 4, 5]
    assert [h["x-timestamp"] for h, _ in parts] == [f"{START + t:.6f}" for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(h["content-type"] == "image/jpeg" for h, _ in parts)
    assert world.server.playbacks.playing == 0  # over: the slot is free


async def test_playback_starts_t_seconds_in(world: World) -> None:
    rec_id = f"{int(START * 1000)}-motion"
    _, _, parts = await play(world, f"/cameras/porch/recordings/{rec_id}/stream?t=0&speed=64")
    assert [body for _, body in parts] == FRAMES[:5]  # 0 and 64 are the ends of their ranges
    _, _, parts = await play(world, f"/cameras/porch/recordings/{rec_id}/stream?t=0.5&speed=8")
    assert [body for _, body in parts] == FRAMES[2:5]
    _, _, parts = await play(world, f"/cameras/porch/recordings/{rec_id}/stream?t=0.6&speed=8")
    assert [body for _, body in parts] == FRAMES[3:5]
    _, _, parts = await play(world, f"/cameras/porch/recordings/{rec_id}/stream?t=30")
    assert parts == []  # past its end: nothing to play


async def test_playback_keeps_the_recordings_pace_times_the_speed(tmp_path: Path) -> None:
    long = record(tmp_path / "rec", START, [0.5 * i for i in range(9)])  # four seconds
    world = await start(tmp_path)
    try:
        path = f"/cameras/porch/recordings/{long['id']}/stream"
        began = time.monotonic()
        _, _, parts = await play(world, f"{path}?speed=1")
        took = time.monotonic() - began
        assert len(parts) == 9 and took >= 4.0 * 0.95  # never faster than recorded
        began = time.monotonic()
        _, _, parts = await play(world, f"{path}?speed=64")
        assert len(parts) == 9 and time.monotonic() - began < 2.0  # 64 times as fast: 1/16 s (not 4 s)
        began = time.monotonic()
        _, _, parts = await play(world, f"{path}?speed=4&t=2")
        took = time.monotonic() - began
        assert len(parts) == 5 and 0.5 * 0.95 <= took < 2.0
    finally:
        await stop(world)


async def test_playback_without_a_speed_plays_at_the_recordings_own_pace(world: World) -> None:
    began = time.monotonic()
    _, _, parts = await play(world, f"/cameras/porch/recordings/{ID}/stream")
    assert len(parts) == 5 and time.monotonic() - began >= 1.0 * 0.95  # one second recorded: a second played


async def test_playback_t_seconds_in_begins_at_once(tmp_path: Path) -> None:
    long = record(tmp_path / "rec", START, [0.5 * i for i in range(9)])  # four seconds
    world = await start(tmp_path)
    try:
        began = time.monotonic()
        _, _, parts = await play(world, f"/cameras/porch/recordings/{long['id']}/stream?t=4")
        assert len(parts) == 1 and time.monotonic() - began < 2.0  # the last frame, now (not after four seconds)
    finally:
        await stop(world)


async def test_a_hub_not_in_a_cluster_serves_its_own_whatever_hub_is_named(world: World, tmp_path: Path) -> None:
    async with world.client.get(f"/cameras/porch/recordings/{ID}/video.mkv?hub=b") as response:
        assert response.status == 200
        assert await response.read() == (tmp_path / "rec" / "porch" / f"{ID}.mkv").read_bytes()


@pytest.mark.parametrize(("query", "message"), [
    ("t=-1", "t must be in [0, 604800]"), ("t=604801", "t must be in [0, 604800]"), ("t=soon", "t must be a number"),
    ("speed=0.09", "speed must be in [0.1, 64]"), ("speed=65", "speed must be in [0.1, 64]"),
    ("speed=fast", "speed must be a number"),
])
async def test_a_bad_offset_or_speed_is_a_400_naming_it(world: World, query: str, message: str) -> None:
    status, body, _ = await world.json(f"/cameras/porch/recordings/{int(START * 1000)}-motion/stream?{query}")
    assert status == 400 and body == {"error": message}


async def test_playbacks_beyond_the_limit_are_refused_until_one_ends(world: World) -> None:
    world.server.playbacks.limit = 1
    rec_id = f"{int(START * 1000)}-motion"
    first = asyncio.create_task(play(world, f"/cameras/porch/recordings/{rec_id}/stream?speed=0.5"))
    for _ in range(500):
        if world.server.playbacks.playing:
            break
        await asyncio.sleep(0.01)
    status, _, [body] = await play(world, f"/cameras/porch/recordings/{rec_id}/stream")
    assert status == 503 and body == {"error": "too many recordings playing", "id": rec_id}
    assert len((await first)[2]) == 5
    assert world.server.playbacks.playing == 0
    assert len((await play(world, f"/cameras/porch/recordings/{rec_id}/stream?speed=8"))[2]) == 5


async def test_each_playback_under_way_counts_against_the_limit(world: World) -> None:
    world.server.playbacks.limit = 2
    slow = [asyncio.create_task(play(world, f"/cameras/porch/recordings/{ID}/stream?speed=0.5")) for _ in range(2)]
    await until(lambda: world.server.playbacks.playing == 2, "two playbacks under way")
    status, _, [body] = await play(world, f"/cameras/porch/recordings/{ID}/stream")
    assert status == 503 and body == {"error": "too many recordings playing", "id": ID}
    assert [len(parts) for _, _, parts in await asyncio.gather(*slow)] == [5, 5]
    assert world.server.playbacks.playing == 0


async def test_a_viewer_that_stops_reading_is_let_go_after_the_write_timeout(tmp_path: Path) -> None:
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (480, 640), dtype=np.uint8)).save(noise, "JPEG",
                                                                                                 quality=95)
    big = record(tmp_path / "rec", START, [0.001 * i for i in range(80)], frames=[noise.getvalue()])  # ~20 MB
    world = await start(tmp_path, write_timeout_s=0.3)  # the hub's setting
    reader, writer = await asyncio.open_connection("127.0.0.1", world.client.port)
    try:
        writer.write(f"GET /cameras/porch/recordings/{big['id']}/stream?speed=64 HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n\r\n".encode())
        await until(lambda: world.server.playbacks.playing == 1, "the playback under way")
        # it never reads: the socket buffers fill, and the hub gives up on it
        await until(lambda: world.server.playbacks.playing == 0, "the playback given up")
    finally:
        writer.close()
        await stop(world)


# ---- in a cluster: every hub's recordings of a camera, played and downloaded through any hub -------
SECRET = "a cluster secret of the tests"


@dataclass
class Member:
    """One hub of a cluster: its HTTP world with its cluster role, over a real MQTT link."""

    world: World
    role: ClusterRole
    root: Path
    tasks: list[asyncio.Task[None]]


async def member(tmp_path: Path, hub_id: str, mosquitto: Mosquitto, times: dict[float, str]) -> Member:
    """Hub ``hub_id`` with recordings of the porch camera starting at each of ``times`` (start: kind)."""
    root = tmp_path / hub_id
    for at, kind in times.items():
        record(root / "rec", at, [0.0, 0.25, 0.5, 0.75, 1.0], kind=kind)
    port = free_port()
    topics = Topics(hub_id=hub_id)
    link = MqttLink(LinkSettings("127.0.0.1", mosquitto.port, keep_retained=False), topics)

    def role(cameras: Cameras) -> ClusterRole:
        settings = ClusterSettings(hub_id=hub_id, role="origin", url=f"http://127.0.0.1:{port}", version="9.9.9",
                                   instance=f"i{hub_id}", allowed=AllowedSources.parse(None), settle_s=0.3,
                                   startup_s=0.3)
        return ClusterRole(settings, SECRET, link, topics, cameras, OnDemandPull(), f"camhub/9.9.9 (+i{hub_id})")

    world = await start(root, cluster_role=role, port=port, cluster=ClusterKey(SECRET, hub_id))
    cluster = world.services.cluster
    assert cluster is not None
    cluster.subscribe()
    link.up.connect(cluster.link_up)
    link.down.connect(cluster.link_down)
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(link.run()), loop.create_task(cluster.run())]
    return Member(world, cluster, root / "rec" / "porch", tasks)


async def leave(hub: Member) -> None:
    for task in hub.tasks:
        task.cancel()
    await asyncio.wait(hub.tasks, timeout=10)
    await hub.role.close()
    await stop(hub.world)


B_START = START + 50


@pytest.fixture
async def hubs(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Member, Member]]:
    """Hubs ``a`` (a motion recording at START) and ``b`` (one always at START + 50) of one cluster, each live
    to the other."""
    a = await member(tmp_path, "a", mosquitto, {START: "motion"})
    b = await member(tmp_path, "b", mosquitto, {B_START: "always"})
    try:
        await until(lambda: a.role.peers.live("b") is not None and b.role.peers.live("a") is not None,
                    "each hub live to the other")
        yield a, b
    finally:
        await leave(a)
        await leave(b)


A_ID, B_ID = f"{int(START * 1000)}-motion", f"{int(B_START * 1000)}-always"


async def test_a_hub_lists_the_cameras_recordings_of_every_live_hub_newest_first_naming_each_holder(
        hubs: tuple[Member, Member]) -> None:
    a, b = hubs
    status, listed, _ = await a.world.json("/api/cameras/porch/recordings")
    assert status == 200 and [(r["id"], r["hub"]) for r in listed] == [(B_ID, "b"), (A_ID, "a")]
    for item in listed:
        base = f"/cameras/porch/recordings/{item['id']}"
        assert (item["stream"], item["download"]) == (f"{base}/stream?hub={item['hub']}",
                                                      f"{base}/video.mkv?hub={item['hub']}")
    assert listed[0] == {"id": B_ID, "camera": "porch", "kind": "always", "start": B_START, "end": B_START + 1.0,
                         "frames": 5, "bytes": sum(map(len, FRAMES[:5])), "peak": 2.5, "open": False, "hub": "b",
                         "stream": listed[0]["stream"], "download": listed[0]["download"]}
    _, local, _ = await a.world.json("/api/cameras/porch/recordings?local=1")
    assert [(r["id"], r["hub"]) for r in local] == [(A_ID, "a")]
    _, later, _ = await a.world.json(f"/api/cameras/porch/recordings?since={START + 10}")
    assert [r["id"] for r in later] == [B_ID]  # the range goes to the other hubs too
    _, seen_from_b, _ = await b.world.json("/api/cameras/porch/recordings")
    assert [(r["id"], r["hub"]) for r in seen_from_b] == [(B_ID, "b"), (A_ID, "a")]


async def test_a_recording_held_by_another_hub_downloads_through_this_one(hubs: tuple[Member, Member]) -> None:
    a, b = hubs
    async with a.world.client.get(f"/cameras/porch/recordings/{B_ID}/video.mkv?hub=b") as response:
        body = await response.read()
        assert response.status == 200 and response.headers["Content-Type"] == "video/x-matroska"
        assert response.headers["Content-Disposition"] == f'attachment; filename="porch-{B_ID}.mkv"'
        assert int(response.headers["Content-Length"]) == len(body)
    assert body == (b.root / f"{B_ID}.mkv").read_bytes()
    # this hub's own, asked for by its own name or by none: served here
    for query in ("?hub=a", ""):
        async with a.world.client.get(f"/cameras/porch/recordings/{A_ID}/video.mkv{query}") as response:
            assert response.status == 200 and await response.read() == (a.root / f"{A_ID}.mkv").read_bytes()


async def test_the_holders_refusals_come_back_as_they_are(hubs: tuple[Member, Member]) -> None:
    a, b = hubs
    status, body, headers = await a.world.json(f"/cameras/porch/recordings/{A_ID}/video.mkv?hub=b")
    assert status == 404 and body == {"error": "unknown recording", "id": A_ID}  # b does not hold a's
    (b.root / f"{B_ID}.mkv").unlink()
    status, body, headers = await a.world.json(f"/cameras/porch/recordings/{B_ID}/video.mkv?hub=b")
    assert status == 503 and body == {"error": "the recording has no data on disk yet", "id": B_ID}
    assert headers["Retry-After"] == "5"


async def test_a_recording_held_by_another_hub_plays_through_this_one(hubs: tuple[Member, Member]) -> None:
    a, _b = hubs
    status, headers, parts = await play(a.world, f"/cameras/porch/recordings/{B_ID}/stream?hub=b&speed=8")
    assert status == 200 and headers["content-type"] == "multipart/x-mixed-replace; boundary=camhubframe"
    assert headers["x-camera-id"] == "porch" and headers["x-recording-id"] == B_ID
    assert [body for _, body in parts] == FRAMES[:5]
    assert [h["x-timestamp"] for h, _ in parts] == [f"{B_START + t:.6f}" for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    _, _, parts = await play(a.world, f"/cameras/porch/recordings/{B_ID}/stream?hub=b&t=0.5&speed=64")
    assert [body for _, body in parts] == FRAMES[2:5]  # the offset and the speed go on to the holder
    began = time.monotonic()
    _, _, parts = await play(a.world, f"/cameras/porch/recordings/{B_ID}/stream?hub=b&t=0.5&speed=0.5")
    assert len(parts) == 3 and time.monotonic() - began >= 1.0 * 0.95  # half speed: a second for half of one


async def test_a_recording_on_a_hub_that_is_not_online_or_does_not_answer_is_a_503(
        hubs: tuple[Member, Member]) -> None:
    a, b = hubs
    status, body, _ = await a.world.json(f"/cameras/porch/recordings/{B_ID}/video.mkv?hub=c")
    assert status == 503 and body == {"error": "the hub holding this recording is not online", "id": "porch",
                                      "hub": "c"}
    status, _, [body] = await play(a.world, f"/cameras/porch/recordings/{B_ID}/stream?hub={'x' * 100}")
    assert status == 503 and body["hub"] == "x" * 64
    status, body, _ = await a.world.json(f"/cameras/door/recordings/{B_ID}/video.mkv?hub=b")
    assert status == 404  # a camera this hub does not know is not asked for elsewhere
    await b.world.client.close()  # b is still a live member, but its HTTP side is gone
    for media in ("video.mkv", "stream"):
        status, body, _ = await a.world.json(f"/cameras/porch/recordings/{B_ID}/{media}?hub=b")
        assert status == 503 and body == {"error": "the hub holding this recording does not answer",
                                          "id": "porch", "hub": "b"}
    _, listed, _ = await a.world.json("/api/cameras/porch/recordings")
    assert [r["id"] for r in listed] == [A_ID]  # the list: what the hubs that answer hold


async def test_a_viewer_of_a_relayed_playback_that_stops_reading_is_let_go(tmp_path: Path,
                                                                          mosquitto: Mosquitto) -> None:
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (480, 640), dtype=np.uint8)).save(noise, "JPEG",
                                                                                                 quality=95)
    big = record(tmp_path / "b" / "rec", START, [0.001 * i for i in range(80)], frames=[noise.getvalue()])  # ~20 MB
    a = await member(tmp_path, "a", mosquitto, {})
    b = await member(tmp_path, "b", mosquitto, {})
    try:
        await until(lambda: a.role.peers.live("b") is not None, "b live to a")
        a.world.server.playbacks.write_timeout_s = 0.3  # b keeps its 10 s: only a letting go ends it sooner
        reader, writer = await asyncio.open_connection("127.0.0.1", a.world.client.port)
        try:
            writer.write(f"GET /cameras/porch/recordings/{big['id']}/stream?hub=b&speed=64 HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\n\r\n".encode())
            await until(lambda: b.world.server.playbacks.playing == 1, "the playback under way")
            await until(lambda: b.world.server.playbacks.playing == 0, "the playback given up", timeout=5.0)
        finally:
            writer.close()
    finally:
        await leave(a)
        await leave(b)


async def test_a_list_from_a_hub_of_another_version_is_taken_as_far_as_it_makes_sense(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    # another hub's answer is input like any other: items without a start time sort last, ids that are not a
    # recording's are left out, and the rest is listed as usual
    later = f"{int((START + 60) * 1000)}-always"
    answer = [{"id": later, "start": START + 60}, {"id": f"{int((START - 60) * 1000)}-motion", "start": "soon"},
              {"id": f"{int((START - 90) * 1000)}-motion"}, {"id": "../../etc/passwd", "start": START + 90}]

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/api/cameras/porch/recordings", listing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    a = await member(tmp_path, "a", mosquitto, {START: "motion"})
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("camhub/hubs/old/info", json.dumps(
                {"id": "old", "role": "origin", "url": f"http://127.0.0.1:{port}", "version": "0.9"}), retain=True)
            await client.publish("camhub/hubs/old/availability", "online", retain=True)
        await until(lambda: a.role.peers.live("old") is not None, "the other hub live")
        status, listed, _ = await a.world.json("/api/cameras/porch/recordings")
        assert status == 200 and [(r["id"], r["hub"]) for r in listed] == [
            (later, "old"), (A_ID, "a"), (answer[1]["id"], "old"), (answer[2]["id"], "old")]
    finally:
        await leave(a)
        await runner.cleanup()
