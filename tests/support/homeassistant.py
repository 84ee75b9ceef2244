"""A real Home Assistant core for the ``ha`` tests, set up without its UI.

``tests/ha/install.sh`` puts HA into its own venv (``CAMHUB_HA_VENV``, default ``.cache/ha/venv``).
This module writes a config directory the way HA's own onboarding and MQTT config flow would leave
it (one ``mqtt`` config entry, onboarding done; formats from HA 2024.3's ``config_entries.py`` and
``components/onboarding``), adds a user with ``hass --script auth``, starts ``hass --skip-pip`` on a
free loopback port and logs in through the login flow to talk to its REST and websocket APIs.
With ``integration=True`` the repository's ``custom_components/camhub`` is linked into the config
directory, where Home Assistant finds custom integrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.mqtt import Observer
from tests.support.procs import ROOT, HubProcess, Mosquitto, Process, SimNode, free_port, wait_for_http

USER, PASSWORD = "camhub", "camhub-test-password"
CLIENT_ID = "http://127.0.0.1/"  # any URL: HA checks only that the redirect matches it

CONFIGURATION = """\
homeassistant:
  name: camhub test
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
config:
camera:
image:
sensor:
binary_sensor:
select:
number:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt.discovery: debug
"""


def ha_venv() -> Path:
    return Path(os.environ.get("CAMHUB_HA_VENV", ROOT / ".cache" / "ha" / "venv"))


def require_ha() -> Path:
    """HA's ``hass`` binary, or skip with the command that installs it."""
    hass = ha_venv() / "bin" / "hass"
    if not hass.exists():
        pytest.skip("Home Assistant is not installed: run tests/ha/install.sh (make test-ha does)")
    return hass


def _store(directory: Path, key: str, version: int, data: dict[str, Any], minor: int = 1) -> None:
    (directory / ".storage" / key).write_text(json.dumps(
        {"version": version, "minor_version": minor, "key": key, "data": data}))


class HomeAssistant(Process):
    """One Home Assistant core on a free port, using the MQTT broker on ``mqtt_host:mqtt_port``; ``netns``:
    inside that network namespace (its API on that namespace's loopback: talk to it from inside)."""

    def __init__(self, config_dir: Path, mqtt_port: int, discovery_prefix: str = "homeassistant",
                 mqtt_host: str = "127.0.0.1", netns: str | None = None, integration: bool = False) -> None:
        hass = require_ha()
        self.config_dir = config_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        storage = config_dir / ".storage"
        fresh = not storage.exists()
        storage.mkdir(parents=True, exist_ok=True)
        (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        custom = config_dir / "custom_components" / "camhub"
        if integration and not custom.exists():
            custom.parent.mkdir(exist_ok=True)
            custom.symlink_to(ROOT / "custom_components" / "camhub", target_is_directory=True)
        if fresh:
            _store(config_dir, "onboarding", 4, {"done": ["user", "core_config", "analytics", "integration"]})
            _store(config_dir, "core.config_entries", 1, {"entries": [{
                "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1, "domain": "mqtt",
                "title": mqtt_host,
                "data": {"broker": mqtt_host, "port": mqtt_port, "discovery": True,
                         "discovery_prefix": discovery_prefix},
                "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
                "source": "user", "unique_id": None, "disabled_by": None}]})
            subprocess.run([str(hass), "--script", "auth", "-c", str(config_dir), "add", USER, PASSWORD],
                           check=True, capture_output=True, timeout=120)
        super().__init__([str(hass), "-c", str(config_dir), "--skip-pip", "--log-file",
                          str(config_dir / "home-assistant.log")], name="homeassistant", netns=netns)
        self.token: str | None = None

    def wait_ready(self, timeout: float = 90.0) -> HomeAssistant:
        wait_for_http(self.url + "/manifest.json", timeout=timeout, proc=self.proc)
        self.token = self._login()
        return self

    def ha_log(self) -> str:
        path = self.config_dir / "home-assistant.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- auth ------------------------------------------------------------------------------
    def request(self, method: str, path: str, data: dict[str, Any] | None = None) -> tuple[int, Any]:
        """A REST call with a JSON body (or none): ``(status, JSON answer or None)``, errors included."""
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(self.url + path, data=body, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text.decode(errors="replace")

    def flow(self, flow_id: str | None = None, **data: Any) -> dict[str, Any]:
        """Start a config flow (``handler=``) or answer a step of one (``flow_id``) over the REST API."""
        path = "/api/config/config_entries/flow" + (f"/{flow_id}" if flow_id else "")
        status, answer = self.request("POST", path, data)
        assert status == 200, (status, answer)
        return answer

    def flow_form(self, flow_id: str) -> dict[str, Any]:
        """The step a flow in progress shows now (as the frontend opens it), without answering it."""
        status, answer = self.request("GET", f"/api/config/config_entries/flow/{flow_id}")
        assert status == 200, (status, answer)
        return answer

    def flows_in_progress(self) -> list[dict[str, Any]]:
        """Config flows waiting for the user (discovered and reauth flows; not the ones a user started)."""
        return self.ws({"type": "config_entries/flow/progress"})[0]

    def config_entries(self, domain: str) -> list[dict[str, Any]]:
        status, answer = self.request("GET", f"/api/config/config_entries/entry?domain={domain}")
        assert status == 200, (status, answer)
        return answer

    def _post(self, path: str, data: dict[str, Any] | None = None, form: dict[str, str] | None = None) -> Any:
        if form is not None:
            body = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in form.items()).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            body = json.dumps(data or {}).encode()
            headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=15) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def _login(self) -> str:
        flow = self._post("/auth/login_flow", {"client_id": CLIENT_ID, "handler": ["homeassistant", None],
                                               "redirect_uri": CLIENT_ID})
        done = self._post(f"/auth/login_flow/{flow['flow_id']}",
                          {"client_id": CLIENT_ID, "username": USER, "password": PASSWORD})
        tokens = self._post("/auth/token", form={"grant_type": "authorization_code", "code": done["result"],
                                                 "client_id": CLIENT_ID})
        return tokens["access_token"]

    # ---- REST ------------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def states(self) -> dict[str, dict[str, Any]]:
        status, body, _ = self.get("/api/states")
        assert status == 200, body[:200]
        return {s["entity_id"]: s for s in json.loads(body)}

    def call(self, domain: str, service: str, **data: Any) -> Any:
        return self._post(f"/api/services/{domain}/{service}", data)

    # ---- websocket -------------------------------------------------------------------------
    def ws(self, *commands: dict[str, Any]) -> list[Any]:
        """Run websocket commands in order; their ``result``s."""
        return asyncio.run(self._ws(list(commands)))

    async def _ws(self, commands: list[dict[str, Any]]) -> list[Any]:
        results = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
                self.url + "/api/websocket", timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
            await ws.receive_json(timeout=10)  # auth_required
            await ws.send_json({"type": "auth", "access_token": self.token})
            answer = await ws.receive_json(timeout=10)
            assert answer["type"] == "auth_ok", answer
            for number, command in enumerate(commands, start=1):
                await ws.send_json({"id": number, **command})
                while True:
                    message = await ws.receive_json(timeout=15)
                    if message.get("id") == number and message.get("type") == "result":
                        assert message["success"], message
                        results.append(message["result"])
                        break
        return results

    def devices(self) -> list[dict[str, Any]]:
        return self.ws({"type": "config/device_registry/list"})[0]

    def entities(self) -> list[dict[str, Any]]:
        return self.ws({"type": "config/entity_registry/list"})[0]


