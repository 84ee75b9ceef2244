"""Issue #8's figures: an announce flood, /healthz during it, log lines per viewer, the hub's RSS.

For each flood size N: a fresh mosquitto and hub (and one simulated node, so there is a stream to
watch), then N bogus retained announces from one MQTT client as fast as the broker takes them
(``http://127.0.0.1:9/stream``: nothing listens there). It reports how long the hub takes to
have handled all of them (cameras registered + announces rejected; if it makes no progress for
20 s, how many it got: mosquitto drops QoS 1 messages beyond a slow subscriber's queue), /healthz
latency sampled every 20 ms meanwhile, the size of /api/cameras and of cameras.json afterwards, then
``--viewers`` stream connections in bursts of 100 (each reads its response head and one frame and
closes), with the hub's log lines per 1,000 of them, and the hub's RSS before, after the flood and
after the viewers.

    .venv/bin/python benchmarks/hub_hardening.py                       # N = 1000, 2000; 1000 viewers
    .venv/bin/python benchmarks/hub_hardening.py --tree /tmp/camhub-old  # another checkout's hub, same venv
    .venv/bin/python benchmarks/hub_hardening.py --announces 500 --viewers 300 --json out.json

``--tree`` runs the hub of another checkout (e.g. ``git worktree add /tmp/camhub-old <commit>``)
with this venv's libraries, for before/after numbers on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the same mosquitto and process runners as the tests

import paho.mqtt.client as paho  # noqa: E402

from tests.support.procs import HubProcess, Mosquitto, SimNode  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def get_bytes(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return len(resp.read())


class HealthProbe(threading.Thread):
    """GET /healthz every 20 ms on a fresh connection; records each latency (s)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url + "/healthz"
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    resp.read()
                self.latencies.append(time.perf_counter() - started)
            except OSError:
                self.failures += 1


def flood(port: int, count: int) -> float:
    """Publish ``count`` retained announces (QoS 1, pipelined); seconds until the broker acked all."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.monotonic()
    infos = [client.publish(f"camhub/nodes/flood{i}/announce", json.dumps(
        {"id": f"flood{i}", "name": f"Flood {i}", "stream_url": "http://127.0.0.1:9/stream", "fps": 10}),
        qos=1, retain=True) for i in range(count)]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.monotonic() - started
    client.loop_stop()
    client.disconnect()
    return elapsed


def viewer_bursts(port: int, camera: str, total: int, burst: int = 100) -> int:
    """``total`` stream connections, ``burst`` at a time; returns how many got a frame."""
    request = f"GET /cameras/{camera}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    ok = 0
    for start in range(0, total, burst):
        socks = []
        for _ in range(min(burst, total - start)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request)
            socks.append(sock)
        for sock in socks:
            got = b""
            try:
                while got.count(b"\xff\xd9") < 1 and len(got) < 1 << 20:
                    data = sock.recv(65536)
                    if not data:
                        break
                    got += data
            except OSError:
                pass
            ok += b"\xff\xd9" in got
            sock.close()
    return ok


def log_lines(hub: HubProcess) -> int:
    return len(hub.output().splitlines())


def run(count: int, viewers: int, env: dict[str, str]) -> dict[str, object]:
    broker = Mosquitto()
    state = tempfile.TemporaryDirectory(prefix="camhub-bench-state-")
    node = SimNode("real", broker.port, fps=10, frame_size="QQVGA", extra=["--scene", "busy"])
    hub = HubProcess(broker.port, Path(state.name), env=env)
    try:
        node.wait_ready()
        hub.wait_ready()
        deadline = time.monotonic() + 30
        while get_json(hub.url + "/api/hub")["cameras_online"] < 1:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated node never streamed")
            time.sleep(0.1)
        time.sleep(1.0)
        rss_before = rss_mb(hub.pid)
        lines_before = log_lines(hub)
        probe = HealthProbe(hub.url)
        started = time.monotonic()
        publish_s = flood(broker.port, count)
        progress_at, handled = time.monotonic(), 0
        while True:  # handled = registered (beyond the one real camera) + rejected
            health = get_json(hub.url + "/api/hub")
            now_handled = health["cameras_total"] - 1 + health["announces_rejected"]  # type: ignore[index]
            if now_handled != handled:
                handled, progress_at = now_handled, time.monotonic()
            # an announce the broker dropped (a slow subscriber's queue is bounded) never arrives
            if handled >= count or time.monotonic() - progress_at > 20:
                break
            time.sleep(0.05)
        handled_s = progress_at - started
        time.sleep(3.0)  # the debounced save, pulls failing and retrying
        probe.stop.set()
        probe.join(10)
        lat = sorted(probe.latencies) or [float("nan")]
        flood_lines = log_lines(hub) - lines_before
        api_bytes = get_bytes(hub.url + "/api/cameras")
        store = Path(state.name) / "cameras.json"
        rss_flood = rss_mb(hub.pid)
        lines_before = log_lines(hub)
        served = viewer_bursts(hub.port, "real", viewers)
        time.sleep(2.0)
        viewer_lines = log_lines(hub) - lines_before
        text = hub.output()
        return {
            "announces": count, "handled": handled, "publish_s": round(publish_s, 2),
            "handled_s": round(handled_s, 2),
            "cameras_total": health["cameras_total"], "rejected": health["announces_rejected"],  # type: ignore[index]
            "healthz_ms_p50": round(1000 * statistics.median(lat), 1),
            "healthz_ms_p99": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "healthz_ms_max": round(1000 * lat[-1], 1), "healthz_samples": len(probe.latencies),
            "healthz_failures": probe.failures, "log_lines_flood": flood_lines,
            "api_cameras_kb": round(api_bytes / 1024, 1),
            "cameras_json_kb": round(store.stat().st_size / 1024, 1) if store.exists() else 0.0,
            "viewers": viewers, "viewers_served": served,
            "log_lines_per_1000_viewers": round(viewer_lines * 1000 / max(1, viewers)),
            "pending_publish_warnings": text.count("pending publish calls"),
            "rss_mb_before": round(rss_before, 1), "rss_mb_after_flood": round(rss_flood, 1),
            "rss_mb_after_viewers": round(rss_mb(hub.pid), 1),
        }
    finally:
        hub.stop()
        node.stop()
        broker.stop()
        state.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--announces", default="1000,2000", help="flood sizes, comma-separated")
    parser.add_argument("--viewers", type=int, default=1000, help="stream connections after each flood")
    parser.add_argument("--tree", type=Path, help="run the hub from this checkout instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    env = {"CAMHUB_STATE_INTERVAL_S": "30"}
    if args.tree is not None:
        tree = args.tree.resolve()
        src = tree / "src" if (tree / "src" / "camhub").is_dir() else tree / "hub"  # older checkouts: hub/
        env["PYTHONPATH"] = os.pathsep.join([str(src), str(tree / "cameras")])
    results = [run(int(n), args.viewers, env) for n in args.announces.split(",") if n]
    keys = list(results[0])
    width = max(len(k) for k in keys)
    print(f"hub: {args.tree or ROOT}")
    for key in keys:
        print(f"{key:<{width}}  " + "  ".join(f"{r[key]!s:>10}" for r in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
