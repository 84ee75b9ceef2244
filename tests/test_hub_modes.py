"""The hub's modes: credentials, viewer limits, the embedded broker, on-demand pulls."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import mqtt_wire
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.mqtt_wire import WireClient
from tests.support.procs import HubProcess, Mosquitto, Process, SimNode, camhub_cmd, free_port
from tests.support.waiting import get_json, wait_until

PASSWORD = "s3cret-Hub-pass"
MQTT_PASSWORD = "mqtt-pass-9876"


def request(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(16384), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def status_of(url: str) -> int:
    """The response status alone (the body is not read: it may be an endless stream)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_credentials_when_auth_is_on(mosquitto: Mosquitto, tmp_path: Path) -> None:
    node = SimNode("gate", mosquitto.port, fps=5, frame_size="QQVGA")
    hub = HubProcess(mosquitto.port, tmp_path, env={"CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": PASSWORD,
                                                    "CAMHUB_MQTT_PASSWORD": MQTT_PASSWORD})
    try:
        node.wait_ready()
        hub.wait_ready()
        ok = ("admin", PASSWORD)
        assert request(hub.url + "/healthz")[0] == 200
        status, _, headers = request(hub.url + "/api/cameras")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert request(hub.url + "/api/cameras", ("admin", "wrong"))[0] == 401
        assert request(hub.url + "/", ("admin", "wrong"))[0] == 401
        wait_until(lambda: any(c["state"] == "streaming" for c in json.loads(request(
            hub.url + "/api/cameras", ok)[1])), what="camera streaming")
        urls = json.loads(request(hub.url + "/api/cameras/gate/urls", ok)[1])
        assert "token=" in urls["stream"] and PASSWORD not in json.dumps(urls)
        # a player with the view token needs no password, for this camera only
        assert request(urls["snapshot"])[0] == 200
        with StreamReader(urls["stream"]) as reader:
            assert reader.status == 200 and reader.read_part().image().format == "JPEG"
        token = urls["stream"].split("token=")[1]
        # the token opens this camera's stream and snapshot, and nothing else at all
        for path in ("/", "/api/hub", "/api/cameras", "/api/cameras/gate", "/api/cameras/gate/urls", "/api/events",
                     "/metrics", "/static/app.js", "/cameras/yard/stream", "/cameras/yard/snapshot.jpg"):
            assert status_of(hub.url + f"{path}?token={token}") == 401, path
        assert status_of(hub.url + f"/cameras/gate/snapshot.jpg?token={token}") == 200
        assert request(hub.url + f"/cameras/gate/snapshot.jpg?token={token[:-1]}x")[0] == 401
    finally:
        hub.stop()
        node.stop()
    log = hub.output()
    assert PASSWORD not in log and MQTT_PASSWORD not in log


def test_listening_beyond_loopback_requires_a_password(tmp_path: Path) -> None:
    proc = Process(camhub_cmd("hub", "--host", "0.0.0.0", "--port", str(free_port()), "--state-dir",
                              str(tmp_path)), env={"CAMHUB_AUTH": "auto"}, name="hub-open")
    assert proc.proc.wait(20) == 2
    assert "CAMHUB_HUB_PASSWORD" in proc.output()


def test_viewer_limit_answers_503_with_retry_after(mosquitto: Mosquitto, tmp_path: Path) -> None:
    node = SimNode("lim", mosquitto.port, fps=5, frame_size="QQVGA")
    hub = HubProcess(mosquitto.port, tmp_path, env={"CAMHUB_MAX_VIEWERS_PER_CAMERA": "2"})
    readers: list[StreamReader] = []
    try:
        node.wait_ready()
        hub.wait_ready()
        wait_until(lambda: get_json(hub.url + "/api/cameras"), what="camera listed")
        readers = [StreamReader(hub.url + "/cameras/lim/stream") for _ in range(2)]
        assert all(r.status == 200 for r in readers)
        status, body, headers = request(hub.url + "/cameras/lim/stream")
        assert status == 503 and headers["Retry-After"] and "error" in json.loads(body)
    finally:
        for r in readers:
            r.close()
        hub.stop()
        node.stop()


