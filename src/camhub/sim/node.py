"""``camhub node --sim``: the real node firmware on this PC, with a simulated camera.

Settings come from ``--settings FILE`` (or a deployed directory's ``settings.toml``) through
``camhub.settings.load_settings``, the environment overrides the file, flags override both; the
result is exported to ``os.environ`` so the firmware's ``os.getenv`` reads it exactly as a board
reads ``settings.toml``. ``--from DIR`` runs a deployed board directory as it is: ``DIR/code.py``
with ``DIR/lib`` on ``sys.path``; ``DIR`` stands for the drive's root (``code.py`` looks for the
deploy marker next to its own ``__file__``). In snapshot mode (``CAMHUB_MODE = "snapshot"``) the node
deep-sleeps between wakes: ``camhub.sim.sleep`` runs each wake in a fresh interpreter, as a board
restarts ``code.py``; SIGUSR1 fires its wake pin.
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
from pathlib import Path

from camhub.settings import SettingsError, load_settings
from camhub.sim.boarddir import library_path

log = logging.getLogger("camhub.nodesim")

# flag attribute -> settings key
FLAG_KEYS = {
    "id": "CAMHUB_NODE_ID",
    "http_port": "CAMHUB_HTTP_PORT",
    "mqtt_host": "CAMHUB_MQTT_HOST",
    "mqtt_port": "CAMHUB_MQTT_PORT",
    "fps": "CAMHUB_FPS",
    "frame_size": "CAMHUB_FRAME_SIZE",
    "advertise_host": "CAMHUB_ADVERTISE_HOST",
    "scene": "CAMHUB_SIM_SCENE",
}

NEEDS_SIM = (
    "camhub node: the node firmware runs on an ESP32-S3 board (cameras/code.py, copied there by "
    "`camhub deploy`). To run it on this PC with a simulated camera, add --sim."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sim", action="store_true", help="run on this PC with a simulated camera (required)")
    parser.add_argument("--id", help="node id (CAMHUB_NODE_ID)")
    parser.add_argument("--http-port", type=int, help="port for /stream, /snapshot.jpg, /status (CAMHUB_HTTP_PORT)")
    parser.add_argument("--mqtt-host", help="MQTT broker host (CAMHUB_MQTT_HOST)")
    parser.add_argument("--mqtt-port", type=int, help="MQTT broker port (CAMHUB_MQTT_PORT)")
    parser.add_argument("--fps", type=int, help="frames per second (CAMHUB_FPS)")
    parser.add_argument("--frame-size", help="QQVGA, QVGA, VGA, SVGA, HD ... (CAMHUB_FRAME_SIZE)")
    parser.add_argument("--settings", type=Path, help="a settings.toml (flat KEY = value)")
    parser.add_argument("--scene", default=None,
                        help="what the simulated camera shows: realistic (default: a still view someone crosses "
                             "every 20-60 s, the light changing now and then) or busy (motion on every frame, "
                             "for benchmarks and load tests) (CAMHUB_SIM_SCENE)")
    parser.add_argument("--advertise-host", default=None,
                        help="host put in the announced URLs (default 127.0.0.1; CAMHUB_ADVERTISE_HOST)")
    parser.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                        help="run a deployed board directory: DIR/code.py, DIR/lib, DIR/settings.toml")
    parser.add_argument("--runtime", choices=("cpython", "micropython", "circuitpython"), default="cpython",
                        help="the interpreter: this CPython (default), the MicroPython Unix port, or "
                             "CircuitPython's own VM (single-precision floats, as a board; found by "
                             "CAMHUB_CIRCUITPY_VM), each VM with a board-sized heap")
    parser.add_argument("--heap", default=None, metavar="SIZE",
                        help="the VM's heap: bytes, or with K/M (default 1M; --runtime micropython or "
                             "circuitpython)")


def node_environment(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings the firmware will read: file, then environment, then flags."""
    path = args.settings
    if path is None and args.from_dir is not None and (args.from_dir / "settings.toml").is_file():
        path = args.from_dir / "settings.toml"
    # Unknown CAMHUB_* variables in the environment: the firmware warns about its environment itself
    # (as a board does about its settings.toml), on either runtime, so not here too.
    values = load_settings(path, environ, warn_environment=False)
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            values[key] = str(value)
    values.setdefault("CAMHUB_ADVERTISE_HOST", "127.0.0.1")
    return values


