"""Does a hub that runs for months keep its memory? A soak: real hubs, every feature on, for hours.

One invocation, everything on 127.0.0.1, every child stopped at the end (also on Ctrl-C):

- mosquitto on a free port, and ``--cameras`` simulated nodes on it (the real firmware, ``camhub node
  --sim``, ``--fps`` a few frames per second, QQVGA and QVGA mixed; ``--scene busy`` where the node has
  scenes, so the picture moves in every frame and motion and recording never rest).
- One hub per mode (``--modes``), each its own ``camhub hub`` process with its own state directory:

  - ``full``: every feature. The nodes found over MQTT (mosquitto), motion detection, recordings
    (half the cameras ``always``, the rest on motion) capped at ``--record-mb`` in 10 s segments so
    that retention deletes all the time, a time-lapse, Home Assistant discovery with camera
    snapshots, auth on (and failed logins), ``CAMHUB_DIAGNOSTICS = "tracemalloc"``.
  - ``relay``: the same nodes as static ``CAMHUB_SOURCES``; motion, recordings and discovery off:
    the fan-out alone.
  - ``embedded``: the hub's defaults (motion on, recording on motion) with its embedded broker
    (amqtt), two nodes of its own on it, discovery on.

- Churn all the time, on every hub: viewers connecting and leaving (closing, resetting, stalling
  until the hub's write timeout drops them, fps-limited), dashboards on server-sent events, API
  polls and ``/metrics`` scrapes, recordings played back, options switched (motion, recording
  mode), a node's fps changed over MQTT; every ``10 min`` a node is killed (SIGKILL) and comes back a
  minute later; every ``20 min`` a node is decommissioned (stopped, its retained announce cleared:
  the hub forgets it) and a new one with a new id appears; every ``30 min`` mosquitto restarts; every
  ``10 min`` Home Assistant's birth message (every config and state published again). ``--quick``
  makes every period ten times shorter, for trying the script.
- Every ``--interval``: each hub's RSS, open descriptors and threads (``/proc``), and its
  ``GET /api/hub/diagnostics`` (``CAMHUB_DIAGNOSTICS``): asyncio tasks, gc objects, Python's and
  glibc's allocators, and every part's own structure sizes. After ``--warmup`` the tracing hubs take
  a ``tracemalloc`` baseline; at the end their top growers are printed.

The report: per hub, the slopes after warm-up (Theil-Sen, robust against the saw-tooth of the
allocators; least squares beside it) of RSS, descriptors, threads, tasks, gc objects and heap in
use, every structure that moved, and a verdict: RSS flat when it grows less than ``--flat-mb`` (2 MB)
over two hours, and no structure growing. Samples go to ``OUT/samples.jsonl`` as they are taken, so
``--report OUT`` prints the report of a run again (or of one that was stopped).

    .venv/bin/python benchmarks/soak.py --duration 2h                 # the soak (≈ 2 h + 1 min)
    .venv/bin/python benchmarks/soak.py --duration 12m --quick        # try it: periods / 10
    .venv/bin/python benchmarks/soak.py --report /tmp/camhub-soak-XXXX
    .venv/bin/python benchmarks/soak.py --duration 2h --hub-env full:MALLOC_ARENA_MAX=2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import Mosquitto, camhub_cmd, free_port, stop_process, wait_for_http  # noqa: E402

PASSWORD = "soak-password"
OPTION_CHANGES = ({"motion": "off"}, {"motion": "on"}, {"record": "always"}, {"record": "motion"}, {"record": "off"},
                  {"motion": "on", "record": "motion"})
WRONG = "Basic " + base64.b64encode(b"admin:wrong").decode()
FRAME_SIZES = ("QVGA", "QQVGA")
MB = 1024 * 1024


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1h30m`` → seconds."""
    total, rest = 0.0, text.strip().lower()
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)([hms]?)", rest):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "": 1}[unit]
    if total <= 0 or not re.fullmatch(r"(\d+(\.\d+)?[hms]?)+", rest):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 1h30m)")
    return total


# ---- processes ----------------------------------------------------------------------------------

