"""What a freshly connecting MQTT client receives that it never asked for (issue #28).

Starts ``camhub demo`` (the embedded broker, N simulated nodes, the hub) on free ports, or measures a broker
that is already running (``--attach PORT``), and connects bare clients (tests/support/mqtt_wire.py: every
byte read is counted, QoS 1 messages are acknowledged as a client library would):

1. a client that never subscribes, with only the hub subscribed;
2. the same once a Home-Assistant-like subscriber holds ``camhub/hub/cameras/+/snapshot`` and
   ``homeassistant/#`` and every camera's retained JPEG snapshot is there;
3. a client that subscribes to ``camhub/hub/cameras/+/motion`` only: what it gets on other topics.

MQTT 3.1.1 sends a client only messages matching its own subscriptions: "unsolicited" should be 0, and
"bytes read" the CONNACK's 4 (plus, in 3., the SUBACK and its own messages). A camera board reconnecting
is such a client. Columns: messages on the client's own filters, other messages (count, bytes), every
byte the client read.

    .venv/bin/python benchmarks/mqtt_unsolicited.py               # ≈ 30 s: 3 nodes, 3 s windows
    .venv/bin/python benchmarks/mqtt_unsolicited.py --nodes 8
    .venv/bin/python benchmarks/mqtt_unsolicited.py --attach 1883  # a broker (and hub) already running
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the same process runners and wire client as the tests

import paho.mqtt.client as paho  # noqa: E402

from tests.support import mqtt_wire  # noqa: E402
from tests.support.procs import Process, camhub_cmd, free_port, wait_for_http  # noqa: E402
from tests.support.waiting import get_json, wait_until  # noqa: E402

HA_FILTERS = ["camhub/hub/cameras/+/snapshot", "homeassistant/#"]
MOTION_FILTER = "camhub/hub/cameras/+/motion"


@contextlib.contextmanager
def demo(nodes: int) -> Iterator[int]:
    """``camhub demo`` on free ports, every node streaming to the hub; yields its MQTT port."""
    http_port, mqtt_port = free_port(), free_port()
    proc = Process(camhub_cmd("demo", "--nodes", str(nodes), "--port", str(http_port),
                              "--mqtt-port", str(mqtt_port)), name="demo")
    try:
        wait_for_http(f"http://127.0.0.1:{http_port}/healthz", timeout=60, proc=proc.proc)
        wait_until(lambda: sum(c["state"] == "streaming" for c in get_json(
            f"http://127.0.0.1:{http_port}/api/cameras")) == nodes, timeout=60, what="every node streaming")
        yield mqtt_port
    finally:
        proc.stop()


class HaLike:
    """Subscribed as Home Assistant is to the snapshots and discovery; counts the snapshots it holds."""

    def __init__(self, port: int) -> None:
        self.snapshots: dict[str, int] = {}
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ha-like")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f, 1) for f in HA_FILTERS])
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("the Home-Assistant-like subscriber was not acknowledged")

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/snapshot") and msg.payload:
            self.snapshots[msg.topic] = len(msg.payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def measure(port: int, window: float, name: str, filters: list[str] | None = None) -> dict[str, object]:
    client = mqtt_wire.WireClient(port, f"measure-{name}-{time.monotonic_ns()}")
    try:
        if filters:
            client.send(mqtt_wire.subscribe_packet(1, [(f, 1) for f in filters]))
        client.read_for(window)
    finally:
        client.close()
    topics = [mqtt_wire.publish_topic(p) for p in client.publishes()]
    own = [t for t in topics if any(paho.topic_matches_sub(f, t) for f in filters or [])]
    others = [p for p, t in zip(client.publishes(), topics, strict=True) if t not in own]
    return {"scenario": name, "own": len(own), "unsolicited": len(others),
            "unsolicited_bytes": sum(len(p) for p in others), "bytes_read": client.bytes_read,
            "topics": sorted({t for t in topics if t not in own})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3, help="simulated nodes in the demo (default 3)")
    parser.add_argument("--window", type=float, default=3.0, help="seconds each client reads (default 3)")
    parser.add_argument("--attach", type=int, metavar="PORT", help="measure the broker on 127.0.0.1:PORT")
    parser.add_argument("--snapshot-timeout", type=float, default=60.0,
                        help="how long to wait for every camera's snapshot (default 60 s)")
    args = parser.parse_args()
    with contextlib.nullcontext(args.attach) if args.attach else demo(args.nodes) as port:
        rows = [measure(port, args.window, "never subscribes, hub present")]
        ha = HaLike(port)
        try:
            deadline = time.monotonic() + args.snapshot_timeout
            while len(ha.snapshots) < args.nodes and time.monotonic() < deadline:
                time.sleep(0.2)
            print(f"HA-like subscriber holds {len(ha.snapshots)} snapshots "
                  f"({sum(ha.snapshots.values()) / 1000:.1f} KB)")
            rows.append(measure(port, args.window, "never subscribes, HA-like subscriber present"))
            rows.append(measure(port, args.window, f"subscribes {MOTION_FILTER} only", [MOTION_FILTER]))
        finally:
            ha.close()
    print(f"{'scenario':48} {'its own':>8} {'unsolicited':>12} {'unsol. bytes':>13} {'bytes read':>11}")
    for row in rows:
        print(f"{row['scenario']:48} {row['own']:>8} {row['unsolicited']:>12} "
              f"{row['unsolicited_bytes']:>13} {row['bytes_read']:>11}")
    for row in rows:
        if row["topics"]:
            print(f"\n{row['scenario']}: unsolicited topics\n  " + "\n  ".join(row["topics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
