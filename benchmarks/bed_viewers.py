"""Hundreds of viewers in the network-namespace test bed: one viewer process through HAProxy to one hub.

Builds the single-hub bed of tests/support/netbed.py (root): a broker, a board running the real firmware
as a simulated node, a hub, HAProxy in front of it (docs/cluster/haproxy.cfg) and a viewer host, each its
own namespace. For each N it runs the viewer tool (benchmarks/viewers.py) with N viewers of the camera
through HAProxy and prints: the viewers that kept the camera's frame rate (>= 90 %), the streams that
ended in an error (a 503, a reset: each viewer reconnects), their fps (min / median), frame age (median
of the viewers' p50 / worst p95: receive time minus capture time), and the CPU the viewer tool, HAProxy
and the hub used meanwhile (cores). The groundwork for issue #22's edge-tier
benchmarks: it shows how far one viewer process and one HAProxy go on this machine.

    sudo .venv/bin/python benchmarks/bed_viewers.py                          # N = 50, 200, 400; QVGA 5 fps
    sudo .venv/bin/python benchmarks/bed_viewers.py --viewers 100 --fps 15 --frame-size VGA --seconds 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the bed

from fanout import cpu_seconds  # noqa: E402  (benchmarks/ is this script's directory)

from tests.support.netbed import NetBed, unavailable  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--viewers", default="50,200,400", help="viewer counts, comma-separated")
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--frame-size", default="QVGA")
    parser.add_argument("--seconds", type=float, default=10.0, help="each run's length")
    args = parser.parse_args()
    if reason := unavailable():
        print(reason, file=sys.stderr)
        return 2
    counts = [int(n) for n in args.viewers.split(",")]
    with NetBed(show_logs=False) as bed:
        broker_host, board, hub_host, proxy, viewer = bed.hosts("broker", "board", "hub", "proxy", "viewer")
        broker = bed.mosquitto(broker_host)
        bed.node(board, "cam", broker, fps=args.fps, frame_size=args.frame_size)
        # Past the hub's default limits (250 viewers a camera, 500 in all), which answer 503.
        limits = {"CAMHUB_MAX_VIEWERS": str(2 * max(counts)), "CAMHUB_MAX_VIEWERS_PER_CAMERA": str(2 * max(counts))}
        hub = bed.hub(hub_host, broker, proxies=[proxy], env=limits)
        lb = bed.haproxy(proxy, [hub])
        url = proxy.url("/cameras/cam/stream")
        wait_until(lambda: bed.get_json(viewer, proxy.url("/api/cameras/cam"))["state"] == "streaming",
                   timeout=20, what="the camera streaming")
        print(f"one camera, {args.frame_size} at {args.fps} fps; viewers through HAProxy; {args.seconds:g} s each")
        print("| viewers | at full rate | errors | fps min / median | age ms p50 / worst p95 | "
              "viewer tool cores | HAProxy cores | hub cores |")
        print("|---:|---:|---:|---|---|---:|---:|---:|")
        for n in counts:
            before = {name: cpu_seconds(p.pid) for name, p in (("haproxy", lb), ("hub", hub))}
            started = time.monotonic()
            report = bed.watch(viewer, [url], viewers=n, seconds=args.seconds)
            took = time.monotonic() - started
            used = {name: (cpu_seconds(p.pid) - before[name]) / took for name, p in (("haproxy", lb), ("hub", hub))}
            rows = report["viewers"]
            fps = sorted(v["fps"] for v in rows)
            full = sum(1 for v in rows if v["fps"] >= 0.9 * args.fps)
            errors = sum(sum(v["errors"].values()) for v in rows)
            p50 = statistics.median(v["age_ms"]["p50"] or 0 for v in rows)
            p95 = max(v["age_ms"]["p95"] or 0 for v in rows)
            print(f"| {n} | {full} | {errors} | {fps[0]:.1f} / {statistics.median(fps):.1f} | {p50:.0f} / {p95:.0f} | "
                  f"{report['cpu_s'] / report['seconds']:.2f} | {used['haproxy']:.2f} | {used['hub']:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
