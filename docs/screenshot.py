"""Screenshots of the dashboard for the README, taken from the real thing.

Starts ``camhub demo`` (embedded broker, simulated nodes, the hub) on free loopback ports, adds a
camera that then dies (so the grid shows an offline one) and a few extra viewers with the user
agents of common players (so the camera view has something to show), waits until the pictured
camera's realistic scene has been crossed a few times (every 20-60 s, as in the demo; with a
post-roll of 4 s instead of 10 so that the crossings stay separate recordings: two to three
minutes), then saves ``docs/dashboard-grid.png``
(taken while a tile shows *Motion*) and ``docs/dashboard-camera.png`` (the camera page, its timeline
of the last 10 minutes with the motion events and recordings) with headless Debian chromium.

    .venv/bin/python docs/screenshot.py [--nodes 7] [--out-dir docs]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import chromium, page  # noqa: E402  (after the path set-up above)

SCENE_PERIOD_S = 40  # the demo's: a crossing every 20-60 s per camera
RECORDINGS = 2  # closed recordings of the pictured camera before its page is taken
PLAYERS = ["VLC/3.0.20 LibVLC/3.0.20", "HomeAssistant/2024.6.1 aiohttp/3.9.5"]
GONE_PLAYER = "Lavf/60.16.100"  # ffmpeg: connects, takes a few frames, leaves (a "closed" disconnect)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"screenshot: {what} did not happen within {timeout:.0f} s")


def watch(url: str, user_agent: str, stop: threading.Event, seconds: float | None = None) -> None:
    """A stream viewer with a given user agent, reading until told to stop (or for ``seconds``)."""
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    end = time.monotonic() + seconds if seconds else None
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            while not stop.is_set() and (end is None or time.monotonic() < end):
                if not resp.read(16384):
                    return
    except OSError:
        return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=7)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    args = parser.parse_args()

    port, mqtt_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CAMHUB_AUTH": "off", "PYTHONUNBUFFERED": "1", "CAMHUB_RECORD_POSTROLL_S": "4"}
    log = tempfile.NamedTemporaryFile("w", prefix="camhub-screenshot-", suffix=".log", delete=False)  # noqa: SIM115
    demo = subprocess.Popen([sys.executable, "-m", "camhub", "demo", "--port", str(port), "--mqtt-port",
                             str(mqtt_port), "--nodes", str(args.nodes), "--fps", "8", "--frame-size", "VGA"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    extra = None
    stop = threading.Event()
    try:
        wait_until(lambda: sum(c["state"] == "streaming" for c in get_json(base + "/api/cameras")) >= args.nodes,
                   180, f"{args.nodes} demo cameras streaming")

        # A camera that was seen and then died: the grid lists it, greyed, with "last seen …".
        extra = subprocess.Popen(
            [sys.executable, "-m", "camhub", "node", "--sim", "--id", "attic", "--http-port", str(free_port()),
             "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_port), "--fps", "4", "--frame-size", "VGA"],
            cwd=ROOT, env={**env, "CAMHUB_NODE_NAME": "Attic"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_until(lambda: any(c["id"] == "attic" and c["state"] == "streaming"
                               for c in get_json(base + "/api/cameras")), 30, "the extra camera streaming")
        time.sleep(1.5)
        extra.kill()
        extra.wait()

        streaming = [c["id"] for c in get_json(base + "/api/cameras") if c["state"] == "streaming"]
        camera = "front-door" if "front-door" in streaming else streaming[0]
        stream = f"{base}/cameras/{camera}/stream"
        wait_until(lambda: sum(not r["open"] for r in get_json(f"{base}/api/cameras/{camera}/recordings"))
                   >= RECORDINGS, 5 * SCENE_PERIOD_S, f"{RECORDINGS} recordings of {camera}")
        threads = [threading.Thread(target=watch, args=(stream, ua, stop), daemon=True) for ua in PLAYERS]
        threads.append(threading.Thread(target=watch, args=(stream, GONE_PLAYER, stop, 2.0), daemon=True))
        for thread in threads:
            thread.start()
        wait_until(lambda: any(c["id"] == "attic" and c["state"] == "offline"
                               for c in get_json(base + "/api/cameras")), 30, "the extra camera offline")
        time.sleep(5)  # so that its tile reads "last seen … s ago"

        with chromium() as browser, page(browser, viewport={"width": 1440, "height": 900}) as pg:
            pg.set_default_timeout(120_000)  # a busy machine may take its time
            pg.set_default_navigation_timeout(120_000)
            pg.goto(base + "/")
            pg.wait_for_function(f"document.querySelectorAll('#grid .tile img.frame.live').length >= {args.nodes}",
                                 timeout=30_000)
            time.sleep(2)
            # someone crossing a camera's picture: its tile shows Motion (and Rec)
            pg.locator("#grid .tile .motion-chip:visible").first.wait_for(timeout=4 * SCENE_PERIOD_S * 1000)
            time.sleep(0.6)  # the tile's next picture, with the walker in it
            pg.screenshot(path=str(args.out_dir / "dashboard-grid.png"), full_page=True, timeout=120_000)

            pg.goto(f"{base}/#/camera/{camera}")
            pg.wait_for_function("document.querySelector('.stream-box').dataset.stream === 'playing'"
                                 " && document.querySelectorAll('#viewers-body tr').length >= 3"
                                 " && document.querySelectorAll('#disconnects-body tr').length >= 1",
                                 timeout=30_000)
            pg.select_option("#timeline-window", "ten")  # the last 10 minutes: each event and recording shows
            pg.wait_for_function("document.querySelectorAll('#timeline .tl-rec').length >= 2", timeout=30_000)
            time.sleep(6)  # a few seconds of the fps sparkline
            pg.mouse.move(10, 10)
            pg.screenshot(path=str(args.out_dir / "dashboard-camera.png"), full_page=True, timeout=120_000)
        print(f"saved {args.out_dir / 'dashboard-grid.png'} and {args.out_dir / 'dashboard-camera.png'}")
        return 0
    except BaseException:
        print(f"screenshot: the demo's output is in {log.name}", file=sys.stderr)
        raise
    finally:
        stop.set()
        if extra is not None and extra.poll() is None:
            extra.kill()
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # the demo stops its nodes and hub cleanly
            try:
                demo.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
