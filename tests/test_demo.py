"""`camhub demo` — the quick start's first command — starts everything and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import Process, camhub_cmd, free_port, wait_for_http
from tests.support.waiting import get_json, wait_until


def test_demo_runs_nodes_and_hub_and_stops_cleanly_on_ctrl_c() -> None:
    port, mqtt_port = free_port(), free_port()
    # a misspelt variable in the environment: a warning, once (not again from each node)
    demo = Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "2",
                              "--fps", "5", "--frame-size", "QQVGA"), env={"CAMHUB_FPSS": "5"}, name="demo")
    observer = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=demo.proc)
        observer = Observer(mqtt_port, ["camhub/#"])
        api = f"http://127.0.0.1:{port}/api/cameras"
        cameras = wait_until(lambda: (c := get_json(api)) and len(c) == 2 and all(
            x["state"] == "streaming" for x in c) and c, timeout=30, what="both demo cameras streaming")
        assert {c["name"] for c in cameras} == {"Front door", "Garden"}
        assert f"http://127.0.0.1:{port}/" in demo.output()  # the dashboard URL is printed
        assert demo.output().count("unknown setting CAMHUB_FPSS in the environment — did you mean CAMHUB_FPS?") == 1
        for camera in cameras:  # CPython unless asked otherwise
            assert get_json(camera["announce"]["status_url"])["runtime"]["name"] == "cpython"
        demo.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert demo.proc.wait(30) == 0
        goodbyes = [observer.wait_for(f"camhub/nodes/{node_id}/availability", lambda m: m.text == "offline")
                    for node_id in ("front-door", "garden")]
        hub_goodbye = observer.wait_for("camhub/hub/availability", lambda m: m.text == "offline")
        assert all(m.at <= hub_goodbye.at for m in goodbyes)  # the nodes' goodbyes came before the hub's
    finally:
        if observer:
            observer.close()
        demo.stop(signal.SIGINT, timeout=30)  # a failed test too: SIGKILL would leave the nodes (own sessions) running


def test_demo_runs_its_nodes_on_micropython_when_asked() -> None:
    port, mqtt_port = free_port(), free_port()
    demo = Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "1",
                              "--fps", "5", "--frame-size", "QQVGA", "--runtime", "micropython", "--heap", "900K"),
                   name="demo")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=demo.proc)
        api = f"http://127.0.0.1:{port}/api/cameras"
        camera = wait_until(lambda: (c := get_json(api)) and c[0]["state"] == "streaming" and c[0], timeout=30,
                            what="the demo camera streaming")
        status = get_json(camera["announce"]["status_url"])
        assert status["runtime"]["name"] == "micropython"
        assert status["heap_size"] == pytest.approx(900 * 1024, rel=0.05)
    finally:
        demo.stop(signal.SIGINT, timeout=30)  # the Ctrl-C story is the test above's


def _demo(port: int, mqtt_port: int) -> Process:
    return Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "1",
                              "--fps", "5", "--frame-size", "QQVGA"), name="demo")


def _time_wait_on(port: int) -> bool:
    """A connection in TIME_WAIT (state 06 in /proc/net/tcp) whose local port is ``port``."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(int(r[1].rsplit(":", 1)[1], 16) == port and r[3] == "06" for r in rows)


def test_demo_starts_again_at_once_on_the_same_ports() -> None:
    port, mqtt_port = free_port(), free_port()
    first = _demo(port, mqtt_port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=first.proc)
        wait_until(lambda: get_json(f"http://127.0.0.1:{port}/api/cameras"), timeout=30, what="the camera known")
        # a viewer open when the demo stops: the hub closes it, so its side of it waits in TIME_WAIT
        viewer = StreamReader(f"http://127.0.0.1:{port}/cameras/front-door/stream")
        assert viewer.read_part().body  # frames flow through the first demo
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(30) == 0
        # read to the hub's FIN before closing: closing with unread bytes sends RST, which ends the hub's side
        # at once instead of leaving it in TIME_WAIT (what CI saw once)
        while viewer.sock.recv(65536):
            pass
        viewer.close()
    finally:
        first.kill()
    wait_until(lambda: _time_wait_on(port), timeout=5,
               what="the stopped demo's side of the viewer's connection in TIME_WAIT on its port")
    second = _demo(port, mqtt_port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=second.proc)
        wait_until(lambda: (c := get_json(f"http://127.0.0.1:{port}/api/cameras")) and c[0]["state"] == "streaming",
                   timeout=30, what="the restarted demo's camera streaming")
    finally:
        second.stop(signal.SIGINT, timeout=30)
        second.kill()


def test_demo_names_what_holds_a_port_that_is_really_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(free_port())),
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"port {port} (HTTP) is in use by" in result.stdout
    assert f"(pid {os.getpid()})" in result.stdout  # this test's process holds it
    assert "--port" in result.stdout
