"""The hub end to end: real mosquitto, real simulated nodes (the firmware), the real hub process.

One story, in order, on one hub: discovery → 20 viewers on one pull → a throttled viewer drops,
nobody else does → a killed viewer is recorded → the node dies and the camera goes offline → the
node comes back and the viewers that stayed connected get frames again. The second node, beta,
runs the firmware on the MicroPython Unix port (a 1 MB heap), the third, gamma, on CircuitPython's
VM (where it is installed), and both stream to viewers too.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode, circuitpython_vm, needs_circuitpython_vm
from tests.support.waiting import get_json, wait_until

FPS = 10






class Viewer(threading.Thread):
    """A viewer in a thread: keeps reading parts until told to stop or the stream ends."""

    def __init__(self, url: str, rate: float | None = None, recv_buffer: int | None = None) -> None:
        super().__init__(daemon=True)
        self.reader = StreamReader(url, rate=rate, recv_buffer=recv_buffer, timeout=20)
        self.parts: list = []
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.parts.append(self.reader.read_part())
        except BaseException as exc:  # recorded for the test to look at
            self.error = exc

    def count_since(self, t: float) -> int:
        return sum(1 for p in self.parts if p.received_at >= t)

    def close(self) -> None:
        self.stopped.set()
        self.reader.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    broker = Mosquitto()
    runs = [("alpha", "cpython"), ("beta", "micropython")]
    runs += [("gamma", "circuitpython")] if circuitpython_vm() else []
    nodes = [SimNode(node_id, broker.port, fps=FPS, frame_size="QVGA", runtime=runtime) for node_id, runtime in runs]
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("hub-state"))
    observer = Observer(broker.port, ["camhub/#"])
    try:
        for node in nodes:
            node.wait_ready()
        hub.wait_ready()
        yield {"broker": broker, "nodes": nodes, "hub": hub, "observer": observer}
    finally:
        observer.close()
        hub.stop()
        for node in nodes:
            node.stop()
        broker.stop()


def test_discovery_fanout_drops_disconnects_and_node_loss(world) -> None:
    hub: HubProcess = world["hub"]
    alpha: SimNode = world["nodes"][0]
    observer: Observer = world["observer"]

    # 1. both nodes are discovered from their announces and stream
    cameras = wait_until(lambda: (c := get_json(hub.url + "/api/cameras")) and
                         {x["id"] for x in c if x["state"] == "streaming"} >= {"alpha", "beta"} and c,
                         what="both cameras streaming")
    by_id = {c["id"]: c for c in cameras}
    assert by_id["alpha"]["stream"] == "/cameras/alpha/stream"
    assert by_id["alpha"]["announce"]["stream_url"].startswith("http://127.0.0.1:")

    # 2. twenty viewers on one camera; the node serves exactly one client: the hub
    stream_url = hub.url + "/cameras/alpha/stream"
    viewers = [Viewer(stream_url) for _ in range(20)]
    throttled = Viewer(stream_url, rate=20_000, recv_buffer=4096)
    time.sleep(1.0)
    t0 = time.time()
    time.sleep(4.0)
    t1 = time.time()
    for v in viewers:
        assert v.error is None, v.error
        img = v.parts[-1].image()
        assert img.format == "JPEG" and img.size == (320, 240)
        fps = sum(1 for p in v.parts if t0 <= p.received_at < t1) / (t1 - t0)
        assert fps >= 0.9 * FPS, f"a fast viewer got {fps:.1f} fps"
    node_status = get_json(alpha.url + "/status")
    assert node_status["clients"] == 1
    detail = get_json(hub.url + "/api/cameras/alpha")
    assert len(detail["clients"]) == 21
    throttled_info = [c for c in detail["clients"] if c["frames_dropped"] > 0]
    assert len(throttled_info) == 1, "exactly the throttled viewer drops frames"
    assert throttled_info[0]["frames_sent"] >= 1

    # 3. a viewer killed mid-stream is recorded with its reason, and an event is published
    victim = viewers.pop()
    victim.close()
    disconnect = wait_until(lambda: [d for d in get_json(hub.url + "/api/cameras/alpha")["disconnects"]
                                     if d["reason"] in ("closed", "reset")], what="disconnect recorded")[0]
    assert disconnect["frames_sent"] > 0 and disconnect["bytes_sent"] > 0
    event = observer.wait_for("camhub/hub/cameras/alpha/events",
                              lambda m: m.json()["event"] == "disconnect" and m.json()["reason"] in ("closed", "reset"))
    assert event.json()["frames_sent"] > 0

    # 4. the node dies (SIGKILL): the retained state goes offline or stalled
    kill_time = time.time()
    alpha.kill()
    observer.wait_for("camhub/hub/cameras/alpha/state",
                      lambda m: m.json()["state"] in ("offline", "stalled"), timeout=20, after=kill_time)
    late = Observer(world["broker"].port, ["camhub/hub/cameras/alpha/state"])  # retained: a newcomer sees it too
    try:
        retained = late.wait_for("camhub/hub/cameras/alpha/state")
        assert retained.retain and retained.json()["state"] in ("offline", "stalled")
    finally:
        late.close()

    # 5. the node comes back on the same port: the viewers that stayed connected resume
    revived = SimNode("alpha", world["broker"].port, fps=FPS, frame_size="QVGA", http_port=alpha.http_port)
    world["nodes"].append(revived)
    revived.wait_ready()
    back = time.time()
    wait_until(lambda: all(v.count_since(back) >= 3 for v in viewers), timeout=30, what="frames resume")
    for v in viewers:
        assert v.error is None, v.error
    for v in [*viewers, throttled]:
        v.close()


def test_unknown_camera_and_bad_requests(world) -> None:
    hub = world["hub"]
    for path in ("/api/cameras/nope", "/cameras/nope/stream", "/cameras/nope/snapshot.jpg",
                 "/cameras/..%2F..%2Fetc/snapshot.jpg"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(hub.url + path, timeout=5)
        assert err.value.code == 404
        assert "error" in json.loads(err.value.read())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(hub.url + "/cameras/beta/stream?fps=abc", timeout=5)
    assert err.value.code == 400


def metric_values(url: str) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value}."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_snapshots_are_fresh(world) -> None:
    """Two snapshots half a second apart (the camera runs at 10 fps): newer sequence, other bytes."""
    hub = world["hub"]
    shots = []
    for _ in range(2):
        with urllib.request.urlopen(hub.url + "/cameras/beta/snapshot.jpg", timeout=5) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg"
            assert "no-store" in resp.headers["Cache-Control"]
            shots.append((int(resp.headers["X-Frame-Seq"]), float(resp.headers["X-Timestamp"]), resp.read()))
        time.sleep(0.5)
    (seq1, ts1, body1), (seq2, ts2, body2) = shots
    assert body1[:2] == b"\xff\xd8" and body1[-2:] == b"\xff\xd9"
    assert seq2 > seq1 and ts2 > ts1, (seq1, seq2)
    assert body2 != body1
    assert abs(ts2 - time.time()) < 5  # the capture time of a recent frame
    # The camera at 10 fps: its latest frame arrived moments ago, in the API and the MQTT state alike.
    assert 0 <= get_json(hub.url + "/api/cameras/beta")["last_frame_age_ms"] < 2000


def test_snapshot_and_metrics(world) -> None:
    """/metrics counts what viewers were sent and dropped: the same numbers as the API and MQTT."""
    hub = world["hub"]
    observer: Observer = world["observer"]
    stream_url = hub.url + "/cameras/beta/stream"
    fast, slow = Viewer(stream_url), Viewer(stream_url, rate=20_000, recv_buffer=4096)
    try:
        wait_until(lambda: len(fast.parts) >= 5 and any(
            c["frames_dropped"] > 0 for c in get_json(hub.url + "/api/cameras/beta")["clients"]),
            timeout=30, what="frames out and the slow viewer dropping")
    finally:
        fast.close()
        slow.close()
    closed = time.time()
    # with both viewers gone the counters stand still: every source must agree exactly
    detail = wait_until(lambda: (d := get_json(hub.url + "/api/cameras/beta"))["clients"] == [] and d,
                        timeout=30, what="both viewers gone")
    mine = [d for d in detail["disconnects"] if d["user_agent"] == ""]
    assert len(mine) == len(detail["disconnects"]) == 2  # nobody else watched beta in this module
    metrics = metric_values(hub.url)
    beta = '{camera="beta"}'
    assert metrics[f"camhub_camera_frames_out_total{beta}"] == sum(d["frames_sent"] for d in mine) > 0
    assert metrics[f"camhub_camera_bytes_out_total{beta}"] == sum(d["bytes_sent"] for d in mine) > 0
    dropped = sum(d["frames_dropped"] for d in mine)
    assert dropped > 0
    assert metrics[f"camhub_camera_frames_dropped_total{beta}"] == detail["dropped_total"] == dropped
    assert metrics[f"camhub_camera_frames_in_total{beta}"] > 0 and metrics[f"camhub_camera_up{beta}"] == 1.0
    assert metrics[f"camhub_camera_viewers{beta}"] == 0
    assert metrics["camhub_mqtt_connected"] == 1.0
    observer.wait_for("camhub/hub/cameras/beta/state", lambda m: m.json()["dropped_total"] == dropped
                      and m.json()["clients"] == 0, after=closed)


def test_rejected_announces_change_nothing(world) -> None:
    hub = world["hub"]
    observer: Observer = world["observer"]
    before = wait_until(lambda: (c := {c["id"]: c for c in get_json(hub.url + "/api/cameras")})
                        and c["beta"]["state"] == "streaming" and c, what="beta streaming")
    rejected_before = get_json(hub.url + "/api/hub")["announces_rejected"]
    bad = {
        "evil": b"{not json",
        "mismatch": json.dumps({"id": "other", "stream_url": "http://127.0.0.1:1/stream"}).encode(),
        "public": json.dumps({"id": "public", "stream_url": "http://8.8.8.8/stream"}).encode(),
        "ftp": json.dumps({"id": "ftp", "stream_url": "ftp://127.0.0.1/stream"}).encode(),
        "huge": json.dumps({"id": "huge", "stream_url": "http://127.0.0.1:1/s", "name": "x" * 100_000}).encode(),
        "BAD..ID": json.dumps({"id": "BAD..ID", "stream_url": "http://127.0.0.1:1/s"}).encode(),
        # a known camera's topic: a bad announce there must not move, rename or stop it
        "beta": json.dumps({"id": "beta", "stream_url": "http://8.8.8.8/stream", "name": "Hijacked"}).encode(),
    }
    for node_id, payload in bad.items():
        observer.publish(f"camhub/nodes/{node_id}/announce", payload)
    # A good announce last: once it is in, every bad one before it was handled (one connection, in order).
    sentinel = json.dumps({"id": "sentinel", "stream_url": "http://127.0.0.1:1/stream"}).encode()
    observer.publish("camhub/nodes/sentinel/announce", sentinel)
    try:
        after = wait_until(lambda: (c := {c["id"]: c for c in get_json(hub.url + "/api/cameras")})
                           and "sentinel" in c and c, what="the announce after the bad ones")
        assert set(after) == set(before) | {"sentinel"}
        assert after["beta"]["announce"] == before["beta"]["announce"]
        assert after["beta"]["name"] == before["beta"]["name"]
        assert get_json(hub.url + "/api/hub")["announces_rejected"] == rejected_before + len(bad)
        by_reason = {k: v for k, v in metric_values(hub.url).items()
                     if k.startswith("camhub_announces_rejected_total")}
        assert sum(by_reason.values()) == rejected_before + len(bad), by_reason
        time.sleep(0.5)
        assert get_json(hub.url + "/api/cameras/beta")["state"] == "streaming"
    finally:
        observer.publish("camhub/nodes/sentinel/announce", b"")  # an empty announce removes a camera
    wait_until(lambda: "sentinel" not in {c["id"] for c in get_json(hub.url + "/api/cameras")}, what="sentinel gone")


def test_known_cameras_survive_a_hub_restart(world, tmp_path: Path) -> None:
    broker = world["broker"]
    # A second hub with its own state dir learns the cameras, stops, and starts again with no nodes.
    first = HubProcess(broker.port, tmp_path).wait_ready()
    wait_until(lambda: {c["id"] for c in get_json(first.url + "/api/cameras")} >= {"beta"}, what="discovery")
    first.stop()
    assert (tmp_path / "cameras.json").exists()
    isolated = Mosquitto()  # a broker where nothing announces
    try:
        second = HubProcess(isolated.port, tmp_path).wait_ready()
        cameras = {c["id"]: c for c in get_json(second.url + "/api/cameras")}
        assert "beta" in cameras and cameras["beta"]["state"] == "offline"
        second.stop()
    finally:
        isolated.stop()


@pytest.mark.parametrize(("node_id", "runtime"), [
    ("beta", "micropython"), pytest.param("gamma", "circuitpython", marks=needs_circuitpython_vm)])
def test_a_vm_node_is_discovered_and_streamed_to_viewers(world, node_id: str, runtime: str) -> None:
    # last: the tests above count every viewer beta ever had
    hub: HubProcess = world["hub"]
    node = next(n for n in world["nodes"] if n.node_id == node_id)
    assert get_json(node.url + "/status")["runtime"]["name"] == runtime
    wait_until(lambda: any(c["id"] == node_id and c["state"] == "streaming"
                           for c in get_json(hub.url + "/api/cameras")), what=f"{node_id} streaming")
    viewers = [Viewer(hub.url + f"/cameras/{node_id}/stream") for _ in range(5)]
    try:
        time.sleep(1.0)
        t0 = time.time()
        time.sleep(3.0)
        t1 = time.time()
        for v in viewers:
            assert v.error is None, v.error
            assert v.parts[-1].image().size == (320, 240)
            fps = sum(1 for p in v.parts if t0 <= p.received_at < t1) / (t1 - t0)
            assert fps >= 0.9 * FPS, f"a viewer of the {runtime} node got {fps:.1f} fps"
        assert get_json(node.url + "/status")["clients"] == 1  # the hub's one pull
    finally:
        for v in viewers:
            v.close()
