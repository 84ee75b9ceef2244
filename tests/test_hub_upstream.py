"""The hub's upstream pull against real servers: the simulated node and a camera with quirks."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from PIL import Image

from camhub.hub.ingest.sources import HubAddresses
from camhub.hub.ingest.upstream import Upstream
from tests.support.procs import Mosquitto, SimNode, free_port, running
from tests.support.quirky_camera import Quirks, QuirkyCamera


class Sink:
    """Records what an Upstream reports."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, int | None, float | None]] = []
        self.states: list[str] = []

    def frame(self, jpeg: bytes, seq: int | None, timestamp: float | None) -> None:
        self.frames.append((jpeg, seq, timestamp))

    def state(self, state: str) -> None:
        self.states.append(state)


async def until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def sink() -> Sink:
    return Sink()


@pytest.fixture
async def make_upstream(sink: Sink) -> AsyncIterator[Callable[..., Upstream]]:
    made: list[Upstream] = []

    def make(url: str, **options: Any) -> Upstream:
        settings: dict[str, Any] = dict(stall_s=0.8, backoff_min_s=0.05, backoff_max_s=0.4, connect_timeout_s=2.0,
                                        allowed="loopback", max_frame_bytes=256 * 1024)
        settings.update(options)
        upstream = Upstream("cam", url, on_frame=sink.frame, on_state=sink.state, **settings)
        made.append(upstream)
        upstream.start()
        return upstream

    yield make
    for upstream in made:
        await upstream.stop()


def decodes(jpeg: bytes) -> bool:
    Image.open(io.BytesIO(jpeg)).load()
    return True