def add_camhub(ha: HomeAssistant, hub_url: str, username: str = "", password: str = "") -> dict[str, Any]:
    """The camhub integration for the hub at ``hub_url``, through the typed-URL config flow."""
    flow = ha.flow(handler="camhub")
    credentials = {"username": username, "password": password} if username else {}
    return ha.flow(flow["flow_id"], url=hub_url, **credentials)


def add_stock_mjpeg(ha: HomeAssistant, name: str, mjpeg_url: str, still_url: str) -> dict[str, Any]:
    """Home Assistant's own "MJPEG IP Camera" integration for a URL, as the README used to advise."""
    flow = ha.flow(handler="mjpeg")
    return ha.flow(flow["flow_id"], name=name, mjpeg_url=mjpeg_url, still_image_url=still_url, password="",
                   verify_ssl=False)


@dataclass
class HaWorld:
    """The ``ha`` tests' setting: mosquitto, simulated nodes, the hub and a Home Assistant using that broker."""

    broker: Mosquitto
    observer: Observer
    nodes: dict[str, SimNode]
    hub: HubProcess
    ha: HomeAssistant
    tmp: Path
    stoppable: list[Any] = field(default_factory=list)  # more to stop at the end: processes, stream readers

    @classmethod
    @contextlib.contextmanager
    def running(cls, tmp: Path, cameras: dict[str, tuple[str, str]], fps: int, hub_env: dict[str, str],
                topics: list[str], integration: bool = False, scene: str | None = None) -> Iterator[Any]:
        """``cameras``: id -> (name, frame size); ``scene``: the simulated cameras' (``busy``: a new picture
        in every frame). Everything started and ready; everything stopped after."""
        require_ha()
        broker = Mosquitto()
        observer = Observer(broker.port, topics)
        nodes = {cid: SimNode(cid, broker.port, fps=fps, frame_size=size, env={"CAMHUB_NODE_NAME": name},
                              extra=["--scene", scene] if scene else None)
                 for cid, (name, size) in cameras.items()}
        hub = HubProcess(broker.port, tmp / "hub-state", env=hub_env)
        world = cls(broker, observer, nodes, hub, HomeAssistant(tmp / "ha", broker.port, integration=integration),
                    tmp)
        try:
            for node in nodes.values():
                node.wait_ready()
            hub.wait_ready()
            world.ha.wait_ready()
            yield world
        finally:
            for other in world.stoppable:
                (other.stop if hasattr(other, "stop") else other.close)()
            for proc in (world.ha, *world.nodes.values(), world.hub):
                proc.stop()
            observer.close()
            broker.stop()
