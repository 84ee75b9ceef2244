"""Battery cameras for the tests: the real firmware in snapshot mode (``camhub node --sim``), whose
deep sleep ``camhub.sim.sleep`` emulates, and what to watch of its wakes on MQTT."""

from __future__ import annotations

import io
import signal

from PIL import Image

from tests.support.mqtt import Message, Observer
from tests.support.procs import Process, camhub_cmd, runtime_args


class BatteryNode(Process):
    """``camhub node --sim`` with ``CAMHUB_MODE = "snapshot"``: a wake every ``interval`` seconds (and on
    ``press()``, its wake pin, when ``wake_pin`` is set); ``battery_mv`` stands in for its battery monitor;
    ``scene`` is what it films (``--scene``: the realistic default, or ``busy``, a picture that differs at
    every wake)."""

    def __init__(self, node_id: str, mqtt_port: int, interval: int = 3, runtime: str = "cpython",
                 frame_size: str = "QVGA", wake_pin: str | None = None, battery_mv: int | None = None,
                 scene: str | None = None, env: dict[str, str] | None = None) -> None:
        self.node_id = node_id
        self.runtime = runtime
        settings = {"CAMHUB_MODE": "snapshot", "CAMHUB_SNAPSHOT_INTERVAL_S": str(interval),
                    "CAMHUB_WARMUP_FRAMES": "2"}
        if wake_pin is not None:
            settings["CAMHUB_WAKE_PIN"] = wake_pin
        if battery_mv is not None:
            settings["CAMHUB_VM_BATTERY_MV"] = str(battery_mv)
        args = camhub_cmd("node", "--sim", "--id", node_id, "--mqtt-host", "127.0.0.1", "--mqtt-port",
                          str(mqtt_port), "--frame-size", frame_size, *runtime_args(runtime),
                          *(("--scene", scene) if scene else ()))
        super().__init__(args, env={**settings, **(env or {})}, name=f"battery-{node_id}")

    def topic(self, leaf: str) -> str:
        return f"camhub/nodes/{self.node_id}/{leaf}"

    def press(self) -> None:
        """The wake pin fires (a PIR sensor sees something): SIGUSR1 to the board's runner."""
        self.proc.send_signal(signal.SIGUSR1)

    def next_wake(self, observer: Observer, after: float, timeout: float = 30.0) -> Message:
        """The announce of the first wake that starts at or after ``after`` (a live one, not retained)."""
        return observer.wait_for(self.topic("announce"), lambda m: not m.retain, timeout=timeout, after=after)

    def picture_after(self, observer: Observer, after: float, timeout: float = 30.0) -> Message:
        return observer.wait_for(self.topic("snapshot"), lambda m: not m.retain and bool(m.payload),
                                 timeout=timeout, after=after)


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # a whole decode: a cut or corrupt JPEG fails here
        return image.size