class Child:
    """A child process in its own session, its output in ``log``; stopped (TERM, then KILL) on ``stop``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log_path, self.env = args, log, env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)


def node_has_scenes() -> bool:
    out = subprocess.run(camhub_cmd("node", "--help"), capture_output=True, text=True, cwd=ROOT).stdout
    return "--scene" in out


class Node(Child):
    """A simulated node (the real firmware) with a fixed id and port, so it can die and come back."""

    def __init__(self, node_id: str, mqtt_port: int, fps: int, frame_size: str, out: Path, scenes: bool) -> None:
        self.node_id, self.http_port, self.fps = node_id, free_port(), fps
        args = camhub_cmd("node", "--sim", "--id", node_id, "--http-port", str(self.http_port), "--mqtt-host",
                          "127.0.0.1", "--mqtt-port", str(mqtt_port), "--fps", str(fps), "--frame-size", frame_size,
                          *(["--scene", "busy"] if scenes else []))
        super().__init__(args, out / f"node-{node_id}.log", {"CAMHUB_MAX_CLIENTS": "4"})
        self.url = f"http://127.0.0.1:{self.http_port}"


@dataclass
class Hub:
    mode: str
    port: int
    state: Path
    env: dict[str, str]
    child: Child | None = None
    auth: str | None = None  # the Authorization header, when the hub wants one
    tracing: bool = False
    cameras: list[str] = field(default_factory=list)
    recordings: list[tuple[str, str]] = field(default_factory=list)  # (camera, recording id) to play back

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.auth} if self.auth else {}


def hub_env(mode: str, mqtt_port: int, nodes: list[Node], tracing: bool, record_mb: float) -> dict[str, str]:
    env = {"CAMHUB_STATE_INTERVAL_S": "5", "CAMHUB_DIAGNOSTICS": "tracemalloc" if tracing else "on",
           "CAMHUB_AUTH": "off"}
    recording = {"CAMHUB_RECORD_MAX_GB": str(record_mb / 1000), "CAMHUB_RECORD_SEGMENT_S": "10",
                 "CAMHUB_RECORD_MIN_FREE_GB": "0.5"}
    if mode == "full":
        env.update(recording, CAMHUB_MQTT_HOST="127.0.0.1", CAMHUB_MQTT_PORT=str(mqtt_port), CAMHUB_AUTH="on",
                   CAMHUB_HUB_PASSWORD=PASSWORD, CAMHUB_MOTION="on", CAMHUB_MOTION_FPS="2", CAMHUB_MOTION_QUIET_S="3",
                   CAMHUB_RECORD="motion", CAMHUB_RECORD_PREROLL_S="3", CAMHUB_RECORD_POSTROLL_S="5",
                   CAMHUB_TIMELAPSE_S="2", CAMHUB_HA_DISCOVERY="on", CAMHUB_HA_SNAPSHOT_S="2")
    elif mode == "relay":
        env.update(CAMHUB_MQTT_HOST="127.0.0.1", CAMHUB_MQTT_PORT=str(mqtt_port), CAMHUB_TOPIC_PREFIX="soakrelay",
                   CAMHUB_MOTION="off", CAMHUB_RECORD="off", CAMHUB_HA_DISCOVERY="off",
                   CAMHUB_SOURCES=" ".join(f"{n.node_id}={n.url}/stream" for n in nodes))
    elif mode == "embedded":
        env.update(recording, CAMHUB_HUB_BROKER="embedded", CAMHUB_MQTT_PORT=str(mqtt_port))
    else:
        raise SystemExit(f"unknown mode {mode!r} (full, relay, embedded)")
    return env


# ---- the load: viewers, dashboards, API clients ------------------------------------------------

class Load:
    """Everything that talks to the hubs over HTTP, counted."""

    def __init__(self, hubs: list[Hub], viewers: int, rng: random.Random) -> None:
        self.hubs, self.target_viewers, self.rng = hubs, viewers, rng
        self.counts: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def get(self, hub: Hub, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        assert self.session is not None
        try:
            async with self.session.get(hub.url + path, headers=hub.headers(),
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.count("http_errors")
            return 0, b""

    async def post(self, hub: Hub, path: str, body: dict[str, Any]) -> int:
        assert self.session is not None
        try:
            async with self.session.post(hub.url + path, json=body, headers=hub.headers(),
                                         timeout=aiohttp.ClientTimeout(total=10)) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.count("http_errors")
            return 0

    async def viewer(self, hub: Hub, camera: str, kind: str, lifetime: float) -> None:
        """One MJPEG viewer on a raw socket: reads for ``lifetime`` and leaves as ``kind`` says."""
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        if kind == "stall":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        query = "?fps=1" if kind == "slow" else ""
        auth = f"Authorization: {hub.auth}\r\n" if hub.auth else ""
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", hub.port)), 5)
            await loop.sock_sendall(sock, (f"GET /cameras/{camera}/stream{query} HTTP/1.1\r\nHost: 127.0.0.1:"
                                           f"{hub.port}\r\nUser-Agent: soak/{kind}\r\n{auth}\r\n").encode())
            deadline = loop.time() + lifetime
            got = 0
            while (left := deadline - loop.time()) > 0:
                if kind == "stall" and got:
                    await asyncio.sleep(left)  # reads nothing more: the hub's write timeout drops it
                    break
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), min(left, 15))
                except TimeoutError:
                    continue
                if not chunk:
                    self.count("viewer_closed_by_hub")
                    break
                got += len(chunk)
            if kind == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.count(f"viewer_{kind}")
        except (OSError, TimeoutError):
            self.count("viewer_errors")
        finally:
            sock.close()

    async def viewers(self, hub: Hub) -> None:
        running: set[asyncio.Task[None]] = set()
        kinds = ["normal"] * 5 + ["reset"] * 2 + ["slow"] * 2 + ["stall"]
        while True:
            if hub.cameras and len(running) < self.target_viewers:
                kind = self.rng.choice(kinds)
                lifetime = self.rng.uniform(20, 40) if kind == "stall" else self.rng.uniform(3, 90)
                task = asyncio.create_task(self.viewer(hub, self.rng.choice(hub.cameras), kind, lifetime))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))

    async def dashboard(self, hub: Hub) -> None:
        """A dashboard tab: server-sent events for a while, then gone; two of them per hub."""
        assert self.session is not None
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with self.session.get(hub.url + "/api/events", headers=hub.headers(),
                                            timeout=aiohttp.ClientTimeout(total=self.rng.uniform(5, 60))) as resp:
                    async for _chunk in resp.content.iter_any():
                        pass
            self.count("dashboard")
            await asyncio.sleep(self.rng.uniform(1, 10))

    async def poller(self, hub: Hub) -> None:
        """What people and scripts ask: the lists, a camera, snapshots, recordings, motion events."""
        while True:
            status, body = await self.get(hub, "/api/cameras")
            if status == 200:
                hub.cameras = [c["id"] for c in json.loads(body)]
            if hub.cameras:
                camera = self.rng.choice(hub.cameras)
                path = self.rng.choice([f"/api/cameras/{camera}", f"/cameras/{camera}/snapshot.jpg", "/api/hub",
                                        f"/api/cameras/{camera}/recordings", f"/api/cameras/{camera}/motion",
                                        f"/api/cameras/{camera}/urls"])
                status, body = await self.get(hub, path)
                self.count("api")
                if path.endswith("/recordings") and status == 200:
                    hub.recordings = [(camera, r["id"]) for r in json.loads(body) if not r.get("open")][:20]
            await asyncio.sleep(self.rng.uniform(2, 8))

    async def scraper(self, hub: Hub) -> None:
        while True:
            await self.get(hub, "/metrics")
            self.count("metrics")
            await asyncio.sleep(15)

    async def playback(self, hub: Hub, period: float) -> None:
        """A recording played back for a few seconds at 4x."""
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * period)
            if hub.recordings:
                camera, rec = self.rng.choice(hub.recordings)
                assert self.session is not None
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with self.session.get(f"{hub.url}/cameras/{camera}/recordings/{rec}/stream?speed=4",
                                                headers=hub.headers(), timeout=aiohttp.ClientTimeout(total=5)) as r:
                        async for _chunk in r.content.iter_any():
                            pass
                self.count("playback")

    async def bad_logins(self, hub: Hub, period: float) -> None:
        """Wrong passwords (counted and throttled by the hub)."""
        assert self.session is not None
        while True:
            await asyncio.sleep(period)
            for _ in range(3):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with self.session.get(hub.url + "/api/hub", headers={"Authorization": WRONG},
                                                timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        await resp.read()
            self.count("bad_logins")


# ---- MQTT: Home Assistant's side ------------------------------------------------------------------

class HaClient:
    """A Home Assistant stand-in on a broker: subscribed to discovery and camhub topics (counting, never
    keeping), and its birth message on demand. paho reconnects by itself after a broker restart."""

    def __init__(self, port: int, name: str) -> None:
        self.received = 0
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"soak-ha-{name}")
        self.client.on_connect = lambda c, *_: c.subscribe([("homeassistant/#", 0), ("camhub/#", 0)])
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, *_: object) -> None:
        self.received += 1

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()


# ---- the soak ---------------------------------------------------------------------------------------

def proc_stats(pid: int) -> dict[str, int | None]:
    """RSS (and its anonymous part: the heaps; the rest is mapped files, the libraries' code), descriptors, threads."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                found[key] = int(value.split()[0])
    fds = threads = None
    with contextlib.suppress(OSError):
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    with contextlib.suppress(OSError):
        threads = len(os.listdir(f"/proc/{pid}/task"))
    return {"rss_kb": found.get("VmRSS"), "rss_anon_kb": found.get("RssAnon"), "rss_file_kb": found.get("RssFile"),
            "fds": fds, "threads": threads}


class Soak:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args, self.out = args, out
        self.rng = random.Random(args.seed)
        self.scale = 0.1 if args.quick else 1.0
        self.samples = open(out / "samples.jsonl", "a")  # noqa: SIM115 (open for the whole run)
        self.t0 = time.monotonic()
        self.mosquitto: Mosquitto | None = None
        self.nodes: list[Node] = []
        self.emb_nodes: list[Node] = []
        self.hubs: list[Hub] = []
        self.ha: list[HaClient] = []
        self.temp_serial = itertools.count(1)
        self.temp: Node | None = None
        self.scenes = node_has_scenes()

    def record(self, kind: str, **data: Any) -> None:
        row = {"kind": kind, "t": round(time.monotonic() - self.t0, 1), "wall": round(time.time(), 1), **data}
        self.samples.write(json.dumps(row) + "\n")
        self.samples.flush()

    def event(self, what: str, **data: Any) -> None:
        self.record("event", what=what, **data)
        print(f"[{(time.monotonic() - self.t0) / 60:6.1f} min] {what} {data if data else ''}", flush=True)

    def period(self, seconds: float) -> float:
        return seconds * self.scale

    # ---- start and stop ----------------------------------------------------------------------
    def start(self) -> None:
        args = self.args
        self.mosquitto = Mosquitto()
        for i in range(args.cameras):
            self.nodes.append(Node(f"cam{i + 1}", self.mosquitto.port, args.fps, FRAME_SIZES[i % 2], self.out,
                                   self.scenes))
        self.temp = self._temp_node()
        emb_port = free_port()
        modes = args.modes.split(",")
        tracing = set(args.tracemalloc.split(",")) if args.tracemalloc else set()
        extra_env: dict[str, dict[str, str]] = {}
        for item in args.hub_env:
            mode, _, pair = item.partition(":")
            key, _, value = pair.partition("=")
            extra_env.setdefault(mode, {})[key] = value
        for node in self.nodes:
            wait_for_http(node.url + "/status", timeout=60, proc=node.proc)
        for mode in modes:
            port = free_port()
            state = self.out / mode
            state.mkdir(exist_ok=True)
            env = {**hub_env(mode, emb_port if mode == "embedded" else self.mosquitto.port, self.nodes,
                             mode in tracing, args.record_mb), **extra_env.get(mode, {})}
            hub = Hub(mode, port, state, env, tracing=mode in tracing)
            if env.get("CAMHUB_AUTH") == "on":
                hub.auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
            hub.child = Child(camhub_cmd("hub", "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state)),
                              self.out / f"hub-{mode}.log", env)
            self.hubs.append(hub)
        for hub in self.hubs:
            assert hub.child is not None
            wait_for_http(hub.url + "/healthz", timeout=90, proc=hub.child.proc)
        if "embedded" in modes:
            for i in range(2):
                self.emb_nodes.append(Node(f"emb{i + 1}", emb_port, args.fps, FRAME_SIZES[i % 2], self.out,
                                           self.scenes))
            self.ha.append(HaClient(emb_port, "embedded"))
        self.ha.append(HaClient(self.mosquitto.port, "mosquitto"))
        self.event("started", hubs={h.mode: h.child.pid for h in self.hubs if h.child}, scenes=self.scenes,
                   nodes=len(self.nodes) + len(self.emb_nodes) + 1)

    def _temp_node(self) -> Node:
        assert self.mosquitto is not None
        return Node(f"temp{next(self.temp_serial)}", self.mosquitto.port, self.args.fps, "QQVGA", self.out,
                    self.scenes)

    def stop(self) -> None:
        for ha in self.ha:
            ha.close()
        for hub in self.hubs:
            if hub.child is not None:
                hub.child.stop(signal.SIGTERM, 30)
        for node in [*self.nodes, *self.emb_nodes, *([self.temp] if self.temp else [])]:
            node.stop(signal.SIGTERM, 10)
        if self.mosquitto is not None:
            self.mosquitto.stop()
        self.samples.close()

    # ---- churn -----------------------------------------------------------------------------
    async def node_deaths(self) -> None:
        """Every 10 min a node is killed (no goodbye: its will says offline) and comes back a minute later."""
        victims = itertools.cycle([*self.nodes, *self.emb_nodes])
        while True:
            await asyncio.sleep(self.period(600))
            node = next(victims)
            node.stop(signal.SIGKILL)
            self.event("node killed", node=node.node_id)
            await asyncio.sleep(self.period(60))
            node.start()
            self.event("node back", node=node.node_id)

    async def decommissions(self, load: Load) -> None:
        """Every 20 min the temporary node goes for good (stopped, retained announce cleared), a new one comes.

        A clear is an empty retained message: only a hub connected at that moment hears it (a link that is
        down then misses it, and the camera stays, offline). So it is sent again until the hubs that
        discover over mosquitto no longer list the camera, for at most two minutes."""
        mqtt_hubs = [h for h in self.hubs if h.mode == "full"]
        while True:
            await asyncio.sleep(self.period(1200))
            old = self.temp
            assert old is not None and self.mosquitto is not None
            old.stop()
            await asyncio.sleep(40)  # its stats must be older than the hub's proof-of-life window (30 s)
            clears = 0
            for _ in range(12):
                self.ha[-1].publish(f"camhub/nodes/{old.node_id}/announce", b"", retain=True)
                clears += 1
                await asyncio.sleep(10)
                listed = [h.mode for h in mqtt_hubs if old.node_id in await self._camera_ids(load, h)]
                if not listed:
                    break
            self.temp = self._temp_node()
            self.event("node decommissioned", old=old.node_id, new=self.temp.node_id, clears=clears,
                       still_listed_by=listed)

    async def _camera_ids(self, load: Load, hub: Hub) -> list[str]:
        status, body = await load.get(hub, "/api/cameras")
        return [c["id"] for c in json.loads(body)] if status == 200 else []

    async def broker_restarts(self) -> None:
        while True:
            await asyncio.sleep(self.period(1800))
            assert self.mosquitto is not None
            port = self.mosquitto.port
            self.mosquitto.stop()
            self.event("mosquitto stopped")
            await asyncio.sleep(10)
            self.mosquitto = Mosquitto(port=port)
            self.event("mosquitto back")

    async def ha_births(self) -> None:
        while True:
            await asyncio.sleep(self.period(600))
            for ha in self.ha:
                ha.publish("homeassistant/status", "online")
            self.event("home assistant birth")

    async def options(self, load: Load, hub: Hub) -> None:
        """Switch motion detection and recording modes per camera through the API, as people do."""
        first = True
        while True:
            if first and hub.cameras:  # half the cameras record always, the rest on motion
                for camera in [c for c in hub.cameras if c.startswith("cam")][: self.args.cameras // 2]:
                    await load.post(hub, f"/api/cameras/{camera}/options", {"record": "always"})
                first = False
            await asyncio.sleep(self.period(180) if not first else 5)
            stable = [c for c in hub.cameras if c.startswith("cam")]  # options outlive a camera (by design)
            if stable and not first:
                camera = self.rng.choice(stable)
                change = self.rng.choice(OPTION_CHANGES)
                await load.post(hub, f"/api/cameras/{camera}/options", change)
                load.count("options")

    async def settings(self, load: Load, hub: Hub) -> None:
        """A node's fps changed over MQTT (it re-announces) and back."""
        fps = itertools.cycle([self.args.fps + 1, self.args.fps])
        while True:
            await asyncio.sleep(self.period(300))
            cams = [c for c in hub.cameras if c.startswith("cam")]
            if cams:
                await load.post(hub, f"/api/cameras/{self.rng.choice(cams)}/settings", {"fps": next(fps)})
                load.count("settings")

    # ---- sampling --------------------------------------------------------------------------
    async def sample(self, load: Load) -> None:
        for hub in self.hubs:
            assert hub.child is not None
            if not hub.child.alive():
                self.record("sample", mode=hub.mode, dead=True)
                continue
            row: dict[str, Any] = {"mode": hub.mode, **proc_stats(hub.child.pid)}
            began = time.monotonic()
            status, _ = await load.get(hub, "/healthz")
            row["healthz_ms"] = round((time.monotonic() - began) * 1000, 1) if status == 200 else None
            status, body = await load.get(hub, "/api/hub/diagnostics?top=0", timeout=60)
            if status == 200:
                diag = json.loads(body)
                process = diag["process"]
                row.update(tasks=process["asyncio_tasks"], gc_objects=process["gc"]["objects"],
                           python_blocks=process["python_blocks"], malloc=process["malloc"], parts=diag["parts"])
                if diag.get("tracemalloc"):
                    row["traced_kb"] = diag["tracemalloc"]["traced_bytes"] // 1024
                    row["tracemalloc_own_kb"] = diag["tracemalloc"]["own_bytes"] // 1024
            self.record("sample", **row)

    async def tracemalloc_baseline(self, load: Load) -> None:
        for hub in self.hubs:
            if hub.tracing:
                assert load.session is not None
                started = time.monotonic()
                async with load.session.post(hub.url + "/api/hub/diagnostics/baseline", headers=hub.headers(),
                                             timeout=aiohttp.ClientTimeout(total=300)) as resp:
                    await resp.read()
                self.event("tracemalloc baseline", hub=hub.mode, status=resp.status,
                           seconds=round(time.monotonic() - started, 1))

    async def tracemalloc_growers(self, load: Load) -> None:
        for hub in self.hubs:
            if hub.tracing:
                for key in ("lineno", "traceback"):
                    status, body = await load.get(hub, f"/api/hub/diagnostics?top=15&key={key}", timeout=300)
                    if status == 200:
                        self.record("growers", mode=hub.mode, key=key, growers=json.loads(body)["tracemalloc"])

    async def run(self) -> None:
        args = self.args
        load = Load(self.hubs, args.viewers, self.rng)
        connector = aiohttp.TCPConnector(limit=64, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            load.session = session
            jobs = [self.node_deaths(), self.decommissions(load), self.broker_restarts(), self.ha_births()]
            for hub in self.hubs:
                jobs += [load.viewers(hub), load.dashboard(hub), load.dashboard(hub), load.poller(hub),
                         load.scraper(hub)]
                if hub.mode in ("full", "embedded"):
                    jobs.append(load.playback(hub, self.period(120)))
                if hub.mode == "full":
                    # 3 a minute whatever --quick says: the hub throttles an address after 20 (and the soak's
                    # own requests come from that address too)
                    jobs += [load.bad_logins(hub, 60.0), self.options(load, hub), self.settings(load, hub)]
            tasks = [asyncio.create_task(job) for job in jobs]
            try:
                warm = False
                while (elapsed := time.monotonic() - self.t0) < args.duration:
                    if not warm and elapsed >= args.warmup:
                        warm = True
                        self.event("warm-up over")
                        await self.tracemalloc_baseline(load)
                    await self.sample(load)
                    self.record("load", counts=dict(load.counts), ha_received=[h.received for h in self.ha])
                    await asyncio.sleep(args.interval)
                await self.sample(load)
                await self.tracemalloc_growers(load)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


# ---- the report -------------------------------------------------------------------------------------

def theil_sen(points: list[tuple[float, float]]) -> float | None:
    """The median of the slopes between all pairs of points (robust against steps and spikes)."""
    if len(points) < 3:
        return None
    if len(points) > 200:  # keep it quick: every k-th point
        points = points[:: len(points) // 200 + 1]
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in itertools.combinations(points, 2) if x2 > x1]
    return statistics.median(slopes) if slopes else None


def least_squares(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    xs, ys = zip(*points, strict=True)
    return statistics.linear_regression(xs, ys).slope


def flatten(row: dict[str, Any]) -> dict[str, float]:
    """A sample's numbers by dotted name (``rss_kb``, ``malloc.in_use_bytes``, ``parts.broker.viewers``)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            for sub, number in flatten(value).items():
                out[f"{key}.{sub}"] = number
        elif isinstance(value, int | float) and not isinstance(value, bool) and key not in ("t", "wall"):
            out[key] = float(value)
    return out


def report(out: Path, warmup: float | None, flat_mb: float) -> None:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]
    events = [r for r in rows if r["kind"] == "event"]
    started = next((e for e in events if e["what"] == "started"), None)
    warm_at = next((e["t"] for e in events if e["what"] == "warm-up over"), None) if warmup is None else warmup
    samples = [r for r in rows if r["kind"] == "sample" and not r.get("dead")]
    if not samples:
        print("no samples")
        return
    end = max(r["t"] for r in samples)
    warm_at = warm_at if warm_at is not None else end / 3
    loads = [r for r in rows if r["kind"] == "load"]
    print(f"\nsoak: {end / 3600:.2f} h, warm-up {warm_at / 60:.0f} min, slopes over the {(end - warm_at) / 3600:.2f} h "
          f"after it; {out}")
    if started:
        print(f"hubs (pid): {started.get('hubs')}; nodes: {started.get('nodes')}; scenes: {started.get('scenes')}")
    happened: dict[str, int] = {}
    for e in events:
        happened[e["what"]] = happened.get(e["what"], 0) + 1
    print("what happened: " + ", ".join(f"{k} ×{v}" for k, v in happened.items()))
    if loads:
        counts = loads[-1]["counts"]
        print("load: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    dead = sorted({r["mode"] for r in rows if r["kind"] == "sample" and r.get("dead")})
    if dead:
        print(f"DIED: {', '.join(dead)}")
    verdicts = []
    for mode in dict.fromkeys(r["mode"] for r in samples):
        mine = [r for r in samples if r["mode"] == mode]
        after = [r for r in mine if r["t"] >= warm_at]
        series: dict[str, list[tuple[float, float]]] = {}
        for r in after:
            for name, value in flatten(r).items():
                series.setdefault(name, []).append((r["t"] / 3600, value))
        print(f"\n== {mode}: {len(after)} samples after warm-up")
        print(f"{'':<34}{'at warm-up':>12}{'end':>12}{'min':>12}{'max':>12}{'slope/h':>12}{'(lsq)':>10}")
        main = ["rss_kb", "rss_anon_kb", "rss_file_kb", "fds", "threads", "tasks", "gc_objects", "python_blocks",
                "malloc.in_use_bytes", "malloc.heap_bytes", "malloc.mmapped_bytes", "malloc.free_bytes", "traced_kb",
                "tracemalloc_own_kb"]

        for name in main:
            _line(name, series)
        latency = sorted(v for _, v in series.get("healthz_ms", []))
        if latency:
            print(f"/healthz while sampled: median {statistics.median(latency):.0f} ms, "
                  f"p95 {latency[int(0.95 * (len(latency) - 1))]:.0f} ms, max {latency[-1]:.0f} ms")
        log = out / f"hub-{mode}.log"
        if log.exists():
            text = log.read_text(errors="replace")
            print(f"its log: MQTT connected {text.count('MQTT connected to')}x, link down "
                  f"{len(re.findall(r'MQTT link to .* down', text))}x, tracebacks {text.count('Traceback')}, "
                  f"{len(text.splitlines())} lines")
        print("structures (entries; only those that moved after warm-up):")
        growing = []
        for name in sorted(n for n in series if n.startswith("parts.")):
            values = [v for _, v in series[name]]
            if min(values) == max(values):
                continue
            _line(name, series)
            half = len(values) // 2
            if half >= 3 and max(values[half:]) > max(values[:half]) * 1.1 + 1 and (theil_sen(series[name]) or 0) > 0:
                growing.append(name)
        rss = series.get("rss_kb", [])
        slope = theil_sen(rss) or 0.0
        hours = (end - warm_at) / 3600
        grown_kb = rss[-1][1] - rss[0][1] if rss else 0
        flat = slope * 2 <= flat_mb * 1024
        verdict = (f"{mode}: RSS {'flat' if flat else 'NOT FLAT'} ({slope:+,.0f} KB/h = {slope * 2 / 1024:+.2f} MB "
                   f"per 2 h, {slope * 24 / 1024:+.1f} MB/day; {grown_kb / 1024:+.1f} MB end-to-end over "
                   f"{hours:.2f} h); structures {'growing: ' + ', '.join(growing) if growing else 'bounded'}")
        verdicts.append(verdict)
        for r in rows:
            if r["kind"] == "growers" and r["mode"] == mode:
                g = r["growers"]
                print(f"tracemalloc top growers since the baseline (by {r['key']}; traced now "
                      f"{g['traced_bytes'] / MB:.1f} MB, tracemalloc's own {g['own_bytes'] / MB:.1f} MB):")
                for item in g["growers"][:10 if r["key"] == "lineno" else 5]:
                    where = item["where"] if r["key"] == "lineno" else item["where"][-4:]
                    print(f"  {item['size_diff'] / 1024:+9.1f} KB {item['count_diff']:+7d} blocks  "
                          f"{' <- '.join(_short(w) for w in reversed(where))}")
    print("\nverdict:")
    for verdict in verdicts:
        print("  " + verdict)


def _line(name: str, series: dict[str, list[tuple[float, float]]]) -> None:
    points = series.get(name)
    if not points:
        return
    values = [v for _, v in points]
    slope, lsq = theil_sen(points), least_squares(points)
    scale, unit = (1 / 1024, " KB") if name.endswith("_bytes") else (1, "")

    def fmt(value: float) -> str:
        return f"{value * scale:,.0f}{unit}"

    print(f"{name:<34}{fmt(values[0]):>12}{fmt(values[-1]):>12}{fmt(min(values)):>12}{fmt(max(values)):>12}"
          f"{fmt(slope or 0):>12}{fmt(lsq or 0):>10}")


def _short(where: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in where:
            return where.split(marker, 1)[1]
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=parse_duration, default=parse_duration("2h"))
    parser.add_argument("--warmup", type=parse_duration, help="default: a third of the duration, at most 30 min")
    parser.add_argument("--interval", type=parse_duration, default=60.0, help="between samples (default 60 s)")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=int, default=2)
    parser.add_argument("--viewers", type=int, default=12, help="viewers connected at a time, per hub")
    parser.add_argument("--modes", default="full,relay,embedded")
    parser.add_argument("--tracemalloc", default="embedded",
                        help="modes whose hub traces allocations ('' = none); tracing slows a hub down, and its "
                             "snapshots (at the end of the warm-up and of the run) cost RSS")
    parser.add_argument("--hub-env", action="append", default=[], metavar="MODE:KEY=VALUE",
                        help="an extra environment variable for one mode's hub, e.g. full:MALLOC_ARENA_MAX=2")
    parser.add_argument("--record-mb", type=float, default=50.0, help="CAMHUB_RECORD_MAX_GB, in MB")
    parser.add_argument("--quick", action="store_true", help="every churn period ten times shorter")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--flat-mb", type=float, default=2.0, help="RSS growth per 2 h that still counts as flat")
    parser.add_argument("--out", type=Path, help="where samples and logs go (default: a new /tmp/camhub-soak-*)")
    parser.add_argument("--report", type=Path, metavar="OUT", help="only print the report of an earlier run")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.warmup, args.flat_mb)
        return 0
    if args.warmup is None:
        args.warmup = min(1800.0, args.duration / 3)
    out = args.out or Path(tempfile.mkdtemp(prefix="camhub-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.duration / 3600:.2f} h ({args.warmup / 60:.0f} min warm-up), modes {args.modes}, "
          f"{args.cameras} cameras at {args.fps} fps; samples and logs in {out}", flush=True)
    soak = Soak(args, out)
    stopping = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        job = asyncio.create_task(soak.run())
        await asyncio.wait([job, asyncio.create_task(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            soak.event("stopped early")
            job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job

    try:
        soak.start()
        asyncio.run(run())
    finally:
        soak.stop()
    report(out, None, args.flat_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
