"""Issue #25's number: how far behind the camera a slow viewer falls when it watches through Home Assistant.

One simulated camera (QVGA, ~12 KB frames, 10 fps: ~120 KB/s), the hub, and a real Home Assistant core
(``tests/ha/install.sh``) showing that camera twice: through the camhub integration (its frame-aware
relay) and through Home Assistant's own "MJPEG IP Camera" integration pointed at the same hub stream.
Two viewers read both live views at once, each throttled to ``--rate`` bytes/s (a slow link), for
``--seconds``; every frame's age on arrival comes from the hub's ``X-Timestamp`` (capture time, same
clock). Printed per 10-second window: the median and worst age for each.

    .venv/bin/python benchmarks/ha_lag.py                         # 60 s at 60 KB/s, HA 2024.3.3
    .venv/bin/python benchmarks/ha_lag.py --seconds 120 --rate 40000
    CAMHUB_HA_VENV=.cache/ha-2025.4/venv .venv/bin/python benchmarks/ha_lag.py   # on HA 2025.4

Everything on 127.0.0.1; every process stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the same processes and readers as the tests

from tests.support.homeassistant import HomeAssistant, add_camhub, add_stock_mjpeg, ha_venv  # noqa: E402
from tests.support.mjpeg_client import StreamReader, frame_ages  # noqa: E402
from tests.support.procs import HubProcess, Mosquitto, SimNode  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402


class Viewer(threading.Thread):
    def __init__(self, url: str, token: str, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.reader = StreamReader(url, rate=rate, recv_buffer=4096, timeout=30,
                                   headers={"Authorization": f"Bearer {token}"})
        self.seconds = seconds
        self.ages: list[tuple[float, float]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.ages = frame_ages(self.reader, self.seconds)
        except BaseException as exc:  # reported with the numbers
            self.error = exc
        finally:
            self.reader.close()


def windows(ages: list[tuple[float, float]], seconds: float, size: float = 10.0) -> list[tuple[float, float, int]]:
    out = []
    start = 0.0
    while start < seconds:
        inside = [age for at, age in ages if start <= at < start + size]
        out.append((statistics.median(inside), max(inside), len(inside)) if inside else (float("nan"),) * 2 + (0,))
        start += size
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=60_000, help="bytes/s each viewer reads (default 60000)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camhub-ha-lag-") as tmp:
        broker = Mosquitto()
        node = SimNode("garage", broker.port, fps=10, frame_size="QVGA", env={"CAMHUB_NODE_NAME": "Garage"},
                       extra=["--scene", "busy"])  # a new picture in every frame: ~12 KB each, steadily
        hub = HubProcess(broker.port, Path(tmp) / "hub")
        ha = HomeAssistant(Path(tmp) / "ha", broker.port, integration=True)
        try:
            node.wait_ready()
            hub.wait_ready()
            ha.wait_ready()
            version = ha.request("GET", "/api/config")[1]["version"]
            assert add_camhub(ha, hub.url)["type"] == "create_entry"
            assert add_stock_mjpeg(ha, "Garage stock", hub.url + "/cameras/garage/stream",
                                   hub.url + "/cameras/garage/snapshot.jpg")["type"] == "create_entry"
            wait_until(lambda: {"camera.garage", "camera.garage_stock"} <= set(ha.states()), 40, "both cameras")
            print(f"Home Assistant {version} ({ha_venv()}); camera QVGA 10 fps; two viewers at "
                  f"{args.rate / 1000:g} KB/s each for {args.seconds:g} s")
            viewers = {name: Viewer(f"{ha.url}/api/camera_proxy_stream/{entity}", ha.token or "", args.rate,
                                    args.seconds)
                       for name, entity in (("camhub integration", "camera.garage"),
                                            ("stock MJPEG integration", "camera.garage_stock"))}
            for viewer in viewers.values():
                viewer.start()
            for viewer in viewers.values():
                viewer.join(args.seconds + 60)
        finally:
            ha.stop()
            hub.stop()
            node.stop()
            broker.stop()
    results = {}
    print(f"{'window':>10}  " + "  ".join(f"{name:>34}" for name in viewers))
    table = {name: windows(v.ages, args.seconds) for name, v in viewers.items()}
    for i in range(len(next(iter(table.values())))):
        cells = []
        for name in viewers:
            median, worst, count = table[name][i]
            cells.append(f"{count:3d} frames, age {median:6.2f} s (max {worst:6.2f})")
        print(f"{i * 10:4.0f}-{i * 10 + 10:<4.0f} s  " + "  ".join(f"{c:>34}" for c in cells))
    for name, viewer in viewers.items():
        late = [age for at, age in viewer.ages if at >= 2.0]
        results[name] = {"frames": len(viewer.ages), "median_age_s": statistics.median(late) if late else None,
                         "max_age_s": max(late) if late else None,
                         "last_age_s": viewer.ages[-1][1] if viewer.ages else None,
                         "error": None if viewer.error is None else repr(viewer.error)}
        print(f"{name}: {results[name]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ha": version, "rate": args.rate, "seconds": args.seconds,
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
