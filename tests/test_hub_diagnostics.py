"""A hub that runs for months (issue #26): what it holds is visible, and nothing it holds grows for ever.

``GET /api/hub/diagnostics`` (``CAMHUB_DIAGNOSTICS``, off by default) shows every part's structure
sizes; ``benchmarks/soak.py`` samples it for hours. Here: it is off unless asked for, it is behind the
API's credentials, it reports sizes and (with tracemalloc) where memory grew, and a camera that is
removed leaves none of its state behind in the parts that keep per-camera state.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import scenes
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, running
from tests.support.quirky_camera import Quirks, serve_in_thread
from tests.support.waiting import get_json, wait_until


def _status(url: str, password: str | None = None, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method)
    if password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body) if err.headers.get_content_type() == "application/json" else {}


def test_diagnostics_are_off_unless_asked_for_and_then_behind_the_apis_credentials(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    with running(HubProcess(mosquitto.port, tmp_path / "off")) as hub:
        hub.wait_ready()
        status, body = _status(f"{hub.url}/api/hub/diagnostics")
        assert status == 404 and "CAMHUB_DIAGNOSTICS" in body["error"]
    password = "diag-pass-123"
    env = {"CAMHUB_DIAGNOSTICS": "on", "CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": password}
    with running(HubProcess(mosquitto.port, tmp_path / "on", env=env)) as hub:
        hub.wait_ready()
        assert _status(f"{hub.url}/api/hub/diagnostics")[0] == 401
        status, body = _status(f"{hub.url}/api/hub/diagnostics", password)
        assert status == 200
        process = body["process"]
        assert process["rss_kb"] > 10_000 and process["fds"] > 3 and process["asyncio_tasks"] > 0
        assert body["parts"]["broker"]["viewers"] == 0 and body["parts"]["cameras"]["cameras"] == 0
        assert body["parts"]["mqtt"]["subscriptions"] >= 3 and body["tracemalloc"] is None
        # without tracing there is no baseline to take
        assert _status(f"{hub.url}/api/hub/diagnostics/baseline", password, "POST")[0] == 409


def test_tracemalloc_names_the_places_whose_memory_grew_since_the_baseline(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    env = {"CAMHUB_DIAGNOSTICS": "tracemalloc"}
    with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
        hub.wait_ready(timeout=60)  # importing everything traced takes a few seconds
        status, body = _status(f"{hub.url}/api/hub/diagnostics/baseline", method="POST")
        assert status == 200 and body["tracemalloc"]["baseline"] is True
        for _ in range(30):  # some memory the hub keeps: known cameras, their feeds, motion and recorders
            _status(f"{hub.url}/api/cameras")
        status, body = _status(f"{hub.url}/api/hub/diagnostics?top=5")
        growers = body["tracemalloc"]["growers"]
        assert status == 200 and 0 < len(growers) <= 5
        assert all(g["size_diff"] > 0 for g in growers) and all(":" in g["where"][0] for g in growers)
        assert _status(f"{hub.url}/api/hub/diagnostics?key=nonsense")[0] == 400


def _announce(camera_id: str, url: str) -> str:
    return json.dumps({"id": camera_id, "name": camera_id, "stream_url": url})


def test_a_removed_camera_leaves_nothing_behind(mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    """Cameras come and go over months (boards replaced, renamed): the state each part keeps per camera
    (motion's background and events, the recorder's pre-roll ring of JPEGs and open files, what Home
    Assistant discovery sent) must go with the camera, and what it was writing must be closed and
    complete on disk."""
    # no camera entity (HA_SNAPSHOT_S = 0): its config topic is one discovery clears for each camera
    env = {"CAMHUB_DIAGNOSTICS": "on", "CAMHUB_TIMELAPSE_S": "0.3", "CAMHUB_RECORD_PREROLL_S": "2",
           "CAMHUB_HA_SNAPSHOT_S": "0"}
    with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
        hub.wait_ready()
        diagnostics = f"{hub.url}/api/hub/diagnostics"

        def parts() -> dict:
            return get_json(diagnostics)["parts"]

        hub_only = wait_until(lambda: parts()["discovery"]["configs_sent"], what="the hub's own discovery")
        with serve_in_thread(Quirks(fps=10)) as camera:
            camera.jpegs = scenes.still(5)
            observer.publish("camhub/nodes/yard/announce", _announce("yard", camera.url), retain=True)
            wait_until(lambda: any(r["kind"] == "timelapse" and r["frames"] >= 3
                                   for r in get_json(f"{hub.url}/api/cameras/yard/recordings")),
                       what="a time-lapse being written")
            recordings = parts()["recordings"]
            assert recordings["preroll_frames"] > 0 and recordings["open_segments"] == 1
        wait_until(lambda: get_json(f"{hub.url}/api/cameras/yard")["state"] != "streaming", what="the camera gone")
        # and cameras that never streamed (a typo in an announce, a board that never came up)
        for n in range(5):
            observer.publish(f"camhub/nodes/ghost{n}/announce", _announce(f"ghost{n}", "http://127.0.0.1:9/"),
                             retain=True)
        wait_until(lambda: len(get_json(f"{hub.url}/api/cameras")) == 6, what="six cameras")
        before = parts()["discovery"]["configs_sent"]
        observer.publish("homeassistant/status", "online")  # HA restarted: every config again, also the cleared
        wait_until(lambda: parts()["discovery"]["configs_sent"] > before, what="discovery published again")
        for camera_id in ["yard", *(f"ghost{n}" for n in range(5))]:
            observer.publish(f"camhub/nodes/{camera_id}/announce", b"", retain=True)  # decommissioned
        wait_until(lambda: get_json(f"{hub.url}/api/cameras") == [], what="every camera removed")
        left = wait_until(lambda: (p := parts())["recordings"]["writer_queue"] == 0 and p, what="the writer idle")
        assert left["cameras"]["cameras"] == 0 and left["broker"]["feeds"] == 0
        assert left["motion"]["cameras"] == 0 and left["motion"]["events_kept"] == 0
        assert left["recordings"]["recorders"] == 0 and left["recordings"]["preroll_frames"] == 0
        assert left["recordings"]["open_segments"] == 0
        assert left["discovery"]["cameras"] == 0 and left["discovery"]["configs_sent"] == hub_only
        assert left["pulls"]["upstreams"] == 0 and left["status"]["motion_sent"] == 0
        # the time-lapse it was writing was closed: complete, with its sidecar
        (lapse,) = (tmp_path / "recordings" / "yard").glob("*-timelapse.mkv")
        wait_until(lambda: lapse.with_suffix(".json").exists(), what="the time-lapse closed")
        assert json.loads(lapse.with_suffix(".json").read_text())["frames"] >= 3


async def test_a_change_signalled_after_a_camera_was_removed_brings_none_of_its_state_back(tmp_path: Path) -> None:
    """A stopping pull can still say its camera went offline after the camera was removed (Home Assistant
    discovery ignores such a change for the same reason): the status publisher must not then publish the
    camera's motion state, which made motion detection keep the camera again and the publisher its entry,
    for good. In process: the real registry, motion detection, status publisher and an unconnected link."""
    from concurrent.futures import ThreadPoolExecutor

    from camhub.hub.core.broker import Broker, FanoutSettings
    from camhub.hub.core.camera import OFFLINE, STREAMING
    from camhub.hub.core.registry import Cameras
    from camhub.hub.mqtt.link import LinkSettings, MqttLink
    from camhub.hub.mqtt.topics import Topics
    from camhub.hub.publish.status import StatusPublisher
    from camhub.hub.taps.motion import Motion, MotionSettings
    from camhub.hub.taps.recordings import Recordings, RecordSettings

    cameras = Cameras(Broker(FanoutSettings()), max_cameras=8)
    with ThreadPoolExecutor(1) as pool:
        motion = Motion(MotionSettings(), True, pool)
        recordings = Recordings(RecordSettings(root=tmp_path, preroll_s=0, postroll_s=0, segment_s=60, keep_days=1,
                                               max_gb=1, min_free_gb=0, timelapse_s=0))
        status = StatusPublisher(MqttLink(LinkSettings(), Topics()), Topics(), cameras, motion, recordings)
        cameras.removed.connect(motion.forget)  # as the hub wires them
        cameras.changed.connect(status.camera_changed)
        cameras.removed.connect(status.camera_removed)
        camera = cameras.add("yard", "Yard", "mqtt", "http://127.0.0.1:9/stream")
        cameras.set_state(camera, STREAMING)
        assert motion.sizes()["cameras"] == 1 and status.sizes()["motion_sent"] == 1
        cameras.pop("yard")
        cameras.forget("yard")
        cameras.set_state(camera, OFFLINE)  # late: its pull, stopping
        assert motion.sizes()["cameras"] == 0 and status.sizes()["motion_sent"] == 0
