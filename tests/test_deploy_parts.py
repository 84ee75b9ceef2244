"""The pieces of `camhub deploy` that need no board: the fleet file, settings.toml, the library set."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camhub.deploy.bundle import (
    BoardFile,
    BundleError,
    bundles_in,
    choose_bundle,
    find_firmware,
    imported_modules,
    resolve_libraries,
)
from camhub.deploy.fleet import FleetError, parse_fleet
from camhub.deploy.manifest import MARKER_PATH, Entry, Manifest, make_plan
from camhub.deploy.render import Template, format_value, load_template, render_settings
from tests.support.procs import ROOT

FLEET = Path("/fleets/fleet.toml")


def fleet_error(text: str) -> str:
    with pytest.raises(FleetError) as info:
        parse_fleet(text, FLEET)
    return str(info.value)


# ---- fleet file ----------------------------------------------------------------------------------


def test_fleet_file_parses_boards_defaults_and_targets() -> None:
    fleet = parse_fleet(
        """
        [defaults]
        CAMHUB_FPS = 10
        [[board]]
        id = "kitchen"
        target = "drives/kitchen"
        [board.settings]
        CAMHUB_NODE_NAME = "Kitchen"
        [[board]]
        id = "garage"
        target = "http://cam-garage.local"
        password = "s3cret"
        """,
        FLEET,
    )
    kitchen, garage = fleet.boards
    assert fleet.defaults == {"CAMHUB_FPS": 10}
    assert kitchen.target == "/fleets/drives/kitchen"  # relative to the fleet file
    assert kitchen.settings == {"CAMHUB_NODE_NAME": "Kitchen"}
    assert garage.target == "http://cam-garage.local" and garage.password == "s3cret"
    assert "s3cret" not in repr(garage)  # never printed by accident
    assert [b.id for b in fleet.select(["garage"])] == ["garage"]
    with pytest.raises(FleetError, match="--only names no board 'attic'"):
        fleet.select(["attic"])


def test_fleet_file_problems_are_all_reported_by_name() -> None:
    message = fleet_error(
        """
        colour = "blue"
        [defaults]
        CAMHUB_FPS = 1.5
        [[board]]
        id = "kitchen"
        target = "/media/a"
        tagret = "typo"
        [[board]]
        id = "kitchen"
        target = "/media/b"
        [[board]]
        id = "Front Door"
        target = "/media/c"
        [[board]]
        id = "porch"
        target = "/media/a"
        [[board]]
        id = "shed"
        target = "http://:pw@shed.local"
        [[board]]
        id = "attic"
        target = "/media/d"
        [board.settings]
        CAMHUB_NODE_ID = "other"
        ENABLED = true
        """
    )
    assert "unknown top-level key 'colour'" in message
    assert "[defaults]: CAMHUB_FPS must be a string or an integer" in message
    assert "board 'kitchen': unknown key 'tagret'" in message
    assert "duplicate board id 'kitchen' (boards #1 and #2)" in message
    assert "id 'Front Door' is not a slug" in message
    assert "board 'porch': target '/media/a' is already used by board 'kitchen'" in message
    assert "board 'shed': put the web-workflow password in password" in message
    assert "board 'attic' settings: CAMHUB_NODE_ID comes from the board's id" in message
    assert "board 'attic' settings: ENABLED must be a string or an integer" in message
    assert "pw@" not in message


def test_fleet_file_needs_boards_and_valid_toml() -> None:
    assert "no boards" in fleet_error("[defaults]\nX = 1\n")
    assert "not valid TOML" in fleet_error("[[board]\n")
    assert "missing target" in fleet_error('[[board]]\nid = "a"\n')
    assert "missing id" in fleet_error('[[board]]\ntarget = "/x"\n')


# ---- settings.toml -------------------------------------------------------------------------------


def test_rendered_settings_keep_the_template_and_override_in_order(tmp_path: Path) -> None:
    template = load_template(ROOT / "settings.toml.example")
    rendered = render_settings(
        template, {"CAMHUB_FPS": 5, "CAMHUB_MQTT_HOST": "10.0.0.2"},
        {"CAMHUB_FPS": 15, "CAMHUB_NODE_NAME": "Küche \"vorne\"", "CIRCUITPY_WIFI_HOSTNAME": "cam-k"},
        "kitchen", "fleet.toml",
    ).decode()
    values = tomllib.loads(rendered)
    assert values["CAMHUB_NODE_ID"] == "kitchen"
    assert values["CAMHUB_FPS"] == 15  # board beats defaults, and stays an integer
    assert values["CAMHUB_MQTT_HOST"] == "10.0.0.2"
    assert values["CAMHUB_NODE_NAME"] == 'Küche "vorne"'
    assert values["CIRCUITPY_WEB_API_PORT"] == 80  # the supervisor reads it as an integer
    assert values["CIRCUITPY_WIFI_HOSTNAME"] == "cam-k"  # not in the template: appended
    assert "# Without a password the web workflow" in rendered  # the template's comments survive
    assert all(line.startswith("#") or " = " in line or not line for line in rendered.splitlines())


def test_template_that_circuitpython_cannot_read_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "settings.toml"
    bad.write_text("[wifi]\nSSID = 'x'\n")
    with pytest.raises(ValueError, match="flat KEY = value"):
        load_template(bad)
    bad.write_text('KEY = """two\nlines"""\n')
    with pytest.raises(ValueError, match="single-line KEY = value"):
        render_settings(load_template(bad), {}, {}, "a")


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40))
def test_any_string_value_reads_back_unchanged(value: str) -> None:
    rendered = render_settings(Template("t", (), {}), {}, {"VALUE": value}, "node")
    assert tomllib.loads(rendered.decode())["VALUE"] == value
    line = format_value(value)
    assert "\n" not in line and line.startswith('"') and line.endswith('"')


# ---- the library set -----------------------------------------------------------------------------


def test_import_scan_separates_board_imports_from_pc_and_typing_ones() -> None:
    source = """
