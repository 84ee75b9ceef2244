"""The node firmware as a simulated node: its contract on MQTT and HTTP, and its fan-out under load.

Every test runs on CPython, on the MicroPython Unix port and on CircuitPython's VM (a 1 MB heap
each). Per runtime one real mosquitto and one ``camhub node --sim`` serve the whole module (each
test starts by waiting until the previous test's viewers are gone); the ``set`` tests, which change
the node, come last.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import RUNTIMES, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

NODE = "alpha"
FPS = 10
ANNOUNCE_FIELDS = {"id", "name", "stream_url", "snapshot_url", "status_url", "board", "sensor", "frame_size",
                   "width", "height", "fps", "jpeg_quality", "firmware", "ip", "controls"}
STATS_FIELDS = {"uptime_s", "frames", "fps", "clients", "dropped", "free_heap", "rssi"}
NODE_ENV = {"CAMHUB_STATS_INTERVAL_S": "1", "CAMHUB_MQTT_KEEPALIVE_S": "4", "CAMHUB_WRITE_TIMEOUT_S": "2",
            "CAMHUB_NODE_NAME": "Alpha camera"}




@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def broker(runtime: str) -> Iterator[Mosquitto]:
    broker = Mosquitto()  # one per runtime: no retained message of the other runtime's node
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def node(broker: Mosquitto, runtime: str) -> Iterator[SimNode]:
    proc = SimNode(NODE, broker.port, fps=FPS, frame_size="QVGA", env=NODE_ENV, runtime=runtime)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        print(proc.output()[-3000:])


@pytest.fixture(scope="module")
def watch(broker: Mosquitto, node: SimNode) -> Iterator[Observer]:
    obs = Observer(broker.port, ["camhub/#"])
    yield obs
    obs.close()


@pytest.fixture
def idle(node: SimNode) -> SimNode:
    """The node with no viewers left over from an earlier test."""
    wait_until(lambda: get_json(node.url + "/status")["clients"] == 0, what="no viewers")
    return node


def test_announce_carries_every_contract_field(broker: Mosquitto, watch: Observer, idle: SimNode) -> None:
    announce = watch.wait_for(f"camhub/nodes/{NODE}/announce").json()
    # retained: a client subscribing now (after the node announced) still gets it, flagged retained
    late = Observer(broker.port, [f"camhub/nodes/{NODE}/announce"])
    try:
        assert late.wait_for(f"camhub/nodes/{NODE}/announce").retain
    finally:
        late.close()
    assert set(announce) == ANNOUNCE_FIELDS
    assert announce["id"] == NODE and announce["name"] == "Alpha camera"
    assert announce["stream_url"] == f"http://127.0.0.1:{idle.http_port}/stream"
    assert announce["snapshot_url"] == f"http://127.0.0.1:{idle.http_port}/snapshot.jpg"
    assert announce["status_url"] == f"http://127.0.0.1:{idle.http_port}/status"
    assert (announce["frame_size"], announce["width"], announce["height"]) == ("QVGA", 320, 240)
    assert announce["fps"] == FPS and announce["board"] == "simulated" and announce["ip"] == "127.0.0.1"
    # what `set` accepts: espcamera's JPEG quality range, 2-55
    assert announce["controls"]["fps"] == [1, 30] and announce["controls"]["jpeg_quality"] == [2, 55]
    assert watch.wait_for(f"camhub/nodes/{NODE}/availability").text == "online"
    stats = watch.wait_for(f"camhub/nodes/{NODE}/stats").json()
    assert set(stats) == STATS_FIELDS


def test_stream_parts_are_jpegs_of_the_configured_size(idle: SimNode) -> None:
    with StreamReader(idle.url + "/stream") as reader:
        assert reader.status == 200
        assert reader.response_headers["content-type"].startswith("multipart/x-mixed-replace; boundary=")
        parts = reader.parts(6)
    seqs = [p.seq for p in parts]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for part in parts:
        assert part.headers["content-type"] == "image/jpeg"
        image = part.image()
        assert (image.format, image.size) == ("JPEG", (320, 240))
        assert abs(part.timestamp - time.time()) < 30  # Unix capture time


def test_snapshot_and_status(idle: SimNode) -> None:
    with urllib.request.urlopen(idle.url + "/snapshot.jpg", timeout=5) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
        body = resp.read()
    assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"
    assert int(resp.headers["X-Frame-Seq"]) > 0
    status = get_json(idle.url + "/status")
    for key in ("id", "fps", "frames", "clients", "dropped", "free_heap", "uptime_s", "viewers", "disconnects"):
        assert key in status
    assert status["id"] == NODE and status["frames"] > 0 and status["clients"] == 0
    assert status["capture_no_buffer"] == 0  # the pool always had a free buffer for the camera
    assert status["runtime"]["name"] == idle.runtime and status["runtime"]["version"].count(".") == 2
    if idle.runtime != "cpython":  # the VM's heap: 1 MB by default
        assert 0.9 * 2**20 <= status["heap_size"] <= 2**20 and 0 < status["free_heap"] < status["heap_size"]
    else:
        assert status["heap_size"] is None and status["free_heap"] is None


def _drain(reader: StreamReader, stop: threading.Event, parts: list[int]) -> None:
    try:
        while not stop.is_set():
            parts.append(reader.read_part().seq)
    except (OSError, EOFError, AssertionError):
        pass


def _viewer(status: dict[str, Any], agent: str) -> dict[str, Any]:
    return next(v for v in status["viewers"] if v["user_agent"] == agent)


def test_a_throttled_viewer_slows_nobody(idle: SimNode, watch: Observer) -> None:
    slow = StreamReader(idle.url + "/stream", rate=20_000, recv_buffer=4096, headers={"User-Agent": "slow"})
    stop = threading.Event()
    slow_parts: list[int] = []
    drainer = threading.Thread(target=_drain, args=(slow, stop, slow_parts), daemon=True)
    drainer.start()
    try:
        with StreamReader(idle.url + "/stream", headers={"User-Agent": "fast"}) as fast:
            fast.parts(3)  # settle
            window_start = time.time()
            first = fast.read_part()
            dropped_before = _viewer(get_json(idle.url + "/status"), "slow")["frames_dropped"]
            count = 0
            while time.time() - window_start < 4.0:
                last = fast.read_part()
                count += 1
            elapsed = last.received_at - first.received_at
            status = get_json(idle.url + "/status")
        fps = count / elapsed
        assert fps >= 0.9 * FPS, f"the normal viewer got {fps:.1f} fps beside a throttled one"
        slow_view = _viewer(status, "slow")
        assert slow_view["frames_dropped"] > dropped_before, slow_view
        assert slow_view["frames_sent"] < 0.5 * count, slow_view  # it really was slow
        stats = [m for m in watch.on(f"camhub/nodes/{NODE}/stats") if m.at >= window_start]
        assert len(stats) >= 2, "MQTT stats stopped while a viewer was throttled"
        assert any(m.json()["clients"] == 2 for m in stats)
    finally:
        stop.set()
        slow.close()
        drainer.join(5)
    assert slow_parts, "the throttled viewer got no frame at all"


def test_a_viewer_that_leaves_is_recorded_with_its_reason(idle: SimNode) -> None:
    reader = StreamReader(idle.url + "/stream", headers={"User-Agent": "leaver"})
    reader.parts(2)
    reader.close()
    status = wait_until(lambda: (s := get_json(idle.url + "/status"))["clients"] == 0 and s,
                        what="the viewer removed")
    record = next(d for d in reversed(status["disconnects"]) if d["user_agent"] == "leaver")
    assert record["reason"] in ("closed", "reset")
    assert record["frames_sent"] >= 2


def test_a_viewer_that_half_closes_after_reading_is_recorded_as_closed(idle: SimNode) -> None:
    reader = StreamReader(idle.url + "/stream", headers={"User-Agent": "half-closer"})
    try:
        reader.parts(2)
        reader.sock.shutdown(socket.SHUT_WR)  # a clean FIN; still reading, so nothing is reset
        with pytest.raises(EOFError):  # the node ends the stream in answer
            while True:
                reader.read_part()
    finally:
        reader.close()
    status = wait_until(lambda: (s := get_json(idle.url + "/status"))["clients"] == 0 and s,
                        what="the viewer removed")
    record = next(d for d in reversed(status["disconnects"]) if d["user_agent"] == "half-closer")
    assert record["reason"] == "closed"


def test_a_viewer_that_stops_reading_times_out(idle: SimNode) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", idle.http_port))
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nUser-Agent: sleeper\r\n\r\n")
    try:
        # CAMHUB_WRITE_TIMEOUT_S is 2 here: buffers fill, then no progress for 2 s.
        status = wait_until(lambda: (s := get_json(idle.url + "/status")) and any(
            d["user_agent"] == "sleeper" for d in s["disconnects"]) and s, timeout=20, what="write timeout")
    finally:
        sock.close()
    record = next(d for d in status["disconnects"] if d["user_agent"] == "sleeper")
    assert record["reason"] == "write_timeout"


def test_a_viewer_over_the_limit_gets_503(idle: SimNode) -> None:
    readers = [StreamReader(idle.url + "/stream") for _ in range(2)]  # CAMHUB_MAX_CLIENTS defaults to 2
    try:
        for reader in readers:
            reader.read_part()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(idle.url + "/stream", timeout=5)
        assert refused.value.code == 503 and int(refused.value.headers["Retry-After"]) > 0
        assert get_json(idle.url + "/status")["http"]["rejected"]["over_capacity"] >= 1
        readers[0].read_part()  # the two admitted viewers still stream
        readers[1].read_part()
    finally:
        for reader in readers:
            reader.close()


def test_garbage_set_changes_nothing(idle: SimNode, watch: Observer) -> None:
    topic = f"camhub/nodes/{NODE}/set"
    before = get_json(idle.url + "/status")
    sent_at = time.time()
    garbage = [b"not json", b'{"fps": "fast"}', b'{"fps": 0}', b'{"fps": 7.5}', b'{"frame_size": "HUGE"}',
               b'{"bogus": 1}', b"[1, 2]", b"\xff\xfe\x00", b'{"jpeg_quality": 1}', b"{}",
               # a valid change next to an invalid one: all or nothing
               b'{"fps": 7, "frame_size": "HUGE"}', b'{"fps": 7, "bogus": 1}', b'{"fps": 7, "jpeg_quality": 500}']
    for payload in garbage:
        watch.publish(topic, payload)
    status = wait_until(lambda: (s := get_json(idle.url + "/status"))["mqtt"]["set_rejected"]
                        >= before["mqtt"]["set_rejected"] + len(garbage) and s, what="garbage counted")
    assert (status["fps_target"], status["jpeg_quality"], status["frame_size"]) == (FPS, 12, "QVGA")
    assert status["task_restarts"] == {}
    assert not [m for m in watch.on(f"camhub/nodes/{NODE}/announce") if m.at >= sent_at]
    with StreamReader(idle.url + "/stream") as reader:
        assert reader.read_part().image().size == (320, 240)


def test_set_changes_fps_and_frame_size_and_reannounces(idle: SimNode, watch: Observer) -> None:
    sent_at = time.time()
    watch.publish(f"camhub/nodes/{NODE}/set", json.dumps({"fps": 4, "frame_size": "QQVGA"}))
    announce = watch.wait_for(f"camhub/nodes/{NODE}/announce", lambda m: m.json()["fps"] == 4, after=sent_at).json()
    assert (announce["frame_size"], announce["width"], announce["height"]) == ("QQVGA", 160, 120)
    with StreamReader(idle.url + "/stream") as reader:
        part = reader.read_part()
        while part.image().size != (160, 120):  # a frame captured before the change may still be in flight
            part = reader.read_part()
        first = reader.read_part()
        parts = reader.parts(8)
    fps = len(parts) / (parts[-1].received_at - first.received_at)
    assert 2.5 <= fps <= 5.5, f"{fps:.1f} fps after asking for 4"
    assert all(p.image().size == (160, 120) for p in parts)
