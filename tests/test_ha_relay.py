"""The camhub Home Assistant integration's parser and relay, without Home Assistant (fast, in ``make test``).

``custom_components/camhub/{mjpeg,hub,relay}.py`` import nothing from Home Assistant, so they are loaded
here on their own (the package's ``__init__`` imports Home Assistant and is not run). The parser reads
exactly what the hub writes (``camhub_node.mjpeg``), however the bytes are cut; the relay, in front of
the real hub, answers for it: a stream, or the hub's refusal as a status, never an error body as video.
The same code in a real Home Assistant: tests/test_homeassistant_integration.py (``make test-ha``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from camhub_node import mjpeg as hub_mjpeg
from tests.support.integration import integration_module
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import ROOT, HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

parts_mod = integration_module("mjpeg")
hub_mod = integration_module("hub")
relay_mod = integration_module("relay")
PartParser, Part = parts_mod.PartParser, parts_mod.Part


def hub_part(jpeg: bytes, seq: int, ts: float = 1764000000.25) -> bytes:
    """A part exactly as the hub writes it."""
    seconds = int(ts)
    return hub_mjpeg.part_header(len(jpeg), seq, seconds, int((ts - seconds) * 1_000_000)) + jpeg + hub_mjpeg.TRAILER


def jpeg_like(n: int, salt: int) -> bytes:
    """JPEG-looking bytes that contain the boundary and CRLFs, as real compressed data may."""
    body = (b"--camhubframe\r\n\r\nContent-Length: 9\r\n" * (n // 40 + 1))[:n]
    return b"\xff\xd8" + bytes([salt % 256]) + body + b"\xff\xd9"


# ---- the parser -------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6), cuts=st.lists(st.integers(1, 700), max_size=40),
       preamble=st.binary(max_size=50))
def test_the_parser_returns_the_hubs_parts_however_the_bytes_are_cut(sizes, cuts, preamble) -> None:
    jpegs = [jpeg_like(n, i) for i, n in enumerate(sizes)]
    stream = preamble.replace(b"--", b"") + b"".join(hub_part(j, i + 1) for i, j in enumerate(jpegs))
    parser = PartParser(hub_mjpeg.BOUNDARY)
    got, at = [], 0
    for cut in [*cuts, len(stream)]:
        got += parser.feed(stream[at:at + cut])
        at += cut
    got += parser.feed(stream[at:])
    assert [p.jpeg for p in got] == jpegs
    assert [p.seq for p in got] == [str(i + 1).encode() for i in range(len(jpegs))]
    assert all(p.timestamp == b"1764000000.250000" for p in got) and parser.skipped == 0


def test_what_the_relay_writes_is_what_the_hub_wrote() -> None:
    """Part.encode (the relay's output) reads back, headers included, with the tests' strict reader's rules."""
    original = hub_part(jpeg_like(500, 1), 42, 1764000001.5)
    part = PartParser(hub_mjpeg.BOUNDARY).feed(original)[0]
    assert part.encode() == original  # the same layout, byte for byte
    assert parts_mod.CONTENT_TYPE == hub_mjpeg.CONTENT_TYPE


def test_the_parser_skips_what_it_cannot_use_and_finds_the_next_part() -> None:
    parser = PartParser(hub_mjpeg.BOUNDARY, max_part_bytes=1000)
    good = [jpeg_like(100, i) for i in range(3)]
    stream = (b"garbage without a boundary\r\n" + hub_part(good[0], 1)
              + b"--camhubframe\r\nContent-Type: image/jpeg\r\n\r\n" + b"no length: skipped" + b"\r\n"
              + hub_part(jpeg_like(5000, 9), 2)  # over the limit: skipped without being kept
              + b"--camhubframe\r\nContent-Length: 12x\r\n\r\n" + hub_part(good[1], 3)
              + b"--camhubframe\r\nContent-Length: 3\r\nX-Frame-Seq: 4\r\nX-Timestamp: 1e9\r\nX-Evil: a\r\n\r\n"
              + b"abc\r\n" + hub_part(good[2], 5))
    got = []
    for i in range(0, len(stream), 97):
        got += parser.feed(stream[i:i + 97])
    assert [p.jpeg for p in got] == [good[0], good[1], b"abc", good[2]]
    assert got[2].seq == b"4" and got[2].timestamp is None  # only plain numbers are passed on
    assert b"Evil" not in got[2].encode()
    assert parser.skipped == 3


def test_the_parser_holds_no_more_than_a_header_while_it_looks_for_a_boundary() -> None:
    parser = PartParser(hub_mjpeg.BOUNDARY, max_part_bytes=1000)
    for _ in range(100):
        assert parser.feed(b"x" * 10_000) == []
    assert len(parser._buf) < 100
    assert parser.feed(b"--camhubframe\r\n" + b"H: v\r\n" * 2000) == []  # a header block that never ends
    assert len(parser._buf) < parts_mod.MAX_HEADER_BYTES + 100 and parser.skipped == 1


def test_the_boundary_is_read_from_a_multipart_content_type_only() -> None:
    assert parts_mod.boundary_of(hub_mjpeg.CONTENT_TYPE) == "camhubframe"
    assert parts_mod.boundary_of('multipart/x-mixed-replace;boundary="--frame"') == "frame"
    assert parts_mod.boundary_of("text/html; charset=utf-8") is None
    assert parts_mod.boundary_of("multipart/x-mixed-replace") is None
    assert parts_mod.boundary_of(None) is None


# ---- the relay, in front of the real hub ----------------------------------------------------------
PASSWORD = "relay-test-pw"


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubProcess]:
    broker = Mosquitto()
    node = SimNode("garage", broker.port, fps=10, frame_size="QQVGA")
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("relay-hub"),
                     env={"CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": PASSWORD, "CAMHUB_MAX_VIEWERS_PER_CAMERA": "1"})
    try:
        node.wait_ready()
        hub.wait_ready()
        auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
        wait_until(lambda: get_json(hub.url + "/api/cameras/garage", auth)["state"] == "streaming", 20,
                   "the camera streaming")
        yield hub
    finally:
        hub.stop()
        node.stop()
        broker.stop()


