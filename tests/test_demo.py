"""`camhub demo` — the quick start's first command — starts everything and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal

from tests.support.mqtt import Observer
from tests.support.procs import Process, camhub_cmd, free_port, wait_for_http
from tests.support.waiting import get_json, wait_until


def test_demo_runs_nodes_and_hub_and_stops_cleanly_on_ctrl_c() -> None:
    port, mqtt_port = free_port(), free_port()
    demo = Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "2",
                              "--fps", "5", "--frame-size", "QQVGA"), name="demo")
    observer = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=demo.proc)
        observer = Observer(mqtt_port, ["camhub/#"])
        api = f"http://127.0.0.1:{port}/api/cameras"
        cameras = wait_until(lambda: (c := get_json(api)) and len(c) == 2 and all(
            x["state"] == "streaming" for x in c) and c, timeout=30, what="both demo cameras streaming")
        assert {c["name"] for c in cameras} == {"Front door", "Garden"}
        assert f"http://127.0.0.1:{port}/" in demo.output()  # the dashboard URL is printed
        demo.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert demo.proc.wait(30) == 0
        for node_id in ("front-door", "garden"):
            assert observer.wait_for(f"camhub/nodes/{node_id}/availability", lambda m: m.text == "offline").text
        assert observer.wait_for("camhub/hub/availability", lambda m: m.text == "offline")
    finally:
        if observer:
            observer.close()
        demo.kill()
