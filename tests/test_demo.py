"""`camhub demo` — the quick start's first command — starts everything and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from camhub_node import scene
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import VM_RUNTIMES, Process, camhub_cmd, free_port, wait_for_http
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


@pytest.mark.parametrize("runtime", VM_RUNTIMES)
def test_demo_runs_its_nodes_on_a_vm_when_asked(runtime: str) -> None:
    port, mqtt_port = free_port(), free_port()
    demo = Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "1",
                              "--fps", "5", "--frame-size", "QQVGA", "--runtime", runtime, "--heap", "900K"),
                   name="demo")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=demo.proc)
        api = f"http://127.0.0.1:{port}/api/cameras"
        camera = wait_until(lambda: (c := get_json(api)) and c[0]["state"] == "streaming" and c[0], timeout=30,
                            what="the demo camera streaming")
        status = get_json(camera["announce"]["status_url"])
        assert status["runtime"]["name"] == runtime
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


# ---- what the demo shows: scenes that move now and then, recordings that stay small (issue #24) ----------

SCENE_PERIOD_S = 10  # a crossing every 5-15 s instead of 20-60 s, so a minute shows several per camera
CAMERAS = ("front-door", "garden", "garage")


def _recordings_dir(demo: Process) -> Path:
    line = wait_until(lambda: next((x for x in demo.output().splitlines() if x.startswith("  recordings:")), None),
                      timeout=30, what="the demo's recordings line")
    return Path(line.split("recordings:", 1)[1].split("(", 1)[0].strip())


def _covered(start: float, end: float, recordings: list[dict], gap: float = 0.5) -> bool:
    """Whether ``recordings`` hold every moment of ``[start, end]`` (one, or one after another)."""
    at = start
    for rec in sorted(recordings, key=lambda r: r["start"]):
        if rec["start"] <= at + gap and rec["end"] > at:
            at = rec["end"]
    return at >= end


def _disk_use(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def test_demo_cameras_move_now_and_then_and_leave_recordings_of_each_crossing_within_the_cap() -> None:
    port, mqtt_port = free_port(), free_port()
    # the hub's motion and recording defaults, but a shorter quiet time and post-roll: recordings close sooner
    env = {"CAMHUB_SIM_PERIOD_S": str(SCENE_PERIOD_S), "CAMHUB_MOTION_QUIET_S": "2",
           "CAMHUB_RECORD_POSTROLL_S": "2"}
    demo = Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "3",
                              "--fps", "10", "--frame-size", "QVGA"), env=env, name="demo")
    hub = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{hub}/healthz", timeout=30, proc=demo.proc)
        wait_until(lambda: (c := get_json(f"{hub}/api/cameras")) and len(c) == 3 and all(
            x["state"] == "streaming" for x in c), timeout=30, what="the three demo cameras streaming")
        recordings_dir = _recordings_dir(demo)
        assert "at most 0.3 GB; deleted when the demo stops" in demo.output()
        began = time.time()
        # enough time for 4 period boundaries per camera: each camera's light changes at least once in it
        watched = 4 * SCENE_PERIOD_S + 3
        time.sleep(watched)
        ended = time.time()
        time.sleep(5)  # the last events end (2 s quiet) and their recordings close (2 s post-roll)
        status = get_json(f"{hub}/api/hub")["recordings"]
        assert status["max_bytes"] == 300_000_000  # the demo's cap
        used = _disk_use(recordings_dir)
        assert 0 < used <= status["max_bytes"]
        for camera in CAMERAS:
            schedule = scene.Schedule(camera, SCENE_PERIOD_S * 1000)
            now = time.time() + 1
            crossings = [(a / 1000, b / 1000) for a, b in schedule.crossings(int(began * 1000), int(now * 1000))]
            assert schedule.light_changes(int(began * 1000), int(ended * 1000)), camera  # the window has one
            events = [e for e in get_json(f"{hub}/api/cameras/{camera}/motion?since={began}") if e["start"] >= began]
            starts = [a for a, _ in crossings]
            for event in events:
                # motion only while someone crosses: it never starts in a still scene, nor at a change of light,
                # and it has ended before the next crossing (timings are loose: the machine may be busy)
                assert any(a - 0.2 <= event["start"] <= b for a, b in crossings), (camera, event, crossings)
                later = [a for a in starts if a > event["start"]]
                assert event["end"] is None or not later or event["end"] < later[0], (camera, event, crossings)
            recs = [r for r in get_json(f"{hub}/api/cameras/{camera}/recordings") if not r["open"]]
            shown = []  # crossings seen as a motion event that starts and ends, and recorded from start to end
            for a, b in crossings:
                event = next((e for e in events if a - 0.2 <= e["start"] <= b), None)
                if event is None or event["end"] is None or b > ended:
                    continue
                assert event["end"] > b, (camera, event, (a, b))
                if _covered(a, b, recs):
                    shown.append((a, b))
            assert shown, f"{camera}: no crossing seen as motion and recorded ({crossings}, {events}, {recs})"
            a, b = shown[0]  # the recordings hold the crossing's own frames
            rec = next(r for r in recs if r["start"] <= a + 1.0 <= r["end"])
            with StreamReader(f"{hub}{rec['stream']}?t={a + 1.0 - rec['start']:.3f}&speed=8") as reader:
                assert a <= reader.read_part().timestamp <= b
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0
        assert not recordings_dir.exists()  # a temporary state directory: gone with the demo
    finally:
        demo.kill()


def test_demo_keeps_its_recordings_in_a_given_state_dir(tmp_path: Path) -> None:
    port, mqtt_port = free_port(), free_port()
    demo = Process(camhub_cmd("demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--nodes", "1",
                              "--fps", "5", "--frame-size", "QQVGA", "--scene", "busy", "--state-dir", str(tmp_path)),
                   name="demo")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=demo.proc)
        recordings_dir = _recordings_dir(demo)
        assert recordings_dir == tmp_path / "recordings"
        assert "at most 0.3 GB; kept" in demo.output()
        # the busy scene moves all the time: motion at once, and a recording under way
        wait_until(lambda: list(recordings_dir.rglob("*.mkv")), timeout=30, what="a recording file")
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0
    finally:
        demo.kill()
    kept = list(recordings_dir.rglob("*.mkv"))
    assert kept and all(p.with_suffix(".json").exists() for p in kept)  # closed and indexed when the hub stopped
