"""A task that fails is logged and restarted; the node keeps streaming.

The node runs in process on the real host platform and real sockets; only the camera sensor is a
stand-in (hardware), one that fails now and then the way ``espcamera.Camera.take()`` can raise.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

from camhub_node.config import Config
from camhub_node.host import HostPlatform
from camhub_node.node import Node
from camhub_node.simcam import SimCamera
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import free_port


class FlakyCamera(SimCamera):
    """Fails every ``every``-th take() with the kind of error a camera driver raises."""

    def __init__(self, every: int, *args: object) -> None:
        super().__init__(*args)
        self.every = every
        self.failures = 0

    def take(self, timeout: float | None = None) -> memoryview:
        if (self.taken + self.failures + 1) % self.every == 0:
            self.failures += 1
            raise RuntimeError("camera: frame buffer timeout")
        return super().take(timeout)


class FlakyPlatform(HostPlatform):
    def __init__(self) -> None:
        super().__init__()
        self.flaky: FlakyCamera | None = None

    def camera(self, cfg: Config) -> FlakyCamera:
        self.flaky = FlakyCamera(6, cfg.node_id, cfg.frame_size, cfg.jpeg_quality, cfg.fps)
        return self.flaky

    def install_stop(self, callback: object) -> None:
        pass  # the test stops the node itself


def test_a_failing_task_is_restarted_and_the_stream_goes_on() -> None:
    port = free_port()
    env = {"CAMHUB_NODE_ID": "flaky", "CAMHUB_HTTP_PORT": str(port), "CAMHUB_FPS": "20", "CAMHUB_FRAME_SIZE": "QQVGA"}
    platform = FlakyPlatform()
    cfg = Config(getenv=env.get, defaults=platform.defaults())
    platform.start(cfg)
    node = Node(platform, cfg)
    url = f"http://127.0.0.1:{port}"

    def watch() -> tuple[list[int], dict]:
        with StreamReader(url + "/stream") as reader:
            seqs = [p.seq for p in reader.parts(12)]
        with urllib.request.urlopen(url + "/status", timeout=5) as resp:
            return seqs, json.loads(resp.read())

    async def scenario() -> tuple[list[int], dict]:
        running = asyncio.create_task(node.run())
        try:
            await asyncio.sleep(0.3)
            return await asyncio.to_thread(watch)
        finally:
            node.request_stop()
            await asyncio.wait_for(running, 10)

    seqs, status = asyncio.run(scenario())
    assert platform.flaky is not None and platform.flaky.failures >= 2
    assert status["task_restarts"].get("camera", 0) >= 2
    # New frames kept coming across the failures (a repeat is the keep-alive during a restart pause).
    assert seqs == sorted(seqs) and len(set(seqs)) >= 9