# ---- the real node -------------------------------------------------------------------------
async def test_pulls_the_simulated_node_and_comes_back_after_it_is_killed(
        mosquitto: Mosquitto, sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    port = free_port()
    with running(SimNode("porch", mosquitto.port, fps=10, http_port=port)) as node:
        await asyncio.to_thread(node.wait_ready)
        upstream = make_upstream(f"http://127.0.0.1:{port}/stream", stall_s=2.0)
        await until(lambda: len(sink.frames) >= 10, "10 frames from the node")
        assert upstream.state == "streaming" and upstream.connected
        seqs = [seq for _, seq, _ in sink.frames]
        assert all(s is not None for s in seqs) and seqs == sorted(seqs)
        assert all(abs(ts - time.time()) < 60 for _, _, ts in sink.frames if ts is not None)
        assert decodes(sink.frames[-1][0])
        assert 3 < upstream.fps_in < 30
        node.stop(signal.SIGKILL)
    await until(lambda: upstream.state == "stalled", "stalled after the node died")
    before = len(sink.frames)
    with running(SimNode("porch", mosquitto.port, fps=10, http_port=port)):
        await until(lambda: len(sink.frames) >= before + 5, "frames from the restarted node", timeout=25)
    assert upstream.state == "streaming" or len(sink.frames) > before
    assert upstream.reconnects >= 1 and sink.states[:2] == ["connecting", "streaming"]
    assert "stalled" in sink.states


# ---- quirks --------------------------------------------------------------------------------
QUIRKS = {
    "http_1_0": Quirks(http_version="1.0"),
    "http_1_0_lf_only_everywhere": Quirks(http_version="1.0", head_eol=b"\n", eol=b"\n"),
    "quoted_boundary_with_dashes": Quirks(content_type='multipart/x-mixed-replace;boundary="--frame"'),
    "doubled_dashes": Quirks(wire_boundary=b"----frame"),
    "lf_only": Quirks(eol=b"\n"),
    "no_content_length": Quirks(content_length=False),
    "no_content_type": Quirks(content_type=None, content_length=False, eol=b"\n"),
    "no_boundary_parameter": Quirks(content_type="multipart/x-mixed-replace"),
    "chunked_like_esp32_camerawebserver": Quirks(chunked=True,
                                                 content_type="multipart/x-mixed-replace;boundary=frame"),
}


@pytest.mark.parametrize("name", list(QUIRKS))
async def test_quirky_cameras_stream(name: str, sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    if "lf_only_everywhere" in name and sys.flags.dev_mode:
        pytest.skip("aiohttp parses response heads strictly in Python's development mode")
    async with QuirkyCamera(QUIRKS[name]) as camera:
        upstream = make_upstream(camera.url)
        await until(lambda: len(sink.frames) >= 6, f"frames from a camera with quirk {name}")
        assert upstream.state == "streaming"
        assert all(jpeg in camera.jpegs for jpeg, _, _ in sink.frames)
        assert [seq for _, seq, _ in sink.frames[:5]] == [0, 1, 2, 3, 4]
        assert not (upstream.errors.keys() & {"oversize", "not_jpeg", "resync"})


async def test_camera_down_at_start_is_picked_up_when_it_appears(
        sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    port = free_port()
    upstream = make_upstream(f"http://127.0.0.1:{port}/stream")
    await until(lambda: upstream.errors["connect"] >= 3, "a few refused connects")
    assert upstream.state == "offline" and not sink.frames  # three failures in a row say so
    async with QuirkyCamera(Quirks(), port=port):
        await until(lambda: len(sink.frames) >= 3, "frames once the camera is up")
    assert upstream.reconnects >= 3 and sink.states[-1] in ("streaming", "stalled")


async def test_retries_back_off_exponentially(sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks(status=503)) as camera:
        upstream = make_upstream(camera.url, backoff_min_s=0.05, backoff_max_s=10.0)
        await until(lambda: camera.connections >= 6, "six attempts")
        gaps = [b - a for a, b in zip(camera.connected_at, camera.connected_at[1:], strict=False)]
        # Each wait is 0.5-1x of a doubling 0.05 s: the 5th (>= 0.4 s) is well over twice the 1st.
        assert gaps[4] > 2 * gaps[0], gaps
        # the camera counts a connection when it accepts it; the hub counts the 503 once it has read it
        await until(lambda: upstream.errors["http_status"] >= 6, "six refusals counted")
        assert upstream.state == "offline" and upstream.last_error == "http_status: HTTP 503"


async def test_backoff_resets_once_frames_flowed_again(sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks(status=503)) as camera:
        upstream = make_upstream(camera.url, backoff_min_s=0.05, backoff_max_s=10.0)
        # five refusals: the backoff has doubled to 1.6 s (each wait 0.5-1x of it)
        await until(lambda: camera.connections >= 5, "five refused attempts")
        camera.quirks = Quirks(close_mid_part_after=3)  # the sixth attempt streams, then drops
        await until(lambda: camera.connections >= 7, "the attempt after the drop")
        assert upstream.errors["http_status"] == 5 and sink.frames
        assert "streaming" in sink.states
        # the sixth connection closed (camera.closed_at[5]); the seventh came within the minimum backoff
        gap = camera.connected_at[6] - camera.closed_at[5]
        assert gap < 0.4, f"{gap:.2f} s after frames flowed: the backoff was not reset"


async def test_stall_then_reconnect(sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks(stall_after=4)) as camera:
        upstream = make_upstream(camera.url, stall_s=0.5)
        await until(lambda: upstream.errors["stall"] >= 1, "the stall to be noticed")
        await until(lambda: camera.connections >= 2, "a reconnect after the stall")
        assert sink.states[:3] == ["connecting", "streaming", "stalled"]
        await until(lambda: len(sink.frames) >= 8, "frames from the second connection")
        assert upstream.reconnects >= 1


async def test_close_mid_part_delivers_no_partial_frame(sink: Sink,
                                                        make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks(close_mid_part_after=3)) as camera:
        upstream = make_upstream(camera.url)
        await until(lambda: camera.connections >= 3, "reconnects after each cut")
        await until(lambda: len(sink.frames) >= 9, "three frames from each of three connections")
        assert all(jpeg in camera.jpegs for jpeg, _, _ in sink.frames)
        assert upstream.errors["read"] + upstream.errors["closed"] >= 2


async def test_oversize_garbage_and_non_jpeg_parts_are_counted_and_skipped(
        sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    quirks = Quirks(oversize_every=3, oversize_bytes=300 * 1024, not_jpeg_every=5, garbage_every=7, fps=50)
    async with QuirkyCamera(quirks) as camera:
        upstream = make_upstream(camera.url, max_frame_bytes=256 * 1024)
        await until(lambda: len(sink.frames) >= 20, "good frames among the bad parts")
        assert all(jpeg in camera.jpegs for jpeg, _, _ in sink.frames)
        assert upstream.errors["oversize"] >= 4 and upstream.errors["not_jpeg"] >= 2
        assert upstream.errors["resync"] >= 1
        assert upstream.state == "streaming" and camera.connections == 1


async def test_garbage_instead_of_a_stream_never_crashes(sink: Sink,
                                                         make_upstream: Callable[..., Upstream]) -> None:
    junk = bytes(range(256)) * 2000 + b"\r\n--frame\r\nContent-Length: 99999999999\r\n\r\n\xff\xd8"
    async with QuirkyCamera(Quirks(raw_body=junk)) as camera:
        upstream = make_upstream(camera.url, max_frame_bytes=16 * 1024)
        await until(lambda: camera.connections >= 3, "repeated attempts at a garbage source")
        assert not sink.frames and upstream.state in ("connecting", "offline")
        assert upstream.errors["no_frames"] + upstream.errors["closed"] >= 2


@pytest.mark.parametrize("quirks,kind", [
    (Quirks(status=404), "http_status"),
    (Quirks(content_type="text/html; charset=utf-8"), "content_type"),
])
async def test_wrong_responses_are_counted(quirks: Quirks, kind: str, sink: Sink,
                                           make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(quirks) as camera:
        upstream = make_upstream(camera.url)
        await until(lambda: upstream.errors[kind] >= 2, f"{kind} errors")
        assert not sink.frames


async def test_a_name_resolving_outside_the_allowed_networks_is_never_contacted(
        sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks()) as camera:
        upstream = make_upstream(f"http://localhost:{camera.port}/stream", allowed="10.0.0.0/8")
        await until(lambda: upstream.errors["not_allowed"] >= 2, "the resolved address to be refused")
        literal = make_upstream(camera.url, allowed="10.0.0.0/8")
        await until(lambda: literal.errors["not_allowed"] >= 2, "the literal address to be refused")
        assert camera.connections == 0 and not sink.frames


async def test_stop_closes_the_connection_and_a_moved_camera_gets_a_new_pull(
        sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    """What the hub does when a camera goes offline (stop) and when it moves (stop, then pull the new URL)."""
    async with QuirkyCamera(Quirks()) as first, QuirkyCamera(Quirks(), jpegs=list(reversed(first.jpegs))) as second:
        upstream = make_upstream(first.url)
        await until(lambda: len(sink.frames) >= 3, "frames from the first camera")
        await upstream.stop()
        await until(lambda: first.open_connections == 0, "stop() to close the connection")
        count = len(sink.frames)
        await asyncio.sleep(0.2)
        assert len(sink.frames) == count
        moved = make_upstream(second.url)
        await until(lambda: second.frames_sent >= 3 and len(sink.frames) >= count + 3, "frames from the new URL")
        assert moved.state == "streaming"
        await moved.stop()
        await until(lambda: second.open_connections == 0, "stop() to close the connection")
        assert first.connections == 1 and second.connections == 1


async def test_a_failing_frame_callback_does_not_stop_the_pull(make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks()) as camera:
        upstream = Upstream("cam", camera.url, on_frame=lambda *a: 1 / 0, allowed="loopback")
        upstream.start()
        try:
            await until(lambda: upstream.frames_in >= 3, "frames despite the failing callback")
            assert upstream.errors["callback"] >= 3 and upstream.state == "streaming"
        finally:
            await upstream.stop()


@pytest.mark.parametrize("quirks,kind", [
    (Quirks(silent=True), "timeout"),  # accepts the connection, never answers
    (Quirks(content_type="text/html"), "content_type"),  # a login page instead of a stream
    (Quirks(oversize_every=1, oversize_bytes=2 * 1024 * 1024), "no_frames"),  # every part far too big
], ids=["silent", "html", "huge_parts"])
async def test_a_camera_that_keeps_failing_is_offline_with_its_last_error(
        quirks: Quirks, kind: str, sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(quirks) as camera:
        upstream = make_upstream(camera.url, connect_timeout_s=0.5)
        await until(lambda: upstream.state == "offline", "offline after failed attempts in a row", timeout=20)
        assert upstream.failures >= 3 and camera.connections >= 3
        assert upstream.last_error is not None and upstream.last_error.startswith(kind)
        assert "connecting" in sink.states and not sink.frames
        attempts = camera.connections
        await until(lambda: camera.connections > attempts, "it keeps retrying while offline", timeout=20)
        assert upstream.state == "offline"  # no connecting/offline flapping on every attempt
        camera.quirks = Quirks()  # the camera is fixed
        await until(lambda: upstream.state == "streaming", "streaming once the camera works", timeout=20)
        assert upstream.last_error is None and upstream.failures == 0


async def test_frames_beyond_the_ingest_cap_are_dropped_and_counted(
        sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks(fps=400)) as camera:
        upstream = make_upstream(camera.url, max_fps=20)
        await until(lambda: upstream.state == "streaming", "streaming")
        started, delivered = time.monotonic(), len(sink.frames)
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - started
        passed = len(sink.frames) - delivered
        assert passed <= 20 * elapsed + 20 + 1  # the cap plus at most one second's burst
        assert upstream.frames_over_rate > passed and upstream.errors["over_rate"] == upstream.frames_over_rate
        assert camera.frames_sent > 3 * passed


async def test_a_name_resolving_to_the_hub_itself_is_never_contacted(
        sink: Sink, make_upstream: Callable[..., Upstream]) -> None:
    async with QuirkyCamera(Quirks()) as camera:  # stands in for the hub, on the hub's port
        hub = HubAddresses("0.0.0.0", camera.port)
        upstream = make_upstream(f"http://{socket.gethostname()}:{camera.port}/stream", allowed="any", hub=hub)
        await until(lambda: upstream.errors["self_source"] >= 2, "the hub's own address refused at connect time")
        assert camera.connections == 0 and not sink.frames
        other = make_upstream(camera.url, hub=HubAddresses("0.0.0.0", free_port()))  # another port: fine
        await until(lambda: other.state == "streaming", "a camera on another port of this machine streams")
