"""Unknown settings are reported with the key they probably meant (issue #29), from one list of keys.

- The list (``camhub_node.keys.KNOWN``) cannot rot: every key the code names and every key the
  templates document is in it, and every key in it is read somewhere and documented.
- The suggestion, the same function on the board (MicroPython here) and the PC.
- The board: a warning on its serial console for each unknown CAMHUB_* key of its settings.toml.
- Real processes: the hub refuses a settings file with one (exit 2, stderr) and warns about the
  environment; a simulated node, on CPython and on the MicroPython Unix port, warns about its
  environment and streams on.
"""

from __future__ import annotations

import ast
import importlib
import logging
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from camhub.settings import SettingsError, load_settings
from camhub.sim import vm as nodevm
from camhub_node import keys, start, unixport
from tests.support import circuitpython
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import ROOT, RUNTIMES, HubProcess, Mosquitto, SimNode, camhub_cmd, free_port
from tests.test_node_cli import _clean_env

KEY = re.compile(r"(?<![A-Za-z0-9_])(?:CAMHUB|CIRCUITPY)_[A-Z0-9_]*[A-Z0-9]")
# Names that look like settings and are not: the Matroska tag segments.py stores a segment's start
# time under, and how camhub.sim.vm talks to the VM's platform (unixport.VM_KEYS, never settings).
NOT_SETTINGS = {"CAMHUB_START", *unixport.VM_KEYS}
# Read by CircuitPython itself, never by camhub's code (CircuitPython docs/environment.rst).
READ_BY_CIRCUITPYTHON = {"CIRCUITPY_WEB_API_PORT"}
TEMPLATE_KEY = re.compile(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node_ in ast.walk(tree):
        if isinstance(node_, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node_.body:
            first = node_.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def keys_named_in_code() -> dict[str, str]:
    """Every settings-like name in a string of the node's and the hub's code (docstrings aside,
    where examples of misspellings live): ``{name: first file naming it}``."""
    named: dict[str, str] = {}
    for path in sorted([*(ROOT / "cameras").rglob("*.py"), *(ROOT / "src").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _docstrings(tree)
        for node_ in ast.walk(tree):
            if isinstance(node_, ast.Constant) and isinstance(node_.value, str) and id(node_) not in skip:
                for name in KEY.findall(node_.value):
                    named.setdefault(name, str(path.relative_to(ROOT)))
    return named


def template_keys() -> set[str]:
    """The keys settings.toml.example sets or shows (``KEY =`` and ``# KEY =`` lines)."""
    return set(TEMPLATE_KEY.findall((ROOT / "settings.toml.example").read_text(encoding="utf-8")))


# ---- the list ------------------------------------------------------------------------------------


def test_the_list_is_a_tuple_of_distinct_key_names() -> None:
    assert isinstance(keys.KNOWN, tuple) and all(isinstance(k, str) for k in keys.KNOWN)
    assert len(set(keys.KNOWN)) == len(keys.KNOWN)
    assert all(KEY.fullmatch(k) for k in keys.KNOWN)


def test_every_key_the_code_names_is_in_the_list() -> None:
    named = keys_named_in_code()
    assert "CAMHUB_HUB_PASSWORD" in named and "CAMHUB_FPS" in named and "CIRCUITPY_WIFI_SSID" in named  # the scan works
    missing = {k: where for k, where in named.items() if k not in keys.KNOWN and k not in NOT_SETTINGS}
    assert not missing, f"keys the code names but camhub_node/keys.py does not list: {missing}"


def test_every_key_the_templates_document_is_in_the_list() -> None:
    documented = template_keys()
    assert {"CIRCUITPY_WIFI_SSID", "CAMHUB_NODE_ID", "CAMHUB_CAMERA_PINS"} <= documented  # set and commented keys
    fleet = tomllib.loads((ROOT / "fleet.toml.example").read_text(encoding="utf-8"))
    for board in fleet["board"]:
        documented |= set(board.get("settings", {}))
    documented |= set(fleet["defaults"])
    assert not documented - set(keys.KNOWN), "the templates document keys camhub_node/keys.py does not list"


def test_every_listed_key_is_read_and_documented() -> None:
    unread = set(keys.KNOWN) - set(keys_named_in_code()) - READ_BY_CIRCUITPYTHON
    assert not unread, f"listed but read by nothing: {sorted(unread)}"
    undocumented = set(keys.KNOWN) - template_keys()
    assert not undocumented, f"listed but not in settings.toml.example: {sorted(undocumented)}"


def test_deploy_also_knows_the_keys_of_the_firmware_it_deploys(tmp_path: Path) -> None:
    from camhub.deploy.render import known_keys

    assert known_keys(ROOT / "cameras" / "camhub_node") == keys.KNOWN
    newer = tmp_path / "camhub_node"
    newer.mkdir()
    source = (ROOT / "cameras" / "camhub_node" / "keys.py").read_text()
    (newer / "keys.py").write_text(source.replace('KNOWN = (\n', 'KNOWN = (\n    "CAMHUB_SOMETHING_NEW",\n'))
    assert known_keys(newer) == (*keys.KNOWN, "CAMHUB_SOMETHING_NEW")
    assert known_keys(tmp_path / "older") == keys.KNOWN  # a firmware without the list: camhub's own


# ---- the suggestion --------------------------------------------------------------------------------

TYPOS = {
    "CAMHUB_HUB_PASWORD": "CAMHUB_HUB_PASSWORD",  # a letter left out
    "CAMHUB_FPSS": "CAMHUB_FPS",  # one too many
    "CAMHUB_FSP": "CAMHUB_FPS",  # two swapped
    "camhub_fps": "CAMHUB_FPS",  # the wrong case: os.getenv would not read it
    "CAMHUB_FRAMESIZE": "CAMHUB_FRAME_SIZE",
    "CAMHUB_MOTION_TRESHOLD": "CAMHUB_MOTION_THRESHOLD",
    "CAMHUB_QUALITY": "CAMHUB_JPEG_QUALITY",  # a word left out
    "CAMHUB_MQTT_PASS": "CAMHUB_MQTT_PASSWORD",  # cut short (not CAMHUB_MQTT_HOST, fewer edits away)
    "CAMHUB_WIFI_SSID": "CIRCUITPY_WIFI_SSID",  # the board's own key under camhub's prefix
    "CAMHUB_WEB_API_PASSWORD": "CIRCUITPY_WEB_API_PASSWORD",
    "CAMHUB_FOO": None,  # nothing is close: no guess
    "CAMHUB_X": None,
}


@pytest.mark.parametrize(("typo", "meant"), TYPOS.items())
def test_a_misspelt_key_gets_the_key_it_probably_meant(typo: str, meant: str | None) -> None:
    assert keys.unknown([typo, "CAMHUB_FPS", "CIRCUITPY_WIFI_SSD", "HOME"]) == [(typo, meant)]


def test_the_nearest_key_rules() -> None:
    # the key's own family before the other's, at equal likeness
    assert keys.nearest("CAMHUB_WIFI_SID", ("CIRCUITPY_WIFI_SSID", "CAMHUB_WIFI_SSID")) == "CAMHUB_WIFI_SSID"
    assert keys.nearest("CAMHUB_ABCD", ("CAMHUB_ABCX", "CAMHUB_ABCY")) == "CAMHUB_ABCX"  # then the first listed
    assert keys.nearest("CAMHUB_ABCDE", ("CAMHUB_ABCXY",)) == "CAMHUB_ABCXY"  # 2 * 3 / 10 = 0.6: close
    assert keys.nearest("CAMHUB_ABCDEF", ("CAMHUB_ABCXYZ",)) is None  # 2 * 3 / 12 = 0.5: not
    # another list (deploy's: the firmware's own keys too) for the suggestion as well
    assert keys.unknown(["CAMHUB_FPS_MAXX"], ("CAMHUB_FPS_MAX",)) == [("CAMHUB_FPS_MAXX", "CAMHUB_FPS_MAX")]


def test_the_board_code_suggests_the_same_on_micropython(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("\n".join([
        "# a comment = not a key", "# CAMHUB_WATCHDOG_S = 30", "", 'CIRCUITPY_WIFI_SSID = "home"', "CAMHUB_FPS=5",
        '  CAMHUB_CAMERA_PINS = "data=11,9,8,10,12,18,17,16 xclk=15"', "= 5", "X=1",
        *(f'{t} = "x"' for t in TYPOS), "[table]", 'CAMHUB_AFTER_A_TABLE = "os.getenv cannot read this"']) + "\n")
    # the keys of KEY = value lines of the root table: no comments, nothing after a [table]
    assert keys.file_keys(str(settings)) == ["CIRCUITPY_WIFI_SSID", "CAMHUB_FPS", "CAMHUB_CAMERA_PINS", "X",
                                             *TYPOS]
    expected = keys.unknown(keys.file_keys(str(settings)))
    assert [name for name, _ in expected] == list(TYPOS)
    code = f"from camhub_node import keys; print(repr(keys.unknown(keys.file_keys({str(settings)!r}))))"
    binary = nodevm.find_micropython()
    assert binary is not None, nodevm.MISSING
    done = subprocess.run(nodevm.vm_argv(binary, 256 * 1024, [ROOT / "cameras"], code), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ast.literal_eval(done.stdout.strip()) == expected


# ---- the board ---------------------------------------------------------------------------------------


def test_a_board_warns_on_its_console_about_each_unknown_key_and_starts(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    circuitpython.install(monkeypatch, "adafruit_esp32s3_camera")
    board = importlib.import_module("camhub_node.board")
    settings = tmp_path / "settings.toml"  # the drive's /settings.toml, which os.getenv reads
    settings.write_text('CIRCUITPY_WIFI_SSID = "home"\nCAMHUB_FPSS = 5\nCAMHUB_NODE_ID = "garage"\n'
                        'CIRCUITPY_BLE_NAME = "cam"\ncamhub_jpeg_quality = 20\n')
    monkeypatch.setattr(board, "SETTINGS_FILE", str(settings))
    platform = board.BoardPlatform()
    assert start.warn_unknown_settings(platform) == [("CAMHUB_FPSS", "CAMHUB_FPS"),
                                                    ("camhub_jpeg_quality", "CAMHUB_JPEG_QUALITY")]
    console = capsys.readouterr().out
    assert console.splitlines() == [
        "camhub: warning: unknown setting CAMHUB_FPSS in settings.toml — did you mean CAMHUB_FPS?",
        "camhub: warning: unknown setting camhub_jpeg_quality in settings.toml — did you mean CAMHUB_JPEG_QUALITY?",
    ]
    settings.write_text('CAMHUB_FPS = 5\nCIRCUITPY_WEB_API_PORT = 8081\n')
    assert start.warn_unknown_settings(platform) == [] and capsys.readouterr().out == ""
    monkeypatch.setattr(board, "SETTINGS_FILE", str(tmp_path / "missing.toml"))
    assert start.warn_unknown_settings(platform) == []  # no settings.toml: nothing to say


# ---- the hub and its settings file -----------------------------------------------------------------


def test_a_settings_file_with_an_unknown_key_is_refused_and_the_environment_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('CAMHUB_HUB_PASWORD = "x"\nCIRCUITPY_WIFI_SSID = "home"\nCAMHUB_FPS = 5\n')
    with pytest.raises(SettingsError) as refused:
        load_settings(settings, {})
    assert str(refused.value) == (f"{settings}: unknown setting CAMHUB_HUB_PASWORD — did you mean "
                                  "CAMHUB_HUB_PASSWORD?")
    settings.write_text('CAMHUB_HUB_PASWORD = "x"\nCAMHUB_FPSS = 5\n')
    with pytest.raises(SettingsError, match=r"2 unknown settings.*\n  .*CAMHUB_HUB_PASSWORD\?\n  .*CAMHUB_FPS\?$"):
        load_settings(settings, {})
    settings.write_text('CAMHUB_HUB_PASSWORD = "x"\n')
    with caplog.at_level(logging.WARNING, logger="camhub.settings"):
        values = load_settings(settings, {"CAMHUB_FPSS": "5", "CAMHUB_OTHER_TOOL": "1", "CAMHUB_FPS": "7"})
    assert values == {"CAMHUB_HUB_PASSWORD": "x", "CAMHUB_FPSS": "5", "CAMHUB_OTHER_TOOL": "1", "CAMHUB_FPS": "7"}
    assert [r.getMessage() for r in caplog.records] == [
        "unknown setting CAMHUB_FPSS in the environment — did you mean CAMHUB_FPS?",
        "unknown setting CAMHUB_OTHER_TOOL in the environment (no known setting is close: settings.toml.example "
        "lists them all)",
        keys.ENVIRONMENT_NOTE,
    ]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(camhub_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=_clean_env())


def _unknown_in(output: str) -> list[str]:
    """The names of the unknown-setting lines in a process's output."""
    return re.findall(r"unknown setting (\S+)", output)


def _unknown_here() -> set[str]:
    """Unknown CAMHUB_* variables this test run's own environment already has (a CI's, say)."""
    return {name for name, _ in keys.unknown(os.environ)}


def test_the_hub_refuses_a_misspelt_key_in_its_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('CIRCUITPY_WIFI_SSID = "home"\nCAMHUB_HUB_PASWORD = "secret-pw"\n')
    # On loopback the hub would run open, without the password its owner believes is set.
    result = _run("hub", "--settings", str(settings), "--host", "127.0.0.1", "--port", str(free_port()),
                  "--state-dir", str(tmp_path / "state"), timeout=20)
    assert result.returncode == 2
    assert result.stderr == (f"camhub hub: {settings}: unknown setting CAMHUB_HUB_PASWORD — did you mean "
                             "CAMHUB_HUB_PASSWORD?\n")
    assert "secret-pw" not in result.stderr + result.stdout


def test_the_hub_takes_the_whole_template_and_warns_about_the_environment_once(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    # Every key of the template (board, node and hub keys) is known: only the addresses change.
    template = (ROOT / "settings.toml.example").read_text(encoding="utf-8")
    settings = tmp_path / "settings.toml"
    settings.write_text(template.replace('CAMHUB_MQTT_HOST = "192.168.1.10"', 'CAMHUB_MQTT_HOST = "127.0.0.1"')
                        .replace("CAMHUB_MQTT_PORT = 1883", f"CAMHUB_MQTT_PORT = {mosquitto.port}"))
    hub = HubProcess(None, tmp_path / "state", extra=["--settings", str(settings)],
                     env={"CAMHUB_FPSS": "5", "CAMHUB_HUB_PASWORD": "x"})
    try:
        hub.wait_ready()
        output = hub.output()
    finally:
        hub.stop()
    assert "unknown setting CAMHUB_FPSS in the environment — did you mean CAMHUB_FPS?" in output
    assert "unknown setting CAMHUB_HUB_PASWORD in the environment — did you mean CAMHUB_HUB_PASSWORD?" in output
    assert output.count(keys.ENVIRONMENT_NOTE) == 1
    assert set(_unknown_in(output)) - _unknown_here() == {"CAMHUB_FPSS", "CAMHUB_HUB_PASWORD"}  # none of the template


# ---- the simulated node --------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_simulated_node_warns_about_its_environment_and_streams(runtime: str) -> None:
    sim = SimNode("typos", None, fps=10, frame_size="QQVGA", runtime=runtime,
                  env={"CAMHUB_FPSS": "5", "CAMHUB_NODEID": "x", "CAMHUB_JPEG_QUALITY": "20"})
    try:
        sim.wait_ready(timeout=30)
        with StreamReader(sim.url + "/stream") as reader:
            assert len(reader.parts(5)) == 5
    finally:
        sim.stop()
    output = sim.output()
    assert output.count("unknown setting CAMHUB_FPSS in the environment — did you mean CAMHUB_FPS?") == 1
    assert output.count("unknown setting CAMHUB_NODEID in the environment — did you mean CAMHUB_NODE_ID?") == 1
    assert output.count(keys.ENVIRONMENT_NOTE) == 1
    # known keys (the flags' too) and other variables: nothing; each unknown one once
    assert sorted(set(_unknown_in(output)) - _unknown_here()) == ["CAMHUB_FPSS", "CAMHUB_NODEID"]
    assert len(_unknown_in(output)) == len(set(_unknown_in(output)))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_simulated_node_refuses_a_misspelt_key_in_its_settings_file(tmp_path: Path, runtime: str) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f"CAMHUB_FPSS = 5\nCAMHUB_HTTP_PORT = {free_port()}\n")
    result = _run("node", "--sim", "--settings", str(settings), "--runtime", runtime, timeout=20)
    assert result.returncode == 2
    assert result.stderr == (f"camhub node: bad settings: {settings}: unknown setting CAMHUB_FPSS — did you mean "
                             "CAMHUB_FPS?\n")

