"""``camhub node``: --sim is required, bad settings fail clearly, --from runs a deployed board directory."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import ROOT, RUNTIMES, Process, camhub_cmd, free_port, runtime_args, wait_for_http
from tests.support.waiting import get_json


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(camhub_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**_clean_env(), **(env or {})})


def _clean_env() -> dict[str, str]:
    """This environment without node settings (where CircuitPython's VM is stays: it is not one)."""
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CAMHUB_", "CIRCUITPY_")) or k == "CAMHUB_CIRCUITPY_VM"}


def test_without_sim_it_explains_where_the_firmware_runs() -> None:
    result = run_cli("node", "--id", "x")
    assert result.returncode == 2
    assert "--sim" in result.stderr and "board" in result.stderr


@pytest.mark.parametrize(("args", "env", "key"), [
    (["--fps", "0"], {}, "CAMHUB_FPS"),
    (["--frame-size", "HUGE"], {}, "CAMHUB_FRAME_SIZE"),
    (["--id", "Bad Id!"], {}, "CAMHUB_NODE_ID"),
    ([], {"CAMHUB_MAX_CLIENTS": "lots"}, "CAMHUB_MAX_CLIENTS"),
    ([], {"CAMHUB_TOPIC_PREFIX": "camhub/#"}, "CAMHUB_TOPIC_PREFIX"),
    (["--scene", "party"], {}, "CAMHUB_SIM_SCENE"),
    ([], {"CAMHUB_SIM_PERIOD_S": "3"}, "CAMHUB_SIM_PERIOD_S"),
])
def test_bad_settings_exit_non_zero_naming_the_key(args: list[str], env: dict[str, str], key: str) -> None:
    result = run_cli("node", "--sim", "--http-port", str(free_port()), *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "bad settings" in result.stderr and key in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_settings_file_is_named_and_secrets_are_not_echoed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("CAMHUB_FPS = \n")
    result = run_cli("node", "--sim", "--settings", str(broken))
    assert result.returncode == 2 and str(broken) in result.stderr
    secret = "hunter2-" + "x" * 200
    settings = tmp_path / "settings.toml"
    settings.write_text(f'CAMHUB_MQTT_PASSWORD = "{secret}"\nCAMHUB_HTTP_PORT = {free_port()}\n')
    result = run_cli("node", "--sim", "--settings", str(settings))
    assert result.returncode == 2 and "CAMHUB_MQTT_PASSWORD" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_port_in_use_is_a_clear_error(runtime: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("node", "--sim", "--http-port", str(taken.getsockname()[1]), "--frame-size", "QQVGA",
                         *runtime_args(runtime))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot run" in result.stderr and "in use" in result.stderr, result.stdout + result.stderr


def _deployed_board(tmp_path: Path, port: int, with_py: bool = True) -> Path:
    """What deploy leaves on a board: code.py, lib/ (node package + libraries), settings.toml."""
    board = tmp_path / "CIRCUITPY"
    lib = board / "lib"
    lib.mkdir(parents=True)
    shutil.copy(ROOT / "cameras" / "code.py", board / "code.py")
    (board / "settings.toml").write_text(
        f'CAMHUB_NODE_ID = "deployed"\nCAMHUB_HTTP_PORT = {port}\nCAMHUB_FRAME_SIZE = "QQVGA"\n'
        'CIRCUITPY_WIFI_SSID = "ssid"\n')
    # CircuitPython's asyncio as deploy copies it: it must not shadow CPython's.
    (lib / "asyncio").mkdir()
    (lib / "asyncio" / "__init__.py").write_text('raise ImportError("CircuitPython asyncio loaded on CPython")\n')
    if with_py:
        shutil.copytree(ROOT / "cameras" / "camhub_node", lib / "camhub_node",
                        ignore=shutil.ignore_patterns("__pycache__"))
        init = lib / "camhub_node" / "__init__.py"
        init.write_text(init.read_text().replace('__version__ = "', '__version__ = "deployed-'))
    else:
        for path in list(lib.rglob("*.py")):
            path.with_suffix(".mpy").write_bytes(b"C\x06")
            path.unlink()
        (lib / "camhub_node").mkdir()
        (lib / "camhub_node" / "__init__.mpy").write_bytes(b"C\x06")
    return board


@pytest.mark.parametrize("with_py", [True, False], ids=["py-libraries", "mpy-only"])
def test_from_runs_a_deployed_board_directory(tmp_path: Path, with_py: bool) -> None:
    port = free_port()
    board = _deployed_board(tmp_path, port, with_py)
    proc = Process(camhub_cmd("node", "--sim", "--from", str(board)), env=_clean_env(), name="node-from")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/status", proc=proc.proc)
        status = get_json(f"http://127.0.0.1:{port}/status")
        assert status["id"] == "deployed" and status["frame_size"] == "QQVGA"
        assert status["firmware"].startswith("deployed-") == with_py
    finally:
        assert proc.stop(signal.SIGTERM) == 0
    if not with_py:
        assert "only compiled .mpy" in proc.output()
