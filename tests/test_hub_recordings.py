"""Recordings in the real hub: what a camera sent, stored as it arrived, played back, kept within limits.

Files are checked with Debian's ffprobe and ffmpeg (``-c copy`` extracts the stored JPEGs without
decoding them), a different implementation from the hub's muxer.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from PIL import Image

from tests.support import scenes
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, running
from tests.support.quirky_camera import Quirks, serve_in_thread
from tests.support.waiting import get_json, wait_until


def ffprobe_packets(path: Path) -> list[float]:
    """Every packet's timestamp (seconds) as ffprobe reads the file."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [float(line) for line in out.split()]


def ffprobe_codec(path: Path) -> str:
    return subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name",
                           "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


def stored_jpegs(path: Path, out_dir: Path) -> list[bytes]:
    """The JPEGs in a recording, extracted by ffmpeg without decoding them."""
    out_dir.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-c", "copy", "-f", "image2",
                    str(out_dir / "%05d.jpg")], check=True, timeout=60)
    return [p.read_bytes() for p in sorted(out_dir.glob("*.jpg"))]


def closed(hub: HubProcess, camera_id: str = "yard") -> list[dict]:
    return [r for r in get_json(f"{hub.url}/api/cameras/{camera_id}/recordings") if not r["open"]]