def test_the_hub_wide_viewer_limit_counts_every_camera(tmp_path: Path) -> None:
    # Two cameras that never answer: a viewer is admitted (and counted) before any frame arrives.
    dead = f"http://127.0.0.1:{free_port()}/stream"
    hub = HubProcess(free_port(), tmp_path, env={"CAMHUB_HUB_BROKER": "external", "CAMHUB_MAX_VIEWERS": "2",
                                                 "CAMHUB_SOURCES": f"one={dead}, two={dead}"}).wait_ready()
    readers: list[StreamReader] = []
    try:
        readers = [StreamReader(hub.url + "/cameras/one/stream"), StreamReader(hub.url + "/cameras/two/stream")]
        assert [r.status for r in readers] == [200, 200]
        wait_until(lambda: get_json(hub.url + "/api/hub")["viewers"] == 2, what="both viewers counted")
        for path in ("/cameras/one/stream", "/cameras/two/stream"):
            status, body, headers = request(hub.url + path)
            assert status == 503 and int(headers["Retry-After"]) > 0 and "hub_limit" in json.loads(body)["error"]
        assert 'camhub_viewers_refused_total{reason="hub_limit"} 2.0' in request(hub.url + "/metrics")[1].decode()
    finally:
        for r in readers:
            r.close()
        hub.stop()


def test_a_killed_hub_is_marked_offline_by_its_last_will(mosquitto: Mosquitto, observer: Observer,
                                                          tmp_path: Path) -> None:
    hub = HubProcess(mosquitto.port, tmp_path).wait_ready()
    try:
        online = observer.wait_for("camhub/hub/availability", lambda m: m.text == "online")
        hub.kill()  # SIGKILL: no clean "offline"; only the broker can say it
        observer.wait_for("camhub/hub/availability", lambda m: m.text == "offline", after=online.at)
    finally:
        hub.stop()
    late = Observer(mosquitto.port, ["camhub/hub/availability"])  # retained: a newcomer sees it too
    try:
        retained = late.wait_for("camhub/hub/availability")
        assert retained.retain and retained.text == "offline"
    finally:
        late.close()


def test_embedded_broker_and_on_demand_pull(tmp_path: Path) -> None:
    mqtt_port = free_port()
    hub = HubProcess(None, tmp_path, env={"CAMHUB_MQTT_PORT": str(mqtt_port), "CAMHUB_PULL": "on_demand",
                                          "CAMHUB_KEEP_WARM_S": "1"})
    hub.wait_ready()
    node = SimNode("lazy", mqtt_port, fps=10, frame_size="QQVGA")
    observer = None
    try:
        node.wait_ready()
        observer = Observer(mqtt_port, ["camhub/#"])
        assert observer.wait_for("camhub/hub/availability").text == "online"
        wait_until(lambda: [c for c in get_json(hub.url + "/api/cameras") if c["id"] == "lazy"],
                   what="discovered through the embedded broker")
        time.sleep(1.0)
        assert get_json(node.url + "/status")["clients"] == 0  # nobody watches: no pull
        with StreamReader(hub.url + "/cameras/lazy/stream") as reader:
            assert len(reader.parts(5)) == 5
            assert get_json(node.url + "/status")["clients"] == 1
        wait_until(lambda: get_json(node.url + "/status")["clients"] == 0, timeout=10,
                   what="pull paused after the keep-warm time")
    finally:
        if observer:
            observer.close()
        node.stop()
        hub.stop()


