"""The hub against hostile and broken input, end to end: the real hub process, real sockets."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.browser import chromium, page, require_chromium
from tests.support.procs import HubProcess, Mosquitto, free_port
from tests.support.quirky_camera import Quirks, serve_in_thread
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
                                                 "CAMHUB_ALLOWED_HOSTS": "cams.example.org, *.home.arpa"}).wait_ready()
    try:
        port = hub.port
        for own in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}", "127.0.0.1",
                    "cams.example.org", f"door.home.arpa:{port}"):
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
