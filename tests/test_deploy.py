"""`camhub deploy` against stand-in boards: USB drives (directories with CircuitPython's boot_out.txt)
and the web workflow (tests/support/webworkflow.py, following CircuitPython's docs/workflows.md).

The command runs in-process through the real CLI entry point; the deployed drive of the last test is
started as a node (`camhub node --sim --from DIR`) and must announce itself and stream — but only once
no deploy marker (`camhub-deploying`, left by a deploy that stopped part-way) is on the drive.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from camhub.cli import main
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import ROOT, Mosquitto, Process, camhub_cmd, free_port, running, wait_for_http
from tests.support.webworkflow import WebWorkflowBoard

BOOT_OUT = (  # as CircuitPython writes it at boot: the version line, then the board id
    "Adafruit CircuitPython {version} on 2024-11-20; {board_name} with ESP32S3\n"
    "Board ID:{board_id}\n"
    "UID:F412FA5B0C42\n"
)
MANIFEST = "camhub-manifest.json"
MARKER = "camhub-deploying"


# ---- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    """A copy of the real firmware (code.py + camhub_node/) that a test may change."""
    source = ROOT / "cameras"
    assert (source / "code.py").is_file(), "the node firmware (cameras/code.py) is missing"
    copy = tmp_path / "firmware"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def usb_drive(path: Path, version: str = "9.2.1", board_id: str = "adafruit_esp32s3_camera",
              board_name: str = "Adafruit Camera") -> Path:
    """A board's CIRCUITPY drive as CircuitPython leaves it after boot."""
    path.mkdir(parents=True)
    (path / "boot_out.txt").write_text(BOOT_OUT.format(version=version, board_id=board_id, board_name=board_name))
    return path


def toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def write_fleet(path: Path, boards: list[dict], defaults: dict | None = None) -> Path:
    lines = ["[defaults]", *(f"{k} = {toml_value(v)}" for k, v in (defaults or {}).items())]
    for board in boards:
        lines += ["", "[[board]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in board.items() if k != "settings"]
        if board.get("settings"):
            lines += ["[board.settings]", *(f"{k} = {toml_value(v)}" for k, v in board["settings"].items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def deploy(capsys: pytest.CaptureFixture[str], fleet: Path, firmware: Path, *extra: str) -> tuple[int, str]:
    rc = main(["deploy", str(fleet), "--firmware", str(firmware), "--settings",
               str(ROOT / "settings.toml.example"), *extra])
    return rc, capsys.readouterr().out


def snapshot(drive: Path) -> dict[str, tuple[int, int, str]]:
    """Every file on a drive: (inode, mtime, sha256) — a rewrite changes the inode (temp + rename)."""
    out = {}
    for path in drive.rglob("*"):
        if path.is_file():
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(drive))] = (st.st_ino, st.st_mtime_ns, digest)
    return out


def changed(before: dict, after: dict) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def web_writes(board: WebWorkflowBoard) -> set[str]:
    """Drive paths a deploy changed over the web workflow (temporary names folded into their file)."""
    return {
        path.removeprefix("/fs/").removesuffix(".camhub-tmp")
        for method, path, _ in board.modifications()
        if not path.endswith("/")
    }


def assert_manifest_true(drive: Path) -> dict:
    """The manifest claims only files whose content on the drive it describes."""
    manifest = json.loads((drive / MANIFEST).read_text())
    for path, entry in manifest["files"].items():
        data = (drive / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"manifest lies about {path}"
    return manifest


def firmware_files(firmware: Path) -> dict[str, bytes]:
    files = {"code.py": (firmware / "code.py").read_bytes()}
    for path in (firmware / "camhub_node").rglob("*"):
        if path.is_file():
            files[f"lib/camhub_node/{path.relative_to(firmware / 'camhub_node')}"] = path.read_bytes()
    return files


def failure(out: str, board_id: str) -> str:
    """The summary's line for a failed board."""
    lines = [line for line in out.splitlines() if line.startswith(f"{board_id} failed: ")]
    assert lines, f"{board_id} did not fail:\n{out}"
    return lines[0]


@pytest.fixture
def web_board(tmp_path: Path) -> Iterator[WebWorkflowBoard]:
    with WebWorkflowBoard(tmp_path / "garage-drive", password="garage-pw") as board:
        yield board


def usb_and_web_fleet(tmp_path: Path, web_board: WebWorkflowBoard) -> tuple[Path, Path]:
    """A fleet of two boards without settings: a USB drive ("kitchen", returned) and ``web_board``."""
    kitchen = usb_drive(tmp_path / "kitchen")
    fleet = write_fleet(tmp_path / "fleet.toml", [
        {"id": "kitchen", "target": str(kitchen)},
        {"id": "garage", "target": web_board.url, "password": "garage-pw"},
    ])
    return kitchen, fleet


# ---- tests ---------------------------------------------------------------------------------------


def test_every_board_gets_the_firmware_and_its_own_settings(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen, porch = usb_drive(tmp_path / "kitchen"), usb_drive(tmp_path / "porch")
    fleet = write_fleet(tmp_path / "fleet.toml", [
        {"id": "kitchen", "target": str(kitchen), "settings": {"CAMHUB_NODE_NAME": 'Kitchen "north"'}},
        {"id": "porch", "target": "porch", "settings": {"CAMHUB_FPS": 3}},  # relative to the fleet file
        {"id": "garage", "target": web_board.url, "settings": {"CIRCUITPY_WEB_API_PASSWORD": "garage-pw"}},
    ], defaults={"CAMHUB_FPS": 7, "CAMHUB_MQTT_HOST": "10.1.1.1"})

    rc, out = deploy(capsys, fleet, firmware)

    assert rc == 0, out
    expected = firmware_files(firmware)
    asyncio_dist = metadata.distribution("adafruit-circuitpython-asyncio")
    asyncio_core = Path(str(asyncio_dist.locate_file("asyncio/core.py"))).read_bytes()
    for board_id, drive in (("kitchen", kitchen), ("porch", porch), ("garage", web_board.root)):
        settings = tomllib.loads((drive / "settings.toml").read_text())
        assert settings["CAMHUB_NODE_ID"] == board_id
        assert settings["CAMHUB_MQTT_HOST"] == "10.1.1.1"
        assert settings["CIRCUITPY_WIFI_SSID"] == "your-ssid"  # from the template
        for path, data in expected.items():
            assert (drive / path).read_bytes() == data, f"{board_id}: {path}"
        # The libraries the firmware imports, CircuitPython's asyncio from its distribution (not CPython's).
        assert (drive / "lib/asyncio/core.py").read_bytes() == asyncio_core
        for lib in ("adafruit_httpserver/server.py", "adafruit_minimqtt/adafruit_minimqtt.py",
                    "adafruit_connection_manager.py", "adafruit_ticks.py"):
            assert (drive / "lib" / lib).is_file(), f"{board_id}: lib/{lib}"
        assert not list(drive.rglob("*.camhub-tmp"))
        assert not (drive / MARKER).exists()  # a complete deploy lets the node boot
        assert set(assert_manifest_true(drive)["files"]) >= set(expected)
    assert tomllib.loads((kitchen / "settings.toml").read_text())["CAMHUB_NODE_NAME"] == 'Kitchen "north"'
    assert tomllib.loads((porch / "settings.toml").read_text())["CAMHUB_FPS"] == 3
    assert tomllib.loads((web_board.root / "settings.toml").read_text())["CAMHUB_FPS"] == 7
    assert "garage-pw" not in out
    assert "installed packages (.py)" in out and "adafruit-circuitpython-asyncio" in out


def test_redeploy_writes_nothing_and_a_change_rewrites_only_that_file(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen = usb_drive(tmp_path / "kitchen")
    boards = [
        {"id": "kitchen", "target": str(kitchen), "settings": {"CAMHUB_NODE_NAME": "Kitchen"}},
        {"id": "garage", "target": web_board.url, "password": "garage-pw"},
    ]
    fleet = write_fleet(tmp_path / "fleet.toml", boards)
    assert deploy(capsys, fleet, firmware)[0] == 0

    before = snapshot(kitchen)
    web_board.clear_log()
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 0 and out.count("up to date") >= 2, out
    assert changed(before, snapshot(kitchen)) == set()
    assert web_board.modifications() == []

    # One firmware file changes: only it (and the manifest) is written, on every board.
    mjpeg = firmware / "camhub_node" / "mjpeg.py"
    mjpeg.write_bytes(mjpeg.read_bytes() + b"\n# v2\n")
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 0, out
    after = snapshot(kitchen)
    assert changed(before, after) == {"lib/camhub_node/mjpeg.py", MANIFEST}
    assert web_writes(web_board) == {MARKER, "lib/camhub_node/mjpeg.py", MANIFEST}
    # The marker goes first and is removed last: the board never boots a half-written lib/.
    writes = web_board.modifications()
    assert writes[0][:2] == ("PUT", f"/fs/{MARKER}.camhub-tmp") and writes[-1][:2] == ("DELETE", f"/fs/{MARKER}")
    assert not (web_board.root / MARKER).exists()
    assert (web_board.root / "lib/camhub_node/mjpeg.py").read_bytes() == mjpeg.read_bytes()
    assert_manifest_true(kitchen)
    assert_manifest_true(web_board.root)

    # One board's setting changes: only that board's settings.toml is written.
    boards[0]["settings"]["CAMHUB_NODE_NAME"] = "Kitchen (new)"
    write_fleet(fleet, boards)
    web_board.clear_log()
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 0, out
    assert changed(after, snapshot(kitchen)) == {"settings.toml", MANIFEST}
    assert web_board.modifications() == []


def test_a_truncated_or_deleted_file_on_the_board_is_rewritten(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen, fleet = usb_and_web_fleet(tmp_path, web_board)
    assert deploy(capsys, fleet, firmware)[0] == 0
    wanted = firmware_files(firmware)
    for drive in (kitchen, web_board.root):  # someone edits the drive; the manifest still claims both files
        mjpeg = drive / "lib/camhub_node/mjpeg.py"
        mjpeg.write_bytes(mjpeg.read_bytes()[:100])
        (drive / "lib/camhub_node/fanout.py").unlink()
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 0, out
    for drive in (kitchen, web_board.root):
        for path in ("lib/camhub_node/mjpeg.py", "lib/camhub_node/fanout.py"):
            assert (drive / path).read_bytes() == wanted[path], f"{path} on {drive.name} not restored"
        assert_manifest_true(drive)


def test_a_missing_or_wrong_board_fails_alone_with_its_reason(
    tmp_path: Path, firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = usb_drive(tmp_path / "good")
    not_a_board = tmp_path / "stick"
    not_a_board.mkdir()
    old = usb_drive(tmp_path / "old", version="8.2.10")
    fleet = write_fleet(tmp_path / "fleet.toml", [
        {"id": "missing", "target": str(tmp_path / "unplugged")},
        {"id": "stick", "target": str(not_a_board)},
        {"id": "old", "target": str(old)},
        {"id": "offline", "target": f"http://127.0.0.1:{free_port()}", "password": "x"},
        {"id": "good", "target": str(good)},
    ])

    rc, out = deploy(capsys, fleet, firmware)

    assert rc == 1
    assert (good / "code.py").read_bytes() == (firmware / "code.py").read_bytes()
    assert "missing failed:" in out and "unplugged does not exist: is the board plugged in" in out
    assert "stick failed:" in out and "is not a CircuitPython drive: it has no boot_out.txt" in out
    assert "old failed:" in out and "runs CircuitPython 8.2.10; camhub's firmware needs 9 or newer" in out
    assert "offline failed:" in out and "is unreachable" in out
    assert "good failed" not in out and "1 of 5 board(s) deployed" in out
    assert os.listdir(not_a_board) == [] and os.listdir(old) == ["boot_out.txt"]


def test_web_workflow_refusals_are_named_and_nothing_is_written(
    tmp_path: Path, firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = socket.socket()  # accepts connections (the kernel does), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    with (
        WebWorkflowBoard(tmp_path / "a", password="right-pw") as wrong_pw,
        WebWorkflowBoard(tmp_path / "b", password=None) as no_pw,
        WebWorkflowBoard(tmp_path / "c", password="pw") as usb,
        WebWorkflowBoard(tmp_path / "d", password="pw") as plugged_later,
        WebWorkflowBoard(tmp_path / "e", password="pw", capacity=64 * 1024) as small,
    ):
        usb.usb_mounted = True

        def plug_usb_in(method: str, path: str) -> bool:  # USB takes the drive once the deploy has started
            if method == "PUT":
                plugged_later.usb_mounted = True
            return False

        plugged_later.fail_when = plug_usb_in
        fleet = write_fleet(tmp_path / "fleet.toml", [
            {"id": "wrongpw", "target": wrong_pw.url, "password": "pw-WRONG-123"},
            {"id": "nopw", "target": no_pw.url, "password": "pw"},
            {"id": "usb", "target": usb.url, "password": "pw"},
            {"id": "plugged", "target": plugged_later.url, "password": "pw"},
            {"id": "small", "target": small.url, "password": "pw"},
            {"id": "silent", "target": f"http://127.0.0.1:{silent.getsockname()[1]}", "password": "pw"},
        ])
        rc, out = deploy(capsys, fleet, firmware, "--timeout", "1")
        silent.close()

        assert rc == 1
        assert "wrongpw failed: wrong web-workflow password" in out and "(HTTP 401)" in out
        assert "nopw failed:" in out and "has no CIRCUITPY_WEB_API_PASSWORD set (HTTP 403)" in out
        for board_id in ("usb", "plugged"):
            assert "mounted over USB, so the web workflow is read-only (HTTP 409)" in failure(out, board_id)
        assert "small failed: not enough free space" in out and "nothing was written" in out
        assert "silent failed: web workflow at" in out and "did not answer within 1s" in out
        for board in (wrong_pw, no_pw, usb, small):
            assert board.modifications() == [] or all(status in (401, 403, 409) for *_, status in board.modifications())
            assert not any(board.root.iterdir())
        assert "pw-WRONG-123" not in out and "right-pw" not in out


def test_a_new_web_password_in_the_settings_does_not_lock_the_deploy_out(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    web_board.password = "old-pw-1"
    web_board.reload_password = True
    fleet = write_fleet(tmp_path / "fleet.toml", [{
        "id": "garage", "target": web_board.url, "password": "old-pw-1",
        "settings": {"CIRCUITPY_WEB_API_PASSWORD": "new-pw-2"},
    }])

    rc, out = deploy(capsys, fleet, firmware)

    assert rc == 0, out
    assert web_board.password == "new-pw-2"  # settings.toml went before code.py, and the board reloaded
    assert (web_board.root / "code.py").read_bytes() == (firmware / "code.py").read_bytes()
    assert_manifest_true(web_board.root)
    assert "old-pw-1" not in out and "new-pw-2" not in out


def test_interrupted_deploy_leaves_the_old_code_py(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen = usb_drive(tmp_path / "kitchen")
    boards = [
        {"id": "kitchen", "target": str(kitchen), "settings": {"CAMHUB_FPS": 5}},
        {"id": "garage", "target": web_board.url, "password": "garage-pw", "settings": {"CAMHUB_FPS": 5}},
    ]
    fleet = write_fleet(tmp_path / "fleet.toml", boards)
    assert deploy(capsys, fleet, firmware)[0] == 0
    old_code = (firmware / "code.py").read_bytes()
    old_settings = (kitchen / "settings.toml").read_bytes()

    # A new release: code.py, a package module and the settings all change.
    (firmware / "code.py").write_bytes(old_code + b"\n# v2\n")
    mjpeg = firmware / "camhub_node" / "mjpeg.py"
    mjpeg.write_bytes(mjpeg.read_bytes() + b"\n# v2\n")
    for board in boards:
        board["settings"]["CAMHUB_FPS"] = 9
    write_fleet(fleet, boards)
    # The USB drive fails when settings.toml is written (its temporary name is taken by a directory);
    # the web board loses power while code.py is being sent, and stays off.
    (kitchen / "settings.toml.camhub-tmp").mkdir()
    power = {"off": False}

    def power_cut(method: str, path: str) -> bool:
        power["off"] = power["off"] or (method == "PUT" and path == "/fs/code.py.camhub-tmp")
        return power["off"]

    web_board.fail_when = power_cut

    rc, out = deploy(capsys, fleet, firmware)

    assert rc == 1 and "kitchen failed: writing" in out and "garage failed: lost the connection" in out
    for drive in (kitchen, web_board.root):
        assert (drive / "code.py").read_bytes() == old_code  # the board still boots the old release
        assert (drive / "lib/camhub_node/mjpeg.py").read_bytes() == mjpeg.read_bytes()  # written before
        manifest = assert_manifest_true(drive)
        assert "code.py" not in manifest["files"] or manifest["files"]["code.py"]["sha256"] == \
            hashlib.sha256(old_code).hexdigest()
    assert (kitchen / "settings.toml").read_bytes() == old_settings
    for drive in (kitchen, web_board.root):  # the node waits instead of running the half-new package
        assert (drive / MARKER).read_text().startswith("camhub deploy started ")

    # Once the trouble is gone, the next deploy finishes the job without resending what was verified.
    (kitchen / "settings.toml.camhub-tmp").rmdir()
    web_board.fail_when = None
    web_board.clear_log()
    before = snapshot(kitchen)
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 0, out
    assert changed(before, snapshot(kitchen)) == {"settings.toml", "code.py", MANIFEST, MARKER}
    # The web board lost power before it could record what it had verified: those files go again.
    assert web_writes(web_board) == {MARKER, "lib/camhub_node/mjpeg.py", "settings.toml", "code.py", MANIFEST}
    for drive in (kitchen, web_board.root):
        assert not (drive / MARKER).exists()
        assert (drive / "code.py").read_bytes() == (firmware / "code.py").read_bytes()
        assert tomllib.loads((drive / "settings.toml").read_text())["CAMHUB_FPS"] == 9
        assert_manifest_true(drive)


def test_a_deploy_cut_off_after_its_last_file_only_needs_its_marker_removed(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = write_fleet(tmp_path / "fleet.toml", [{"id": "garage", "target": web_board.url, "password": "garage-pw"}])
    web_board.fail_when = lambda method, path: method == "DELETE" and path == f"/fs/{MARKER}"
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 1 and "garage failed: lost the connection" in out
    assert (web_board.root / MARKER).is_file() and (web_board.root / "code.py").is_file()

    web_board.fail_when = None
    web_board.clear_log()
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 0 and "up to date" in out, out
    assert web_board.modifications() == [("DELETE", f"/fs/{MARKER}", 204)]
    assert not (web_board.root / MARKER).exists()


def test_a_file_that_does_not_read_back_as_sent_is_never_used(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = write_fleet(tmp_path / "fleet.toml", [{"id": "garage", "target": web_board.url, "password": "garage-pw"}])
    web_board.corrupt_when = lambda path: path == "/fs/lib/camhub_node/mjpeg.py.camhub-tmp"

    rc, out = deploy(capsys, fleet, firmware)

    assert rc == 1
    assert "lib/camhub_node/mjpeg.py: the file read back differs from what was sent" in failure(out, "garage")
    assert not (web_board.root / "lib/camhub_node/mjpeg.py").exists()
    assert not (web_board.root / "code.py").exists()  # nothing after the bad file was written
    assert not list(web_board.root.rglob("*.camhub-tmp"))
    assert "lib/camhub_node/mjpeg.py" not in assert_manifest_true(web_board.root)["files"]


def test_dry_run_prints_what_would_be_written_where_and_writes_nothing(
    tmp_path: Path, firmware: Path, web_board: WebWorkflowBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen, fleet = usb_and_web_fleet(tmp_path, web_board)

    rc, out = deploy(capsys, fleet, firmware, "--dry-run")

    assert rc == 0, out
    assert os.listdir(kitchen) == ["boot_out.txt"]
    assert web_board.modifications() == [] and not any(web_board.root.iterdir())
    for path in [MARKER, *firmware_files(firmware)]:
        assert f"write  {path} " in out
        assert str(kitchen / path) in out and f"{web_board.url}/fs/{path}" in out
    assert str(kitchen / "lib/asyncio/core.py") in out and str(kitchen / "settings.toml") in out

    # After a deploy and one change, the dry run names exactly that file.
    assert deploy(capsys, fleet, firmware, "--only", "kitchen")[0] == 0
    (firmware / "code.py").write_bytes((firmware / "code.py").read_bytes() + b"\n# v2\n")
    before = snapshot(kitchen)
    rc, out = deploy(capsys, fleet, firmware, "--dry-run", "--only", "kitchen")
    assert rc == 0 and "garage" not in out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith(("  write  ", "  remove "))] == [
        ["write", MARKER], ["write", "code.py"], ["write", MANIFEST], ["remove", MARKER]]
    assert changed(before, snapshot(kitchen)) == set()


def test_boards_without_a_camera_pin_map_are_warned_about_in_a_dry_run_too(
    tmp_path: Path, firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generic = {"board_id": "espressif_esp32s3_devkitc_1_n16r8", "board_name": "ESP32-S3-DevKitC-1-N16R8"}
    pins = "data=39,40,41,42,12,10,8,4 xclk=45 pclk=5 vsync=6 href=7 sda=1 scl=2"
    with WebWorkflowBoard(tmp_path / "cams3-drive", password="pw", board_id="m5stack_cams3",
                          board_name="M5Stack CamS3") as web:
        fleet = write_fleet(tmp_path / "fleet.toml", [
            {"id": "memento", "target": str(usb_drive(tmp_path / "memento"))},  # board id with a pin map
            {"id": "bare", "target": str(usb_drive(tmp_path / "bare", **generic))},
            {"id": "pinned", "target": str(usb_drive(tmp_path / "pinned", **generic)),
             "settings": {"CAMHUB_CAMERA_PINS": pins}},
            {"id": "typo", "target": str(usb_drive(tmp_path / "typo", **generic)),
             "settings": {"CAMHUB_CAMERA_PINS": pins.replace("href=7", "href=5")}},
            {"id": "cams3", "target": web.url, "password": "pw"},  # the board id from /cp/version.json
        ])
        for extra in (["--dry-run"], []):
            rc, out = deploy(capsys, fleet, firmware, *extra)
            assert rc == 0, out
            summary = out[out.index("camhub deploy"):]
            warned = {line.split()[0]: line for line in summary.splitlines() if line.split()[1:2] == ["warning:"]}
            assert sorted(warned) == ["bare", "cams3", "typo"], out
            assert "no camera pin map for ESP32-S3-DevKitC-1-N16R8" in warned["bare"]
            assert "(espressif_esp32s3_devkitc_1_n16r8)" in warned["bare"]
            assert "no camera pin map for M5Stack CamS3 (m5stack_cams3)" in warned["cams3"]
            assert "settings give no CAMHUB_CAMERA_PINS" in warned["cams3"]
            assert "uses GPIO5 for two signals" in warned["typo"]


def test_fleet_file_mistakes_stop_before_any_board_is_touched(
    tmp_path: Path, firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen = usb_drive(tmp_path / "kitchen")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[[board]]\nid = "kitchen"\ntarget = "{kitchen}"\nfps = 3\n'
                     f'[[board]]\nid = "kitchen"\ntarget = "{tmp_path}/other"\n')
    rc, out = deploy(capsys, fleet, firmware)
    assert rc == 2
    assert "unknown key 'fps'" in out and "duplicate board id 'kitchen'" in out
    assert os.listdir(kitchen) == ["boot_out.txt"]
    rc, out = deploy(capsys, tmp_path / "nowhere.toml", firmware)
    assert rc == 2 and "no such fleet file" in out


def test_unknown_settings_are_listed_by_a_dry_run_and_stop_a_deploy_before_any_board_is_touched(
    tmp_path: Path, firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kitchen, garage = usb_drive(tmp_path / "kitchen"), usb_drive(tmp_path / "garage")
    template = tmp_path / "settings.toml"  # the template every board starts from, with one typo
    template.write_text((ROOT / "settings.toml.example").read_text() + 'CAMHUB_HUB_PASWORD = "x"\n')
    fleet = write_fleet(tmp_path / "fleet.toml", [
        {"id": "kitchen", "target": str(kitchen), "settings": {"CAMHUB_NODE_NAM": "Kitchen"}},
        {"id": "garage", "target": str(garage), "settings": {"CIRCUITPY_WIFI_HOSTNAME": "cam-garage"}},
    ], defaults={"CAMHUB_FPSS": 5, "CAMHUB_FPS": 5})
    expected = [
        "error: unknown setting CAMHUB_HUB_PASWORD in settings.toml — did you mean CAMHUB_HUB_PASSWORD?",
        "error: unknown setting CAMHUB_FPSS in fleet.toml [defaults] — did you mean CAMHUB_FPS?",
        "error: unknown setting CAMHUB_NODE_NAM in fleet.toml, board 'kitchen' settings — did you mean "
        "CAMHUB_NODE_NAME?",
    ]

    def run(*extra: str) -> tuple[int, str]:
        rc = main(["deploy", str(fleet), "--firmware", str(firmware), "--settings", str(template), *extra])
        return rc, capsys.readouterr().out

    rc, out = run("--dry-run")
    assert rc == 2, out
    assert out.splitlines()[:3] == expected  # first, before anything is planned
    assert "kitchen → " in out and "garage → " in out  # the plan is still shown
    assert "a deploy would stop before touching any board: 3 unknown setting(s)" in out
    rc, out = run()
    assert rc == 2
    assert out.splitlines()[:3] == expected and "nothing was written" in out
    assert os.listdir(kitchen) == ["boot_out.txt"] and os.listdir(garage) == ["boot_out.txt"]

    # Keys the firmware being deployed knows are not unknown, even when this camhub does not know them.
    fleet = write_fleet(tmp_path / "fleet.toml", [{"id": "kitchen", "target": str(kitchen),
                                                   "settings": {"CAMHUB_NODE_NAM": "Kitchen"}}])
    template.write_text((ROOT / "settings.toml.example").read_text())
    keys_py = firmware / "camhub_node" / "keys.py"
    keys_py.write_text(keys_py.read_text().replace("KNOWN = (\n", 'KNOWN = (\n    "CAMHUB_NODE_NAM",\n'))
    rc, out = run()
    assert rc == 0, out
    assert "unknown setting" not in out and 'CAMHUB_NODE_NAM = "Kitchen"' in (kitchen / "settings.toml").read_text()


def test_libraries_from_a_bundle_match_each_boards_circuitpython(
    tmp_path: Path, firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stand-in for a downloaded CircuitPython bundle (circup keeps them in one folder): .mpy files
    # with CircuitPython's 'C' header byte; adafruit_minimqtt is deliberately missing.
    lib = tmp_path / "bundles" / "adafruit-circuitpython-bundle-9.x-mpy-20241120" / "lib"
    for name in ("adafruit_ticks.mpy", "adafruit_connection_manager.mpy", "adafruit_httpserver/server.mpy",
                 "adafruit_httpserver/__init__.mpy", "asyncio/core.mpy", "asyncio/__init__.mpy"):
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"C\x06" + name.encode())
    nine, ten = usb_drive(tmp_path / "nine", "9.2.1"), usb_drive(tmp_path / "ten", "10.0.3")
    fleet = write_fleet(tmp_path / "fleet.toml", [
        {"id": "nine", "target": str(nine)}, {"id": "ten", "target": str(ten)},
    ])

    rc, out = deploy(capsys, fleet, firmware, "--bundle", str(tmp_path / "bundles"))

    assert rc == 1
    assert "ten failed: the board runs CircuitPython 10.x but the bundle holds .mpy for 9.x" in out
    assert os.listdir(ten) == ["boot_out.txt"]
    assert (nine / "lib/adafruit_ticks.mpy").read_bytes() == b"C\x06adafruit_ticks.mpy"
    assert (nine / "lib/asyncio/core.mpy").is_file() and not (nine / "lib/asyncio/core.py").exists()
    assert (nine / "lib/adafruit_minimqtt/adafruit_minimqtt.py").is_file()  # not in the bundle: .py
    assert "bundle adafruit-circuitpython-bundle-9.x-mpy-20241120 (.mpy)" in out
    assert "not in the bundle, so .py from installed packages: adafruit_minimqtt" in out

    # Back to .py: the .mpy files camhub put there are removed, nothing else is.
    (nine / "lib" / "mine.py").write_text("# the user's own library\n")
    rc, out = deploy(capsys, fleet, firmware, "--only", "nine")
    assert rc == 0, out
    assert not list(nine.rglob("*.mpy")) and (nine / "lib/adafruit_ticks.py").is_file()
    assert (nine / "lib" / "mine.py").is_file()
    assert_manifest_true(nine)


def test_a_deployed_drive_runs_as_a_node_with_its_own_id(
    tmp_path: Path, firmware: Path, mosquitto: Mosquitto, observer: Observer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Mark this copy of the firmware, to see that the node runs the deployed files, not the installed ones.
    init = firmware / "camhub_node" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "deployed-'))
    porch = usb_drive(tmp_path / "porch")
    http_port = free_port()
    fleet = write_fleet(tmp_path / "fleet.toml", [
        {"id": "porch", "target": str(porch), "settings": {"CAMHUB_NODE_NAME": "Porch", "CAMHUB_HTTP_PORT": http_port}},
    ], defaults={"CAMHUB_MQTT_HOST": "127.0.0.1", "CAMHUB_MQTT_PORT": mosquitto.port, "CAMHUB_FRAME_SIZE": "QVGA",
                 "CAMHUB_FPS": 10})
    assert deploy(capsys, fleet, firmware)[0] == 0
    # As a deploy that stopped part-way leaves it: lib/ may be half new, so the node must not start.
    (porch / MARKER).write_text("camhub deploy started 2026-01-01T00:00:00+00:00, firmware sha256 ab\n")

    node = Process(camhub_cmd("node", "--sim", "--from", str(porch)), name="node-from-drive")
    with running(node):
        deadline = time.monotonic() + 20
        while "a deploy is in progress or was interrupted; waiting" not in node.output():
            assert node.alive() and time.monotonic() < deadline, node.output()
            time.sleep(0.1)
        time.sleep(2)  # time enough to connect and announce, were it not waiting
        assert node.alive() and observer.on("camhub/nodes/porch/#") == [], node.output()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", http_port), timeout=1).close()

        (porch / MARKER).unlink()  # the next deploy finished
        announce = observer.wait_for("camhub/nodes/porch/announce", timeout=20).json()
        assert announce["id"] == "porch" and announce["name"] == "Porch", node.output()
        assert announce["firmware"].startswith("deployed-")
        url = f"http://127.0.0.1:{http_port}"
        wait_for_http(url + "/status", proc=node.proc)
        with StreamReader(url + "/stream", timeout=5) as stream:
            parts = stream.parts(3)
        assert [p.seq for p in parts] == sorted(p.seq for p in parts)
        assert all(p.body.startswith(b"\xff\xd8") for p in parts)
