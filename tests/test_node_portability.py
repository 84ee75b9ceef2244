"""The node firmware stays CircuitPython code: a scan of ``cameras/`` for what the board lacks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CAMERAS = Path(__file__).resolve().parents[1] / "cameras"
NODE_FILES = sorted(CAMERAS.rglob("*.py"))

# CircuitPython 9 built-ins the node may use, and the libraries deploy copies to lib/.
BOARD_MODULES = {
    "alarm", "analogio", "array", "asyncio", "binascii", "board", "builtins", "busio", "collections", "digitalio",
    "errno", "espcamera",
    "gc", "io", "json", "math", "mdns", "microcontroller", "os", "random", "re", "select", "socketpool", "struct",
    "supervisor", "sys", "time", "traceback", "watchdog", "wifi",
    "adafruit_httpserver", "adafruit_minimqtt", "adafruit_connection_manager", "adafruit_ticks", "camhub_node",
}
# PC-only modules, allowed only behind the platform layer (host.py, simcam.py, unixport.py).
PC_ONLY_FILES = {"host.py", "simcam.py", "unixport.py"}
PC_MODULES = {"socket", "signal", "logging", "PIL"}
ASYNCIO_SUBSET = {"create_task", "gather", "sleep", "Event", "Lock", "run"}


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_there_is_firmware_to_scan() -> None:
    names = {p.name for p in NODE_FILES}
    assert {"code.py", "node.py", "fanout.py", "http.py", "presence.py", "board.py", "host.py"} <= names


@pytest.mark.parametrize("path", NODE_FILES, ids=lambda p: str(p.relative_to(CAMERAS)))
def test_node_file_uses_only_what_circuitpython_has(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    pc_only = path.name in PC_ONLY_FILES
    allowed = BOARD_MODULES | (PC_MODULES if pc_only else set())
    unknown = _imports(tree) - allowed
    assert not unknown, f"{path.name} imports {sorted(unknown)}, which CircuitPython does not have"
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        assert not isinstance(node, ast.AnnAssign), f"{where}: variable annotation"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            args += [a for a in (node.args.vararg, node.args.kwarg) if a]
            assert node.returns is None and all(a.annotation is None for a in args), f"{where}: annotations"
        if isinstance(node, ast.ClassDef):
            assert not node.decorator_list, f"{where}: class decorators (dataclass?)"
            assert not {ast.unparse(b) for b in node.bases} & {"ABC", "Enum", "NamedTuple", "Protocol"}, where
        if (not pc_only and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"):
            assert node.attr in ASYNCIO_SUBSET, f"{where}: asyncio.{node.attr} is outside the shared subset"
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            raise AssertionError(f"{where}: from __future__ import")


def test_node_modules_import_on_cpython_without_pc_modules_leaking() -> None:
    # A fresh interpreter: import every board-path module and see what came along.
    code = (
        "import sys\n"
        "for name in ('config', 'frames', 'mjpeg', 'subscriber', 'fanout', 'http', 'presence', 'node'):\n"
        "    __import__('camhub_node.' + name)\n"
        "leaked = sorted(m for m in ('PIL', 'camhub_node.simcam', 'camhub_node.host', 'logging', 'signal')"
        " if m in sys.modules)\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    leaked = set(filter(None, result.stdout.strip().split(",")))
    # CPython's own asyncio imports logging and signal; the node must not add PIL or the host layer.
    assert not leaked & {"PIL", "camhub_node.simcam", "camhub_node.host"}, leaked