def test_a_motion_recording_holds_preroll_and_postroll_as_sent_and_plays_back_at_its_pace(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    still, moving = scenes.still(30), scenes.moving(30, seed=5)
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = still
        env = {"CAMHUB_SOURCES": f"yard={camera.url}", "CAMHUB_MOTION_QUIET_S": "1", "CAMHUB_RECORD": "motion",
               "CAMHUB_RECORD_PREROLL_S": "2", "CAMHUB_RECORD_POSTROLL_S": "2"}
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            wait_until(lambda: get_json(f"{hub.url}/api/cameras/yard")["frames_in"] >= 40, what="4 s of frames")
            assert get_json(f"{hub.url}/api/cameras/yard/recordings") == []  # a still scene is not recorded
            appeared = time.time()
            camera.jpegs = moving
            time.sleep(2.0)
            went_still = time.time()
            camera.jpegs = still
            recs = wait_until(lambda: closed(hub), timeout=15, what="a closed recording")
            rec = recs[0]
            assert rec["kind"] == "motion" and rec["peak"] > 0
            # pre-roll: about 2 s before the object appeared; post-roll: 2 s after the 1 s quiet period
            assert appeared - 2.6 < rec["start"] < appeared - 1.4, rec
            assert went_still + 2.5 < rec["end"] < went_still + 5.5, rec

            path = tmp_path / "recordings" / "yard" / f"{rec['id']}.mkv"
            assert ffprobe_codec(path) == "mjpeg"
            stamps = ffprobe_packets(path)
            assert len(stamps) == rec["frames"] and 45 <= rec["frames"] <= 80, (len(stamps), rec)
            gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
            assert all(0.05 < gap < 0.25 for gap in gaps), gaps  # the capture times' 10 fps pace, kept
            assert abs(rec["start"] + stamps[-1] - rec["end"]) < 0.01

            jpegs = stored_jpegs(path, tmp_path / "frames")
            assert len(jpegs) == rec["frames"] and sum(map(len, jpegs)) == rec["bytes"]
            sent = set(still) | set(moving)
            assert all(jpeg in sent for jpeg in jpegs)  # byte for byte what the camera sent
            kinds = ["m" if jpeg in moving else "s" for jpeg in jpegs]
            assert kinds[:12] == ["s"] * 12 and kinds[-20:] == ["s"] * 20 and "m" * 15 in "".join(kinds)

            with urllib.request.urlopen(f"{hub.url}{rec['download']}", timeout=10) as resp:
                assert resp.headers["Content-Type"] == "video/x-matroska"
                assert resp.read() == path.read_bytes()

            # playback: every frame, in order, at twice the recorded pace, with the capture times
            began = time.monotonic()
            with StreamReader(f"{hub.url}{rec['stream']}?speed=2", timeout=30) as reader:
                played = reader.parts(rec["frames"])
            took = time.monotonic() - began
            assert [p.body for p in played] == jpegs
            assert 0.8 * stamps[-1] / 2 < took < stamps[-1] / 2 + 2.0, took
            assert all(abs(p.timestamp - (rec["start"] + t)) < 0.002 for p, t in zip(played, stamps, strict=True))
            skip_to = stamps[-1] - 1.0  # ?t=: start one second before the end
            first = next(i for i, t in enumerate(stamps) if t >= skip_to - 0.0005)
            with StreamReader(f"{hub.url}{rec['stream']}?t={skip_to:.3f}&speed=4") as reader:
                assert reader.read_part().body == jpegs[first]


def _always(camera_url: str, **extra: str) -> dict[str, str]:
    return {"CAMHUB_SOURCES": f"yard={camera_url}", "CAMHUB_RECORD": "always", "CAMHUB_RECORD_SEGMENT_S": "1",
            "CAMHUB_MOTION": "off", **extra}


def test_retention_deletes_the_oldest_recordings_first_under_a_size_limit(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(10)  # about 20 kB each: a 1 s segment is about 200 kB
        limit = 700_000
        env = _always(camera.url, CAMHUB_RECORD_MAX_GB=str(limit / 1e9))
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            seen: dict[str, dict] = {}

            def enough() -> bool:
                for rec in closed(hub):
                    seen[rec["id"]] = rec
                return len(seen) >= 8

            wait_until(enough, timeout=30, what="8 closed one-second segments")
            kept = closed(hub)
            seen.update((r["id"], r) for r in kept)
            assert 2 <= len(kept) <= 4 and sum(r["bytes"] for r in kept) <= limit, kept
            kept_ids = {r["id"] for r in kept}
            newest = sorted(seen.values(), key=lambda r: r["start"], reverse=True)[:len(kept)]
            assert kept_ids == {r["id"] for r in newest}  # the oldest went first
            on_disk = {p.stem for p in (tmp_path / "recordings" / "yard").glob("*.mkv")}
            assert len(on_disk - kept_ids) <= 2  # besides those: the segment being written (and one just closed)
            assert not on_disk & (set(seen) - kept_ids - {r["id"] for r in closed(hub)})
            assert get_json(f"{hub.url}/api/hub")["recordings"]["deleted"] >= len(seen) - len(kept)


def test_the_recording_being_written_counts_towards_the_size_limit(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Older recordings make room for a long one as it grows, so the disk use stays within the limit."""
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(10)  # about 20 kB each: about 200 kB a second
        with running(HubProcess(mosquitto.port, tmp_path, env=_always(camera.url))) as hub:
            hub.wait_ready()
            wait_until(lambda: len(closed(hub)) >= 4, timeout=30, what="4 closed one-second segments")
        older = {p.stem for p in (tmp_path / "recordings" / "yard").glob("*.mkv")}
        limit = 1_000_000
        env = _always(camera.url, CAMHUB_RECORD_SEGMENT_S="60", CAMHUB_RECORD_MAX_GB=str(limit / 1e9))
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            recordings = f"{hub.url}/api/cameras/yard/recordings"
            wait_until(lambda: any(r["open"] and r["bytes"] > limit for r in get_json(recordings)), timeout=30,
                       what="the open recording grown past the limit")
            # the next sweep (every 5 s) deletes every older recording: only the one being written is left
            wait_until(lambda: not closed(hub), timeout=15, what="the older recordings deleted")
            on_disk = {p.stem for p in (tmp_path / "recordings" / "yard").glob("*.mkv")}
            assert not on_disk & older and len(on_disk) == 1


def test_a_hub_killed_while_recording_restarts_with_every_closed_segment_intact_and_listed(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(10)
        env = _always(camera.url, CAMHUB_RECORD_SEGMENT_S="2")
        hub = HubProcess(mosquitto.port, tmp_path, env=env)
        with running(hub):
            hub.wait_ready()
            wait_until(lambda: len(closed(hub)) >= 3, timeout=30, what="3 closed segments")
            time.sleep(1.2)  # into the next segment
            before = {r["id"]: r for r in closed(hub)}
            hub.stop(signal.SIGKILL)
        videos = sorted((tmp_path / "recordings" / "yard").glob("*.mkv"))
        assert len(videos) == len(before) + 1  # the closed ones and the one being written
        with running(HubProcess(mosquitto.port, tmp_path, env={**env, "CAMHUB_RECORD": "off"})) as hub:
            hub.wait_ready()
            after = {r["id"]: r for r in wait_until(lambda: closed(hub), what="the recordings listed again")}
            for rec_id, rec in before.items():
                assert after[rec_id] == rec  # listed as it was
                stamps = ffprobe_packets(tmp_path / "recordings" / "yard" / f"{rec_id}.mkv")
                assert len(stamps) == rec["frames"]  # and whole
            (interrupted,) = set(after) - set(before)
            assert after[interrupted]["recovered"] is True and after[interrupted]["frames"] >= 5
            assert len(ffprobe_packets(videos[-1])) == after[interrupted]["frames"]


def ffprobe_size(path: Path) -> tuple[int, int]:
    """The track's width and height as the file declares them."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=30, check=True).stdout
    width, height = out.strip().split(",")
    return int(width), int(height)


def test_a_new_frame_size_starts_a_new_recording_whose_track_says_that_size(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A player sizes its picture from the track: each file holds frames of the one size its track declares."""
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(5, size=(160, 120))
        env = _always(camera.url, CAMHUB_RECORD_SEGMENT_S="60")
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            recordings = f"{hub.url}/api/cameras/yard/recordings"
            wait_until(lambda: any(r["open"] and r["frames"] >= 10 for r in get_json(recordings)), timeout=20,
                       what="a recording under way")
            camera.jpegs = scenes.still(5, size=(320, 240))  # e.g. the frame size changed from the dashboard
            wait_until(lambda: closed(hub), timeout=20, what="the first recording closed at the change")
            wait_until(lambda: any(r["open"] and r["frames"] >= 10 for r in get_json(recordings)), timeout=20,
                       what="the rest recorded as a new recording")
        videos = sorted((tmp_path / "recordings" / "yard").glob("*.mkv"))
        assert len(videos) == 2
        for video, size in zip(videos, [(160, 120), (320, 240)], strict=True):
            assert ffprobe_size(video) == size
            jpegs = stored_jpegs(video, tmp_path / video.stem)
            assert len(jpegs) >= 10 and {Image.open(io.BytesIO(j)).size for j in jpegs} == {size}


def test_recording_stops_and_says_so_when_the_disk_is_short_of_space(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path) -> None:
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(10)
        env = _always(camera.url, CAMHUB_RECORD_MIN_FREE_GB="1000000")  # more than any disk here has
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            status = observer.wait_for("camhub/hub/recordings", lambda m: m.json()["state"] == "stopped").json()
            assert status["reason"] == "disk_low" and status["free_bytes"] < status["min_free_bytes"]
            wait_until(lambda: get_json(f"{hub.url}/api/cameras/yard")["frames_in"] >= 20, what="frames")
            assert get_json(f"{hub.url}/api/cameras/yard")["recording"]["stopped"] == "disk_low"
            assert get_json(f"{hub.url}/api/hub")["recordings"]["state"] == "stopped"
            assert get_json(f"{hub.url}/api/cameras/yard/recordings") == []
            assert not list((tmp_path / "recordings").rglob("*.mkv"))


def test_a_timelapse_keeps_one_frame_per_interval_and_plays_like_a_recording(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(10)
        env = {"CAMHUB_SOURCES": f"yard={camera.url}", "CAMHUB_RECORD": "off", "CAMHUB_TIMELAPSE_S": "0.5"}
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            (lapse,) = wait_until(lambda: [r for r in get_json(f"{hub.url}/api/cameras/yard/recordings")
                                           if r["frames"] >= 6], timeout=20, what="6 time-lapse frames")
            assert lapse["kind"] == "timelapse" and lapse["open"] is True
            assert lapse["end"] - lapse["start"] >= 2.4  # one frame per half second of real time
        with running(HubProcess(mosquitto.port, tmp_path, env={**env, "CAMHUB_TIMELAPSE_S": "0"})) as hub:
            hub.wait_ready()
            (lapse,) = closed(hub)
            path = tmp_path / "recordings" / "yard" / f"{lapse['id']}.mkv"
            stamps = ffprobe_packets(path)
            assert len(stamps) == lapse["frames"] and stamps[1] - stamps[0] == 0.1  # plays at 10 frames/s
            with StreamReader(f"{hub.url}{lapse['stream']}") as reader:
                assert [p.body for p in reader.parts(lapse["frames"])] == stored_jpegs(path, tmp_path / "x")


def _get(url: str, password: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read(4096)  # a playback is endless enough: its start is enough
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_recordings_need_credentials_or_the_cameras_view_token_like_its_stream(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    password = "rec-pass-123"
    with serve_in_thread(Quirks(fps=10)) as camera:
        camera.jpegs = scenes.still(5)
        env = _always(camera.url, CAMHUB_AUTH="on", CAMHUB_HUB_PASSWORD=password)
        with running(HubProcess(mosquitto.port, tmp_path, env=env)) as hub:
            hub.wait_ready()
            api = f"{hub.url}/api/cameras/yard/recordings"
            rec = wait_until(lambda: [r for r in json.loads(_get(api, password)[1]) if not r["open"]],
                             what="a closed recording")[0]
            token = json.loads(_get(f"{hub.url}/api/cameras/yard/urls", password)[1])["stream"].split("token=")[1]
            for path in (rec["stream"], rec["download"]):
                assert _get(hub.url + path)[0] == 401, path
                assert _get(hub.url + path, "wrong")[0] == 401, path
                status, body = _get(f"{hub.url}{path}?token={token}")
                assert status == 200 and body, path
            assert _get(f"{api}?token={token}")[0] == 401  # the token plays recordings; it does not list them
            assert _get(f"{hub.url}/cameras/yard/recordings/{rec['id']}/stream?token={token}&speed=0")[0] == 400
            assert _get(f"{hub.url}/cameras/yard/recordings/1-motion/stream?token={token}")[0] == 404
            assert _get(f"{hub.url}/cameras/yard/recordings/..%2f..%2fcameras/video.mkv?token={token}")[0] == 404


def test_an_open_recording_holds_no_threads_of_its_own(tmp_path: Path) -> None:
    """Each camera has a segment and a time-lapse open all the time, and segments are cut every few minutes:
    libavcodec's default (a pool of cores + 1 encoder threads per open file, although nothing is encoded)
    made that 2 threads per open file on this machine, created and ended with every file."""
    import os

    from camhub.hub.taps.segments import SegmentWriter

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    jpeg = scenes.still(count=1, size=(160, 120))[0]
    before = threads()
    writers = [SegmentWriter(tmp_path / f"{n}.mkv", time.time(), jpeg, "test") for n in range(4)]
    for writer in writers:
        writer.write(jpeg, time.time())
    during = threads()
    for writer in writers:
        writer.close()
    assert during == before
    assert all(len(ffprobe_packets(tmp_path / f"{n}.mkv")) == 1 for n in range(4))


def test_retention_that_deletes_a_cameras_last_recording_forgets_the_camera(tmp_path: Path) -> None:
    """Over months cameras come and go: the index keeps no entry for a camera none of whose recordings is left
    (in process: the store and its writer thread, real files)."""
    from camhub.hub.taps.recordings import RecordSettings, Segment, Store

    jpeg = scenes.still(count=1, size=(160, 120))[0]
    segment_bytes = 3 * len(jpeg)  # each segment below: three frames
    store = Store(RecordSettings(root=tmp_path, preroll_s=0.0, postroll_s=0.0, segment_s=300.0, keep_days=7.0,
                                 max_gb=2.5 * segment_bytes / 1e9, min_free_gb=0.0, timelapse_s=0.0), lambda: None)
    store.start()
    start = time.time()
    for n, camera in enumerate(["gone", "kept", "kept", "kept"]):  # the oldest first; two and a half fit
        segment = Segment(camera, "always", start + n)
        for k in range(3):
            assert store.submit_frame(segment, jpeg, segment.start + k / 10)
        store.submit("close", segment)
    store.stop()
    assert store.recordings("gone") == [] and len(store.recordings("kept")) == 2
    assert store.sizes()["index_cameras"] == 1
    assert not list((tmp_path / "gone").glob("*.mkv"))