import sys
import adafruit_ticks
from adafruit_httpserver import Server
if sys.implementation.name != "circuitpython":
    from circuitpython_typing import ReadableBuffer
try:
    from typing import List
except ImportError:
    pass
if TYPE_CHECKING:
    import PIL
def later():
    import json
"""
    required, optional = imported_modules(source)
    assert required == {"sys", "adafruit_ticks", "adafruit_httpserver", "json"}
    assert optional == {"typing"}


def test_firmware_libraries_come_from_the_installed_distributions() -> None:
    libraries, skipped = resolve_libraries(find_firmware(None))
    by_module = {lib.module: lib for lib in libraries}
    needed = {"adafruit_httpserver", "adafruit_minimqtt", "adafruit_connection_manager", "adafruit_ticks", "asyncio"}
    assert needed <= set(by_module)
    # CircuitPython's asyncio, from its distribution's RECORD (CPython's stdlib one would shadow an import).
    asyncio_lib = by_module["asyncio"]
    assert asyncio_lib.dist == "adafruit-circuitpython-asyncio"
    assert {"asyncio/core.py", "asyncio/funcs.py"} <= {rel for rel, _ in asyncio_lib.files}
    assert all("site-packages" in str(path) for _, path in asyncio_lib.files)
    # Type-checking helpers, PC-only and built-in modules are not copied to a board.
    assert not {"circuitpython_typing", "PIL", "board", "wifi", "socketpool", "time"} & set(by_module)
    assert "wifi" in skipped or "socketpool" in skipped or "time" in skipped


def test_bundle_choice_follows_the_boards_major_version(tmp_path: Path) -> None:
    for name in ("adafruit-circuitpython-bundle-9.x-mpy-20240101", "adafruit-circuitpython-bundle-9.x-mpy-20241120",
                 "adafruit-circuitpython-bundle-10.x-mpy-20241120"):
        (tmp_path / "circup" / name / "lib").mkdir(parents=True)
    bundles = bundles_in(tmp_path / "circup")
    assert choose_bundle(bundles, 9).name.endswith("9.x-mpy-20241120")  # the newest one
    assert choose_bundle(bundles, 10).name.endswith("10.x-mpy-20241120")
    with pytest.raises(BundleError, match="runs CircuitPython 11.x but the bundle holds .mpy for 10.x, 9.x"):
        choose_bundle(bundles, 11)
    with pytest.raises(BundleError, match="no CircuitPython library bundle here"):
        bundles_in((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_manifest_from_a_board_is_distrusted() -> None:
    manifest, warning = Manifest.parse(
        b'{"format": 1, "files": {"lib/a.py": {"sha256": "ab", "size": 1},'
        b' "../../etc/passwd": {"sha256": "cd", "size": 2}, "/boot.py": {"sha256": "ef", "size": 3}}}'
    )
    assert set(manifest.files) == {"lib/a.py"} and warning == "manifest names 2 unsafe path(s); ignored"
    manifest, warning = Manifest.parse(b"\x00not json")
    assert manifest.files == {} and "every file is rewritten" in (warning or "")


def test_plan_rewrites_what_differs_or_is_missing_and_removes_only_stale_files_present() -> None:
    same, edited, truncated, deleted, new = (BoardFile(f"lib/{n}.py", n.encode() * 10)
                                             for n in ("same", "edited", "truncated", "deleted", "new"))
    manifest = Manifest({f.path: Entry(f.sha256, f.size) for f in (same, truncated, deleted)})
    manifest.files[edited.path] = Entry("0" * 64, edited.size)  # deployed with other content
    manifest.files["lib/old.py"] = Entry("1" * 64, 5)  # no longer wanted, still on the board
    manifest.files["lib/gone.py"] = Entry("2" * 64, 5)  # no longer wanted, already removed
    present = {same.path: same.size, edited.path: edited.size, truncated.path: truncated.size - 1,
               "lib/old.py": 5}
    plan = make_plan([same, edited, truncated, deleted, new], manifest, present)
    assert [f.path for f in plan.write] == [edited.path, truncated.path, deleted.path, new.path]
    assert [f.path for f in plan.unchanged] == [same.path]
    assert plan.stale == ["lib/old.py"] and plan.changes and not plan.marker_left
    assert plan.bytes_to_write == sum(f.size for f in plan.write)
    idle = make_plan([same], Manifest({same.path: Entry(same.sha256, same.size)}), {same.path: same.size})
    assert not idle.changes and idle.bytes_to_write == 0
    assert make_plan([same], manifest, {**present, MARKER_PATH: 10}).marker_left


def test_the_manifest_reads_back_what_was_written_through_every_change() -> None:
    a, b = BoardFile("lib/a.py", b"alpha"), BoardFile("code.py", b"print(1)\n")
    manifest = Manifest({}, "adafruit_camera_esp32s3", "9.x-20241120").with_files([a, b])
    for changed in (manifest, manifest.without([a.path]), manifest.without([]).with_files([a])):
        again, warning = Manifest.parse(changed.to_bytes())
        assert warning is None and again == changed  # files, board and library set all kept
    assert set(manifest.without([a.path]).files) == {b.path}
    assert Manifest.parse(manifest.to_bytes())[0].files[a.path] == Entry(a.sha256, 5)
    newer, warning = Manifest.parse(b'{"format": 2, "files": {"lib/a.py": {"sha256": "ab", "size": 1}}}')
    assert newer.files == {} and warning == "manifest format 2 is not 1: every file is rewritten"


def test_the_shipped_fleet_example_is_a_valid_fleet() -> None:
    fleet = parse_fleet((ROOT / "fleet.toml.example").read_text(), ROOT / "fleet.toml.example")
    assert [b.id for b in fleet.boards] == ["kitchen", "garage"]
    assert fleet.boards[1].target.startswith("http://") and fleet.boards[1].settings["CAMHUB_FPS"] == 5