class Relayed:
    """The relay behind a small aiohttp server (standing in for Home Assistant's camera view, which only
    calls the entity's ``handle_async_mjpeg_stream``), pulling from ``path`` on the hub."""

    def __init__(self, hub: HubProcess, path: str, password: str = PASSWORD) -> None:
        self.hub, self.path, self.password = hub, path, password
        self.auth_failures = 0
        self.stats = relay_mod.RelayStats()

    async def __aenter__(self) -> Relayed:
        self.session = aiohttp.ClientSession()
        client = hub_mod.HubClient(self.session, self.hub.url, "admin", self.password)

        async def open_stream() -> aiohttp.ClientResponse:
            try:
                return await self.session.get(self.hub.url + self.path, headers=client.headers,
                                              timeout=hub_mod.STREAM_TIMEOUT)
            except aiohttp.ClientError as exc:
                raise hub_mod.HubError(str(exc)) from exc

        async def view(request: web.Request) -> web.StreamResponse:
            relay = relay_mod.Relay(open_stream, self._auth_failed, self.stats, "test")
            return await relay.serve(request)

        app = web.Application()
        app.router.add_get("/view", view)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.url = f"http://127.0.0.1:{self.server.port}/view"
        return self

    def _auth_failed(self) -> None:
        self.auth_failures += 1

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()
        await self.session.close()


async def test_the_relay_streams_the_hubs_frames(hub: HubProcess) -> None:
    async with Relayed(hub, "/cameras/garage/stream") as relayed:
        reader = await asyncio.to_thread(StreamReader, relayed.url, timeout=10)
        assert reader.status == 200 and reader.response_headers["content-type"] == hub_mjpeg.CONTENT_TYPE
        parts = await asyncio.to_thread(reader.parts, 5)
        reader.close()
        assert all(p.body[:2] == b"\xff\xd8" and p.image().size == (160, 120) for p in parts)
        assert [p.seq for p in parts] == sorted({p.seq for p in parts})
        await asyncio.sleep(0.2)
        assert relayed.stats.frames_out >= 5 and relayed.stats.viewers == 0


@pytest.mark.parametrize(("path", "password", "status", "says"), [
    ("/cameras/garage/stream", "wrong", 502, b"re-authenticate"),  # the hub's 401: Home Assistant's reauth
    ("/cameras/nope/stream", PASSWORD, 404, b"no longer has this camera"),
    ("/", PASSWORD, 502, b"without a stream"),  # a 200 that is not a stream (here the dashboard's HTML)
])
async def test_the_relay_answers_the_hubs_refusal_and_never_streams_it(hub, path, password, status, says) -> None:
    async with Relayed(hub, path, password) as relayed:
        reader = await asyncio.to_thread(StreamReader, relayed.url, timeout=10)
        body = await asyncio.to_thread(reader._read_exact, int(reader.response_headers["content-length"]))
        reader.close()
        assert reader.status == status and says in body
        assert not reader.response_headers["content-type"].startswith(("multipart/", "image/"))
        assert relayed.auth_failures == (1 if password == "wrong" else 0)


async def test_a_full_hub_gives_503_with_its_retry_after(hub: HubProcess) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    direct = await asyncio.to_thread(StreamReader, hub.url + "/cameras/garage/stream", headers=auth)
    try:
        await asyncio.to_thread(direct.read_part)  # the camera's one viewer (CAMHUB_MAX_VIEWERS_PER_CAMERA=1)
        async with Relayed(hub, "/cameras/garage/stream") as relayed:
            reader = await asyncio.to_thread(StreamReader, relayed.url, timeout=10)
            reader.close()
            assert reader.status == 503 and reader.response_headers["retry-after"] == "5"
    finally:
        direct.close()


def test_the_integration_does_not_import_camhub() -> None:
    """It runs in Home Assistant's Python, where camhub is not installed."""
    for path in (ROOT / "custom_components" / "camhub").glob("*.py"):
        text = path.read_text()
        assert "import camhub" not in text and "from camhub" not in text, path


def test_the_manifest_is_what_hacs_and_home_assistant_need() -> None:
    import json

    manifest = json.loads((ROOT / "custom_components" / "camhub" / "manifest.json").read_text())
    for key in ("domain", "name", "version", "codeowners", "documentation", "issue_tracker"):  # HACS's list
        assert key in manifest, key
    assert manifest["requirements"] == [] and manifest["config_flow"] is True
    assert manifest["mqtt"] == ["camhub/hub/info", "camhub/hubs/+/ha_info"]  # a single hub; each hub of a cluster
    assert json.loads(Path(ROOT / "hacs.json").read_text())["name"] == "camhub"
