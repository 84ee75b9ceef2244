"""The hub against hostile and broken input, end to end: the real hub process, real sockets."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from camhub.hub.ingest.sources import HubAddresses
from tests.support.browser import chromium, page, require_chromium
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode, free_port, running
from tests.support.quirky_camera import Quirks, serve_in_thread
from tests.support.relay import Relay
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


def _get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url)
    if authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read(65536)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _basic(user: str, password: str, scheme: str = "Basic") -> str:
    return f"{scheme} " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auth_edges_failed_logins_are_counted_shown_and_throttled(tmp_path: Path) -> None:
    hub = HubProcess(free_port(), tmp_path, env={"CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": "pw-Right-1",
                                                 "CAMHUB_HUB_BROKER": "external"}).wait_ready()
    try:
        good = _basic("admin", "pw-Right-1")
        assert _get(hub.url + "/api/hub", good.replace("Basic", "basic"))[0] == 200  # schemes are case-insensitive
        assert _get(hub.url + "/api/hub", good.replace("Basic", "BASIC"))[0] == 200
        assert _get(hub.url + "/api/hub")[0] == 401  # no credentials: asked for them, not a failed login
        # a token that is not ASCII is just a wrong token (it was a 500)
        assert _get(hub.url + "/cameras/door/snapshot.jpg?token=%C3%A9t%C3%A9")[0] == 401
        for n in range(3):
            assert _get(hub.url + "/api/cameras", _basic("admin", f"guess{n}"))[0] == 401
        health = json.loads(_get(hub.url + "/api/hub", good)[2])
        assert health["auth_failures"] == {"no_credentials": 1, "bad_token": 1, "bad_credentials": 3}
        metrics = _get(hub.url + "/metrics", good)[2].decode()
        assert 'camhub_auth_failures_total{reason="bad_credentials"} 3.0' in metrics
        # guessing from one address is cut off after a few attempts a minute, even the right password
        statuses = [_get(hub.url + "/api/cameras", _basic("admin", f"guess-{n}"))[0] for n in range(30)]
        assert statuses.count(401) == 20 - 4 and statuses[-1] == 429
        status, headers, _ = _get(hub.url + "/api/hub", good)
        assert status == 429 and 0 < int(headers["Retry-After"]) <= 60
        assert _get(hub.url + "/healthz")[0] == 200
    finally:
        hub.stop()
    log = hub.output()
    assert log.count("failed login from") <= 2 and "guess" not in log and "Traceback" not in log


def _status_with_host(port: int, host: str | None, path: str = "/api/hub") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_only_the_hubs_own_host_names_are_answered(tmp_path: Path) -> None:
    """DNS rebinding: a page on rebind.attacker.example pointed at the hub must not read it."""
    hub = HubProcess(free_port(), tmp_path, env={"CAMHUB_HUB_BROKER": "external",
                                                 "CAMHUB_ALLOWED_HOSTS": "cams.example.org, *.home.arpa",
                                                 "CAMHUB_HUB_URL": "https://camhub.example.net/"}).wait_ready()
    try:
        port = hub.port
        for own in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}", "127.0.0.1",
                    "cams.example.org", f"door.home.arpa:{port}", "camhub.example.net"):
            assert _status_with_host(port, own) == 200, own
        for foreign in ("rebind.attacker.example", f"rebind.attacker.example:{port}", "example.org",
                        "cams.example.org.evil.example", "home.arpa.evil.example", "192.0.2.7"):
            assert _status_with_host(port, foreign) == 421, foreign
        assert _status_with_host(port, "rebind.attacker.example", "/cameras/door/stream") == 421
        assert _status_with_host(port, "rebind.attacker.example", "/healthz") == 200  # says nothing
        assert get_json(hub.url + "/api/hub")["hosts_refused"] == 7
        assert 'camhub_http_requests_refused_total{reason="host"} 7.0' in _get(hub.url + "/metrics")[2].decode()
    finally:
        hub.stop()
    assert hub.output().count("refused a request for Host") == 1  # rate-limited


def test_hub_addresses_are_recognised_however_spelled() -> None:
    on_loopback = HubAddresses("127.0.0.1", 8000)
    for url in ("http://127.0.0.1:8000/cameras/x/stream", "http://localhost:8000/", "http://LOCALHOST.:8000/",
                "http://[::1]:8000/", "http://[::ffff:127.0.0.1]:8000/", "http://127.9.9.9:8000/",
                "http://0.0.0.0:8000/", "http://cam.localhost:8000/"):
        assert on_loopback.url_is_self(url), url
    for url in ("http://127.0.0.1:8001/", "http://127.0.0.1/", "http://10.0.0.7:8000/", "http://cam.lan:8000/"):
        assert not on_loopback.url_is_self(url), url
    assert HubAddresses("127.0.0.1", 80).url_is_self("http://localhost/stream")
    everywhere = HubAddresses("0.0.0.0", 8000)  # bound to every local address
    local = socket.gethostbyname(socket.gethostname())
    assert everywhere.is_self(local, 8000) and everywhere.is_self("127.0.0.1", 8000)
    assert not everywhere.is_self("192.0.2.77", 8000)  # TEST-NET: never this machine's
    assert not HubAddresses("127.0.0.1", 8000).is_self("192.0.2.77", 8000)


def test_a_source_that_is_the_hub_itself_is_refused(mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    hub = HubProcess(mosquitto.port, tmp_path).wait_ready()
    relay = Relay(hub.port)  # a name or proxy in front of the hub, in effect
    try:
        node = SimNode("real", mosquitto.port, fps=5, frame_size="QQVGA")
        with running(node):
            port = hub.port
            spellings = [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}",
                         f"http://[::ffff:127.0.0.1]:{port}", f"http://127.0.0.2:{port}"]
            for n, base in enumerate(spellings):
                announce = {"id": f"loop{n}", "stream_url": f"{base}/cameras/real/stream", "fps": 5}
                observer.publish(f"camhub/nodes/loop{n}/announce", json.dumps(announce), retain=True)
            # through a relay the address is not the hub's: the hub knows its own User-Agent instead
            observer.publish("camhub/nodes/relayed/announce", json.dumps(
                {"id": "relayed", "stream_url": f"http://127.0.0.1:{relay.port}/cameras/real/stream"}), retain=True)
            wait_until(lambda: get_json(hub.url + "/api/hub")["announces_rejected"] == len(spellings),
                       what="every spelling of the hub's own address rejected")
            relayed = wait_until(lambda: (c := get_json(hub.url + "/api/cameras/relayed"))["state"] == "offline"
                                 and c, timeout=30, what="the relayed loop refused until offline")
            assert relayed["last_error"] == "http_status: HTTP 508" and relayed["frames_in"] == 0
            real = wait_until(lambda: (c := get_json(hub.url + "/api/cameras/real"))["state"] == "streaming" and c,
                              what="the real camera streams")
            assert real["upstream"]["max_fps"] == 15.0  # 3x its announced 5 fps
            ids = {c["id"] for c in get_json(hub.url + "/api/cameras")}
            assert ids == {"real", "relayed"}
            metrics = _get(hub.url + "/metrics")[2].decode()
            assert f'camhub_announces_rejected_total{{reason="self_source"}} {float(len(spellings))}' in metrics
            assert 'camhub_viewers_refused_total{reason="self_loop"}' in metrics
    finally:
        relay.close()
        hub.stop()
    log = hub.output()
    assert log.count("rejected: self_source") == 1 and log.count("refused a stream request from this hub") == 1


def _camera_ids(hub: HubProcess) -> set[str]:
    return {c["id"] for c in get_json(hub.url + "/api/cameras")}


def test_an_announce_flood_is_capped_saved_in_one_go_and_forgotten_once_cleared(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    env = {"CAMHUB_MAX_CAMERAS": "20"}
    hub = HubProcess(mosquitto.port, tmp_path, env=env).wait_ready()
    node = SimNode("real", mosquitto.port, fps=5, frame_size="QQVGA")
    try:
        wait_until(lambda: get_json(hub.url + "/api/cameras/real")["state"] == "streaming", what="the real camera")
        bogus = [f"bogus{i}" for i in range(300)]
        for camera_id in bogus:  # never answer: port 9 (discard) is closed here
            observer.publish(f"camhub/nodes/{camera_id}/announce", json.dumps(
                {"id": camera_id, "stream_url": "http://127.0.0.1:9/stream"}), retain=True)
        wait_until(lambda: get_json(hub.url + "/api/hub")["announces_rejected"] == 300 - 19,
                   what="announces over CAMHUB_MAX_CAMERAS rejected")
        assert len(_camera_ids(hub)) == 20
        metrics = _get(hub.url + "/metrics")[2].decode()
        assert 'camhub_announces_rejected_total{reason="camera_limit"} 281.0' in metrics
        saves = wait_until(lambda: [float(line.rsplit(" ", 1)[1]) for line in _get(hub.url + "/metrics")[2].decode()
                                    .splitlines() if line.startswith("camhub_state_saves_total")], what="saves")
        assert saves[0] <= 4  # debounced: not one write per announce
        for camera_id in bogus:  # the announces are cleared: cameras that never streamed are forgotten
            observer.publish(f"camhub/nodes/{camera_id}/announce", b"", retain=True)
        wait_until(lambda: _camera_ids(hub) == {"real"}, what="the never-streamed cameras forgotten")
        hub.stop()
        assert hub.output().count("rejected: camera_limit") == 1  # logged once per interval
        hub = HubProcess(mosquitto.port, tmp_path, env=env).wait_ready()
        wait_until(lambda: get_json(hub.url + "/api/cameras/real")["state"] == "streaming", what="real again")
        assert _camera_ids(hub) == {"real"}  # and they stay forgotten after a restart
    finally:
        hub.stop()
        node.stop()


class StandInNode(threading.Thread):
    """A node as the hub sees it over MQTT (announce, availability, stats every second), streaming
    from a quirky camera; unlike the firmware it never re-asserts its topics, so only the hub's own
    handling is under test."""

    def __init__(self, observer: Observer, node_id: str, stream_url: str) -> None:
        super().__init__(daemon=True)
        self.observer, self.node_id = observer, node_id
        self.stopped = threading.Event()
        announce = {"id": node_id, "stream_url": stream_url, "fps": 25}
        observer.publish(f"camhub/nodes/{node_id}/announce", json.dumps(announce), retain=True)
        observer.publish(f"camhub/nodes/{node_id}/availability", "online", retain=True)
        self.start()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.observer.publish(f"camhub/nodes/{self.node_id}/stats", json.dumps({"id": self.node_id}))


def test_a_spoofed_offline_or_cleared_announce_does_not_take_a_live_camera_away(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    hub = HubProcess(mosquitto.port, tmp_path).wait_ready()
    with serve_in_thread(Quirks(fps=10)) as camera:
        node = StandInNode(observer, "yard", camera.url)
        try:
            def state() -> str:
                return get_json(hub.url + "/api/cameras/yard")["state"]

            wait_until(lambda: state() == "streaming", what="streaming")
            observer.publish("camhub/nodes/yard/availability", "offline", retain=True)  # spoofed
            wait_until(lambda: state() == "offline", what="the spoofed offline taken at first")
            wait_until(lambda: state() == "streaming", timeout=10, what="back with the node's next stats")
            observer.publish("camhub/nodes/yard/announce", b"", retain=True)  # spoofed clear
            for _ in range(20):
                assert state() == "streaming"  # kept: its node is alive
                time.sleep(0.1)
            assert get_json(hub.url + "/api/hub")["announces_rejected"] == 1  # counted as cleared_while_alive
            node.stopped.set()
        finally:
            node.stopped.set()
            hub.stop()


def test_many_viewer_connections_cost_a_few_log_lines(mosquitto: Mosquitto, tmp_path: Path) -> None:
    hub = HubProcess(mosquitto.port, tmp_path).wait_ready()
    try:
        with running(SimNode("busy", mosquitto.port, fps=10, frame_size="QQVGA")):
            wait_until(lambda: get_json(hub.url + "/api/cameras/busy")["state"] == "streaming", what="streaming")
            before = len(hub.output().splitlines())
            for _ in range(4):  # bursts of 50 viewers that each read one frame and leave
                readers = [StreamReader(hub.url + "/cameras/busy/stream", timeout=10) for _ in range(50)]
                for reader in readers:
                    reader.read_part()
                    reader.close()
            detail = wait_until(lambda: (d := get_json(hub.url + "/api/cameras/busy"))["viewers"] == 0 and d,
                                what="the viewers gone")
            assert len(detail["disconnects"]) > 0  # each one is still recorded, just not logged
            added = hub.output().splitlines()[before:]
    finally:
        hub.stop()
    assert len(added) <= 5, added[:10]