@pytest.mark.parametrize("garbage", [b"\x00\x01garbage\r\n\r\n", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
                                     b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n"])
def test_garbage_requests_get_4xx_and_the_hub_keeps_serving(tmp_path: Path, garbage: bytes) -> None:
    import socket

    hub = HubProcess(free_port(), tmp_path, env={"CAMHUB_HUB_BROKER": "external"}).wait_ready()
    try:
        with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as sock:
            sock.sendall(garbage)
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.") and answer.split()[1][:1] == b"4"
        assert request(hub.url + "/healthz")[0] == 200
        # Anyone can send these: counted, and no ERROR with a traceback in the log for each one.
        assert 'camhub_http_requests_malformed_total{kind="malformed"} 1.0' in request(hub.url + "/metrics")[1].decode()
    finally:
        hub.stop()
    assert "Traceback" not in hub.output() and "Error handling request" not in hub.output()


def test_plain_mjpeg_sources_from_the_settings(tmp_path: Path) -> None:
    """A camera that does not speak MQTT (e.g. Espressif's CameraWebServer), listed in CAMHUB_SOURCES."""
    broker = Mosquitto()
    node = SimNode("plain", broker.port, fps=5, frame_size="QQVGA")
    isolated = Mosquitto()  # the hub's broker hears no announce: the settings are its only source
    hub = None
    try:
        node.wait_ready()
        settings = tmp_path / "settings.toml"
        settings.write_text(f'CAMHUB_SOURCES = "door={node.url}/stream, bad=ftp://127.0.0.1/x"\n')
        hub = HubProcess(isolated.port, tmp_path, extra=["--settings", str(settings)])
        assert hub.proc.wait(20) == 2 and "bad" in hub.output()  # a bad entry is named, not guessed at
        settings.write_text(f'CAMHUB_SOURCES = "door={node.url}/stream"\n')
        hub = HubProcess(isolated.port, tmp_path, extra=["--settings", str(settings)]).wait_ready()
        door = wait_until(lambda: [c for c in get_json(hub.url + "/api/cameras")
                                   if c["id"] == "door" and c["state"] == "streaming"], what="static source")[0]
        assert door["source"] == "static" and door["announce"] is None
        with StreamReader(hub.url + "/cameras/door/stream") as reader:
            assert reader.read_part().image().size == (160, 120)
    finally:
        if hub:
            hub.stop()
        node.stop()
        isolated.stop()
        broker.stop()


def test_a_request_head_that_never_completes_is_cut_off(tmp_path: Path) -> None:
    """Slowloris: a client that sends part of a request and stops must not hold a connection forever."""
    import socket

    hub = HubProcess(free_port(), tmp_path, env={"CAMHUB_HUB_BROKER": "external"}).wait_ready()
    try:
        with socket.create_connection(("127.0.0.1", hub.port), timeout=30) as slow:
            slow.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
            assert request(hub.url + "/healthz")[0] == 200  # everyone else is served meanwhile
            started = time.monotonic()
            assert slow.recv(100) == b""  # closed by the hub
            assert time.monotonic() - started < 25
    finally:
        hub.stop()


def test_embedded_broker_publishes_the_will_of_a_node_that_vanishes_while_it_sends_it_retained_messages(
        tmp_path: Path) -> None:
    """A node subscribes to its own retained topics, then goes away before acknowledging them (Ctrl-C
    right after it started; a node that resets). Its will must go out at once: amqtt, left alone,
    first waits 5 s for the acknowledgement, and a hub stopping meanwhile drops the will."""
    mqtt_port = free_port()
    hub = HubProcess(None, tmp_path, env={"CAMHUB_MQTT_PORT": str(mqtt_port)}).wait_ready()
    topic, announce = "camhub/nodes/ghost/availability", "camhub/nodes/ghost/announce"
    observer = Observer(mqtt_port, [topic, announce])
    try:
        node = WireClient(mqtt_port, "camhub-ghost", ack=False, will=(topic, b"offline"))
        for packet_id, (name, payload) in enumerate([(announce, b"{}"), (topic, b"online")], 1):
            node.send(mqtt_wire.publish_packet(name, payload, packet_id, retain=True))
            node.expect(mqtt_wire.PUBACK)
        observer.wait_for(topic, lambda m: m.text == "online")
        # both its topics in one SUBSCRIBE, as the node does (presence.py)
        node.send(mqtt_wire.subscribe_packet(3, [(announce, 1), (topic, 1)]))
        node.expect(mqtt_wire.SUBACK)  # the retained messages follow, never acknowledged
        node.drop()
        gone = time.time()
        assert observer.wait_for(topic, lambda m: m.text == "offline", timeout=3, after=gone - 0.5)
    finally:
        observer.close()
        hub.stop()
