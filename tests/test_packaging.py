"""camhub installed like any Python tool: its wheel, in a fresh venv, from a folder with nothing of camhub.

The wheel is built from a copy of this tree and installed once per run (pip's cache makes the
dependencies quick); the commands then run from an empty folder with no source tree on any path:
`camhub demo` must serve the dashboard and every asset it references, `camhub deploy` must find the
node firmware in the installed package. The editable install (the one the other tests use) must
read the same files from the tree.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from camhub.deploy.bundle import find_firmware
from camhub.resources import shipped
from tests.support.procs import ROOT, Process, free_port, wait_for_http
from tests.support.waiting import get_json, wait_until
from tests.test_deploy import usb_drive

# Building the wheel and installing it with its dependencies into a fresh venv took over the suite's 120 s
# on a loaded machine (the first test pays for it in its setup); the tests themselves are quick.
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(600)]
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "cameras/camhub_node/__init__.py").read_text())[1]


def _tracked(under: str) -> list[str]:
    """Files git tracks (or would: untracked, not ignored) below ``under``, as in the working tree."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", under], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if (ROOT / line).exists()]


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Installed:
    """camhub's wheel installed into a fresh venv; ``cmd`` runs its ``camhub``."""

    def __init__(self, base: Path) -> None:
        tree = base / "tree"  # a copy: an in-tree build would leave build/ behind, and stale files in it
        for rel in _tracked("."):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            src = ROOT / rel
            if src.is_symlink():
                (tree / rel).symlink_to(src.readlink())
            else:
                (tree / rel).write_bytes(src.read_bytes())
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", base / "dist", tree)
        self.wheel = next((base / "dist").glob("camhub-*.whl"))
        self.venv = base / "venv"
        # no pip of its own (ensurepip is slow): this pip installs into it; its cache serves the dependencies
        _run(sys.executable, "-m", "venv", "--without-pip", self.venv)
        _run(sys.executable, "-m", "pip", "--python", self.venv / "bin/python", "install", "--quiet", "--no-compile",
             self.wheel)
        self.camhub = self.venv / "bin/camhub"

    def cmd(self, *args: str) -> list[str]:
        return [str(self.camhub), *args]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _referenced(url: str, body: str, content_type: str) -> set[str]:
    """Same-origin URLs a page, script or style sheet loads: /static/ links, JS imports, CSS url()."""
    if "html" in content_type:
        found = re.findall(r'(?:src|href)="(/static/[^"]+)"', body)
    elif "javascript" in content_type:
        found = re.findall(r"""(?:\bfrom|\bimport\(?)\s*['"]([./][^'"]+)['"]""", body)
    elif "css" in content_type:
        found = [u.strip("'\"") for u in re.findall(r"url\(([^)]+)\)", body) if not u.strip("'\"").startswith("data:")]
    else:
        found = []
    return {urljoin(url, f) for f in found}


def _crawl(start: str) -> dict[str, int]:
    """Every asset reachable from ``start``: its path and size as served."""
    seen: dict[str, int] = {}
    queue = [start]
    while queue:
        url = queue.pop()
        if urlsplit(url).path in seen:
            continue
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200, url
            body = resp.read()
            content_type = resp.headers.get("Content-Type", "")
        seen[urlsplit(url).path] = len(body)
        queue += sorted(_referenced(url, body.decode(errors="replace"), content_type))
    return seen


def test_the_wheel_carries_the_dashboard_the_firmware_and_the_templates(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    wanted = {f"camhub/shipped/web/{Path(p).name}" for p in _tracked("web")}
    wanted |= {f"camhub_node/{Path(p).relative_to('cameras/camhub_node')}" for p in _tracked("cameras/camhub_node")}
    wanted |= {"camhub/shipped/code.py", "camhub/shipped/settings.toml.example", "camhub/shipped/fleet.toml.example"}
    assert wanted - names == set()
    assert installed.wheel.name == f"camhub-{VERSION}-py3-none-any.whl"


def test_installed_demo_serves_the_dashboard_and_every_asset(installed: Installed, empty: Path) -> None:
    where = _run(installed.venv / "bin/python", "-c", "import camhub, camhub_node; print(camhub.__file__, "
                 "camhub_node.__file__)", cwd=empty)
    assert str(ROOT) not in where and str(installed.venv) in where  # the copy in the venv, not this tree
    assert _run(*installed.cmd("--version"), cwd=empty).strip() == f"camhub {VERSION}"

    port, mqtt_port = free_port(), free_port()
    demo = Process(installed.cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "1",
                                 "--fps", "5", "--frame-size", "QQVGA"), name="installed-demo", cwd=empty)
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for_http(base + "healthz", timeout=30, proc=demo.proc)
        assets = _crawl(base)
        assert {"/", "/static/app.js", "/static/style.css"} <= set(assets), assets
        assert all(size > 0 for size in assets.values()), assets
        assert "camhub" in urllib.request.urlopen(base, timeout=10).read().decode()
        assert get_json(base + "api/hub")["version"] == VERSION  # the dashboard's footer shows it
        camera = wait_until(lambda: get_json(base + "api/cameras/front-door"), timeout=30, what="the demo camera")
        assert camera["announce"]["firmware"] == VERSION, camera
    finally:
        demo.stop()
        demo.kill()
    assert "dashboard files" not in demo.output()


def test_installed_deploy_finds_the_firmware_in_the_package(installed: Installed, empty: Path) -> None:
    (empty / "settings.toml").write_text(_run(*installed.cmd("example", "settings"), cwd=empty))
    drive = usb_drive(empty.parent / "CIRCUITPY")
    (empty / "fleet.toml").write_text(f'[[board]]\nid = "porch"\ntarget = "{drive}"\n')
    out = _run(*installed.cmd("deploy", "fleet.toml"), cwd=empty)
    assert "porch" in out
    assert (drive / "code.py").read_bytes() == (ROOT / "cameras/code.py").read_bytes()
    for rel in _tracked("cameras/camhub_node"):
        on_board = drive / "lib" / Path(rel).relative_to("cameras")
        assert on_board.read_bytes() == (ROOT / rel).read_bytes(), rel
    assert (drive / "lib/adafruit_minimqtt").is_dir()  # and the libraries, from the venv's distributions
    settings = tomllib.loads((drive / "settings.toml").read_text())
    assert settings["CAMHUB_NODE_ID"] == "porch"


def test_the_editable_install_reads_the_tree() -> None:
    """The tests' own install: dashboard and firmware are the tree's files, edits show at once."""
    assert shipped("web").resolve() == ROOT / "web"
    assert (shipped("web") / "index.html").read_bytes() == (ROOT / "web/index.html").read_bytes()
    firmware = find_firmware(None)
    assert firmware.code_py == ROOT / "cameras/code.py"
    assert firmware.package == ROOT / "cameras/camhub_node"
    assert shipped("settings.toml.example").read_bytes() == (ROOT / "settings.toml.example").read_bytes()
