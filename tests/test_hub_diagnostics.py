"""A hub that runs for months (issue #26): what it holds is visible, and nothing it holds grows for ever.

``GET /api/hub/diagnostics`` (``CAMHUB_DIAGNOSTICS``, off by default) shows every part's structure
sizes; ``benchmarks/soak.py`` samples it for hours. Here: it is off unless asked for, it is behind the
API's credentials, and it reports sizes and (with tracemalloc) where memory grew.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.procs import HubProcess, Mosquitto, running


def _status(url: str, password: str | None = None, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method)
    if password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body) if err.headers.get_content_type() == "application/json" else {}


def test_diagnostics_are_off_unless_asked_for_and_then_behind_the_apis_credentials(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    with running(HubProcess(mosquitto.port, tmp_path / "off")) as hub:
        hub.wait_ready()
        status, body = _status(f"{hub.url}/api/hub/diagnostics")
        assert status == 404 and "CAMHUB_DIAGNOSTICS" in body["error"]
    password = "diag-pass-123"
    env = {"CAMHUB_DIAGNOSTICS": "on", "CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": password}
    with running(HubProcess(mosquitto.port, tmp_path / "on", env=env)) as hub:
        hub.wait_ready()
        assert _status(f"{hub.url}/api/hub/diagnostics")[0] == 401
        status, body = _status(f"{hub.url}/api/hub/diagnostics", password)
        assert status == 200
        process = body["process"]
        assert process["rss_kb"] > 10_000 and process["fds"] > 3 and process["asyncio_tasks"] > 0
        assert body["parts"]["broker"]["viewers"] == 0 and body["parts"]["cameras"]["cameras"] == 0
        assert body["parts"]["mqtt"]["subscriptions"] >= 3 and body["tracemalloc"] is None
        # without tracing there is no baseline to take
        assert _status(f"{hub.url}/api/hub/diagnostics/baseline", password, "POST")[0] == 409


def test_tracemalloc_names_the_places_whose_memory_grew_since_the_baseline(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    env = {"CAMHUB_DIAGNOSTICS": "tracemalloc"}
    with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
        hub.wait_ready(timeout=60)  # importing everything traced takes a few seconds
        status, body = _status(f"{hub.url}/api/hub/diagnostics/baseline", method="POST")
        assert status == 200 and body["tracemalloc"]["baseline"] is True
        for _ in range(30):  # some memory the hub keeps: known cameras, their feeds, motion and recorders
            _status(f"{hub.url}/api/cameras")
        status, body = _status(f"{hub.url}/api/hub/diagnostics?top=5")
        growers = body["tracemalloc"]["growers"]
        assert status == 200 and 0 < len(growers) <= 5
        assert all(g["size_diff"] > 0 for g in growers) and all(":" in g["where"][0] for g in growers)
        assert _status(f"{hub.url}/api/hub/diagnostics?key=nonsense")[0] == 400