def run(args: argparse.Namespace) -> int:
    if not args.sim:
        print(NEEDS_SIM, file=sys.stderr)
        return 2
    if args.from_dir is not None and not (args.from_dir / "code.py").is_file():
        print(f"camhub node: {args.from_dir}/code.py not found (is it a deployed board directory?)", file=sys.stderr)
        return 2
    try:
        values = node_environment(args)
    except SettingsError as error:
        print(f"camhub node: bad settings: {error}", file=sys.stderr)
        return 2
    if args.runtime != "cpython":
        return _run_vm(args, values)
    if args.heap is not None:
        print("camhub node: --heap applies to --runtime micropython or circuitpython only", file=sys.stderr)
        return 2
    if snapshot_mode(values):
        return _run_snapshot_cpython(args, values)
    os.environ.update(values)
    try:
        if args.from_dir is not None:
            if library_path(args.from_dir / "lib"):
                # The settings check imported the installed node package for its key list: the
                # deployed one must be what code.py imports.
                for name in [n for n in sys.modules if n == "camhub_node" or n.startswith("camhub_node.")]:
                    del sys.modules[name]
            # A "/"-separated __file__, as on a board: code.py finds the drive's root from it.
            runpy.run_path((args.from_dir / "code.py").as_posix(), run_name="__main__")
            return 0
        from camhub_node import start

        return start.main() or 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)


def snapshot_mode(values: dict[str, str]) -> bool:
    """Whether the settings make a battery camera: each wake then runs in a fresh interpreter
    (``camhub.sim.sleep``). A bad ``CAMHUB_MODE`` is the firmware's to report."""
    return values.get("CAMHUB_MODE", "").strip().lower() == "snapshot"


def _run_snapshot_cpython(args: argparse.Namespace, values: dict[str, str]) -> int:
    from camhub.deploy.bundle import BundleError, find_firmware
    from camhub.sim import sleep
    from camhub.sim.vm import die_with_parent

    lib: Path | None = None
    if args.from_dir is not None:
        code_py = args.from_dir.resolve() / "code.py"
        if (args.from_dir / "lib").is_dir() and any((args.from_dir / "lib").rglob("*.py")):
            lib = args.from_dir.resolve() / "lib"
    else:
        try:
            code_py = find_firmware().code_py
        except BundleError as error:
            print(f"camhub node: {error}", file=sys.stderr)
            return 2
    with sleep.alarm_folder() as folder:
        return sleep.Board(folder).run(sleep.cpython_wake(code_py, lib, values, die_with_parent))


def _run_vm(args: argparse.Namespace, values: dict[str, str]) -> int:
    from camhub.deploy.bundle import NODE_PACKAGE, BundleError, Firmware, find_firmware
    from camhub.sim import vm as nodevm

    try:
        heap = nodevm.parse_heap(args.heap or nodevm.DEFAULT_HEAP)
    except ValueError as error:
        print(f"camhub node: {error}", file=sys.stderr)
        return 2
    if args.from_dir is None:
        try:
            return nodevm.run(values, find_firmware(), None, heap, args.runtime)
        except BundleError as error:
            print(f"camhub node: {error}", file=sys.stderr)
            return 2
    root = args.from_dir.resolve()
    lib: Path | None = root / "lib"
    if not any(lib.rglob("*.py")):
        log.warning("%s holds no .py libraries (a bundle's .mpy files are built for a board): using the installed "
                    "node libraries instead", lib)
        lib = None
    return nodevm.run(values, Firmware(root / "code.py", root / "lib" / NODE_PACKAGE), lib, heap, args.runtime)
