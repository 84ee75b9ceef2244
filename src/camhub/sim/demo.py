"""``camhub demo``: the embedded broker, a few simulated nodes (the real firmware) and the hub.

Everything listens on 127.0.0.1 only. Ctrl-C stops the nodes first (each says ``offline``), then
the hub (which closes its viewers and says ``offline`` too). The cameras show the realistic scene
(someone crosses each now and then), so motion starts, ends and leaves a recording; the recordings
are capped (``DEMO_SETTINGS``) and live in a temporary state directory that goes when the demo
stops, unless ``--state-dir`` names one to keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from camhub.hub.config import config_from
from camhub.settings import SettingsError, load_settings, warn_unknown_environment
from camhub.sim import ports

log = logging.getLogger(__name__)

NODES_STOP_S = 10.0  # how long the nodes get to say offline and exit before they are killed
NODES_OFFLINE_S = 3.0  # how long the hub waits to hear the stopped nodes' offline

DEMO_CAMERAS = [("front-door", "Front door"), ("garden", "Garden"), ("garage", "Garage"),
                ("driveway", "Driveway"), ("porch", "Porch"), ("workshop", "Workshop"),
                ("hallway", "Hallway"), ("backyard", "Backyard")]

# The demo's own defaults; CAMHUB_* environment variables override them. Recordings stay small: at
# most this much, in segments of at most a minute.
DEMO_SETTINGS = {"CAMHUB_RECORD_MAX_GB": "0.3", "CAMHUB_RECORD_SEGMENT_S": "60"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="the hub's HTTP port (default 8000)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="the embedded broker's port (default 1883)")
    parser.add_argument("--nodes", type=int, default=3, help=f"simulated nodes, 1..{len(DEMO_CAMERAS)} (default 3)")
    parser.add_argument("--fps", type=int, default=10, help="frames per second per node (default 10)")
    parser.add_argument("--frame-size", default="VGA", help="simulated frame size (default VGA)")
    parser.add_argument("--state-dir", type=Path,
                        help="the hub's state dir, kept with its recordings (default: a temporary one, deleted "
                             "when the demo stops)")
    parser.add_argument("--scene", choices=("realistic", "busy"), default=None,
                        help="what the cameras show: realistic (default: someone crosses each every 20-60 s, the "
                             "light changes now and then) or busy (motion on every frame) (CAMHUB_SIM_SCENE)")
    parser.add_argument("--runtime", choices=("cpython", "micropython", "circuitpython"), default="cpython",
                        help="run the nodes' firmware on CPython (default), the MicroPython Unix port or "
                             "CircuitPython's own VM (CAMHUB_CIRCUITPY_VM)")
    parser.add_argument("--heap", metavar="SIZE", help="each VM node's heap (default 1M)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_nodes(args: argparse.Namespace, mqtt_port: int, unknown: set[str]) -> list[subprocess.Popen[bytes]]:
    nodes = []
    for node_id, name in DEMO_CAMERAS[: args.nodes]:
        # without the unknown CAMHUB_* variables: the demo has warned about them once, not once per node
        env = {**{k: v for k, v in os.environ.items() if k not in unknown}, "CAMHUB_NODE_NAME": name}
        # nodes log warnings only: the demo's console is for the hub and the URLs
        cmd = [sys.executable, "-m", "camhub", "--log-level", "WARNING", "node", "--sim", "--id", node_id,
               "--http-port", str(_free_port()), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_port),
               "--fps", str(args.fps), "--frame-size", args.frame_size, "--runtime", args.runtime]
        if args.scene:
            cmd += ["--scene", args.scene]
        if args.heap:
            cmd += ["--heap", args.heap]
        nodes.append(subprocess.Popen(cmd, env=env, start_new_session=True))
    return nodes


def _stop_nodes(nodes: list[subprocess.Popen[bytes]]) -> None:
    for node in nodes:
        if node.poll() is None:
            node.terminate()
    deadline = time.monotonic() + NODES_STOP_S  # one deadline for all: Ctrl-C must not take minutes
    for node in nodes:
        try:
            node.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


async def _demo(args: argparse.Namespace, state_dir: Path) -> int:
    from camhub.hub.command import Hub, serve  # the hub's imports are heavy; only now

    unknown = {name for name, _ in warn_unknown_environment(os.environ)}
    settings = {**DEMO_SETTINGS, **load_settings(None, warn_environment=False)}
    config = config_from(settings, host="127.0.0.1", port=args.port, mqtt_port=args.mqtt_port,
                         state_dir=state_dir, broker="embedded", auth="off", mqtt_listen="127.0.0.1")
    stop, interrupted = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    ready: asyncio.Future[Hub] = loop.create_future()
    hub = asyncio.create_task(serve(config, ready.set_result, stop))
    await asyncio.wait({hub, ready}, return_when=asyncio.FIRST_COMPLETED)
    if hub.done():
        hub.result()  # raises what stopped it
        return 1
    running = ready.result()
    nodes = _start_nodes(args, args.mqtt_port, unknown)
    kept = "kept" if args.state_dir else "deleted when the demo stops (--state-dir DIR keeps them)"
    print(f"\ncamhub demo: {len(nodes)} simulated cameras, MQTT on 127.0.0.1:{args.mqtt_port}\n"
          f"  dashboard:  http://127.0.0.1:{args.port}/\n"
          f"  a stream:   http://127.0.0.1:{args.port}/cameras/{DEMO_CAMERAS[0][0]}/stream\n"
          f"  the API:    http://127.0.0.1:{args.port}/api/cameras\n"
          f"  recordings: {config.recordings_dir} (at most {config.record_max_gb:g} GB; {kept})\n"
          "Press Ctrl-C to stop.\n", flush=True)
    try:
        await asyncio.wait({hub, asyncio.create_task(interrupted.wait())}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        print("camhub demo: stopping the nodes, then the hub", flush=True)
        await loop.run_in_executor(None, _stop_nodes, nodes)  # nodes say offline while the broker runs
        if not hub.done():  # the hub has heard them (so has every subscriber) before it stops
            await running.wait_offline([node_id for node_id, _ in DEMO_CAMERAS[: args.nodes]], NODES_OFFLINE_S)
        stop.set()
        await hub
    return 0


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= len(DEMO_CAMERAS):
        print(f"camhub demo: --nodes must be 1..{len(DEMO_CAMERAS)}")
        return 2
    if args.runtime != "cpython":
        from camhub.sim import vm as nodevm

        if nodevm.find_vm(args.runtime, os.environ) is None:
            print(nodevm.missing_vm(args.runtime, os.environ, "camhub demo"))
            return 2
        try:
            nodevm.parse_heap(args.heap or nodevm.DEFAULT_HEAP)
        except ValueError as exc:
            print(f"camhub demo: {exc}")
            return 2
    elif args.heap:
        print("camhub demo: --heap applies to --runtime micropython or circuitpython only")
        return 2
    for what, port in (("HTTP", args.port), ("MQTT", args.mqtt_port)):
        if not ports.port_free("127.0.0.1", port):
            flag = "--port" if what == "HTTP" else "--mqtt-port"
            print(f"camhub demo: port {port} ({what}) is in use by {ports.holder(port)}; pick another with {flag}")
            return 2
    with contextlib.ExitStack() as stack:
        state_dir = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="camhub-demo-")))
        try:
            return asyncio.run(_demo(args, state_dir))
        except SettingsError as exc:
            print(f"camhub demo: {exc}")
            return 2
        except OSError as exc:
            print(f"camhub demo: {exc}")
            return 1
