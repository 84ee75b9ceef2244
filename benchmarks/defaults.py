"""The defaults at home: the hub with motion detection and recordings on, against Debian's ``motion`` daemon.

The home workload: 8 simulated cameras (``camhub node --sim``, each its own process) at 15 fps VGA,
2 viewers on each camera, motion detection and recording on. For each scene (``--scenes``:
``realistic``, the default scene, someone crossing each camera every 20-60 s; ``busy``, motion on every
frame) and each server (``--servers``):

- ``hub``: ``camhub hub`` with its defaults (motion on, recordings on motion, into a temporary state
  directory), the nodes found over MQTT, the viewers on ``/cameras/<id>/stream``;
- ``motion``: Debian's ``motion`` daemon (what motionEye drives), with Debian's own
  ``/etc/motion/motion.conf`` as it ships (threshold 1500 pixels, event gap 60 s, 3 pre-capture
  frames, movies as ``mkv``, text overlays) plus one camera file per node: ``netcam_url`` the node's
  stream, ``stream_port`` for its 2 viewers (``stream_maxrate 15``), movies into a temporary
  ``target_dir``. It has no webcontrol and no retention (motionEye deletes old files itself).

one after the other on the same nodes: warm up, then a window (``--window``, 240 s) in which the
server's CPU time (all threads and children, ``/proc/<pid>/task/*/schedstat``), the frames the nodes
captured (their ``/status``), the frames delivered to viewers and the bytes added to the recordings
directory are measured. Printed: CPU per camera frame, the share of a core, disk written per hour.
Everything runs on 127.0.0.1 and is stopped at the end (also on Ctrl-C).

    .venv/bin/python benchmarks/defaults.py                       # ≈ 20 min: 2 scenes × 2 servers × 4 min
    .venv/bin/python benchmarks/defaults.py --window 60 --scenes busy --servers hub   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fanout  # noqa: E402  (benchmarks/ is this script's directory)

from tests.support.procs import Mosquitto, Process, camhub_cmd, free_port, wait_for_http  # noqa: E402
from tests.support.waiting import get_json  # noqa: E402

MOTION_CONF = Path("/etc/motion/motion.conf")
# Keys of Debian's motion.conf that this benchmark sets itself (paths, ports, one camera file per node).
OWN_KEYS = ("daemon", "setup_mode", "log_file", "target_dir", "webcontrol_port", "stream_port", "video_device",
            "videodevice", "pid_file", "camera", "camera_dir")


def disk_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (the recordings so far)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def node_frames(streams: list[str]) -> int:
    """Frames captured so far by all nodes (their ``/status``)."""
    return sum(get_json(url.removesuffix("/stream") + "/status")["frames"] for url in streams)


def motion_missing() -> str | None:
    if shutil.which("motion") is None or not MOTION_CONF.exists():
        return "Debian's motion is not installed (apt-get install motion)"
    return None


def start_motion(ctx: fanout.Context, recordings: Path, fps: int, width: int, height: int) -> tuple[Process, list[str]]:
    """``motion -n`` with Debian's configuration and one camera file per node; its stream URL per camera."""
    work = ctx.workdir / "motion"
    work.mkdir(exist_ok=True)
    lines = [line for line in MOTION_CONF.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith(("#", ";")) and line.split()[0] not in OWN_KEYS]
    lines += ["daemon off", "setup_mode off", f"log_file {work / 'motion.log'}", f"target_dir {recordings}",
              "webcontrol_port 0", "stream_port 0"]
    urls = []
    for k, (node_id, stream) in enumerate(zip(ctx.node_ids, ctx.node_streams, strict=True)):
        port = free_port()
        camera = work / f"camera{k + 1}.conf"
        camera.write_text(f"camera_id {k + 1}\ncamera_name {node_id}\nnetcam_url {stream}\nwidth {width}\n"
                          f"height {height}\nframerate {fps}\nstream_port {port}\nstream_maxrate {fps}\n"
                          f"stream_localhost on\ntarget_dir {recordings / node_id}\n")
        lines.append(f"camera {camera}")
        urls.append(f"http://127.0.0.1:{port}/")
    conf = work / "motion.conf"
    conf.write_text("\n".join(lines) + "\n")
    return Process(["motion", "-n", "-c", str(conf)], name="motion"), urls


def start_nodes(args: argparse.Namespace, scene: str, mqtt_port: int, children: fanout.Children) -> fanout.Nodes:
    procs, streams = [], []
    for k in range(args.cameras):
        port = free_port()
        proc = children.add(Process(camhub_cmd(
            "node", "--sim", "--id", f"bench{k + 1}", "--http-port", str(port), "--mqtt-host", "127.0.0.1",
            "--mqtt-port", str(mqtt_port), "--fps", str(args.fps), "--frame-size", args.frame_size,
            "--scene", scene), env={"CAMHUB_MAX_CLIENTS": "4"}, name=f"node-bench{k + 1}"))
        procs.append(proc)
        streams.append(f"http://127.0.0.1:{port}/stream")
    for proc, stream in zip(procs, streams, strict=True):
        wait_for_http(stream.removesuffix("/stream") + "/status", timeout=60, proc=proc.proc)
    return fanout.Nodes([p.pid for p in procs], streams)


def run_one(args: argparse.Namespace, scene: str, server: str, nodes: fanout.Nodes, mqtt_port: int,
            children: fanout.Children, workdir: Path) -> dict:
    ids = [f"bench{k + 1}" for k in range(args.cameras)]
    ctx = fanout.Context(mqtt_port, ids, nodes.streams, "node", workdir, "mqtt")
    if server == "hub":
        proc, urls = fanout.start_hub(ctx, motion=True)
        recordings = workdir / "hub-motion-state" / "recordings"
    else:
        width, height = (int(x) for x in args.size)
        recordings = workdir / f"motion-{scene}"
        proc, urls = start_motion(ctx, recordings, args.fps, width, height)
    children.add(proc)
    try:
        for url in urls:
            fanout.wait_stream(url, proc, 60)
        time.sleep(args.warmup)
        st = fanout.Settings(fps=args.fps, frame_bytes=1.0, throttle_frames=0, throttle_rcvbuf=16384, warmup=2.5,
                             window=args.window, grace=1.0, load_procs=1, direct=False, clock="kernel")
        marks: dict[str, float] = {}
        if server == "hub":
            hub = urls[0].split("/cameras/")[0]

            def events() -> int:  # motion events started so far (the hub's counter)
                return sum(len(get_json(f"{hub}/api/cameras/{i}/motion")) for i in ids)
        else:
            def events() -> int:
                log = workdir / "motion" / "motion.log"
                return log.read_text(errors="replace").count("Motion detected - starting event") if log.exists() else 0

        def at_window(seconds: float) -> None:  # the window's start; its end is sampled by a timer
            marks.update(disk0=disk_bytes(recordings), frames0=node_frames(nodes.streams), events0=events(),
                         t0=time.time())

            def end() -> None:
                marks.update(disk1=disk_bytes(recordings), frames1=node_frames(nodes.streams), events1=events(),
                             t1=time.time())
            timer = threading.Timer(seconds, end)
            timer.daemon = True
            timer.start()

        result = fanout.measure(urls, args.viewers, proc.pid, nodes, st, children, workdir, at_window=at_window)
        span = marks["t1"] - marks["t0"]
        frames = marks["frames1"] - marks["frames0"]
        written = marks["disk1"] - marks["disk0"]
        cpu = result["server_cpu_s"]
        row = {"scene": scene, "server": server, "window_s": round(span, 1), "camera_frames": frames,
               "camera_fps": round(frames / span, 1), "delivered_frames": result["delivered_frames"],
               "cpu_s": cpu, "cpu_ms_per_frame": round(1000 * cpu / frames, 3) if frames else float("nan"),
               "cores": round(cpu / span, 3), "disk_mb_per_hour": round(written / span * 3600 / 1e6, 1),
               "node_cpu_pct": result["node_cpu_pct"], "load_cpu_pct": result["load_cpu_pct"],
               "background_cores": result["background_cores"], "events": marks["events1"] - marks["events0"]}
        return row
    finally:
        children.stop(proc)


def table(rows: list[dict]) -> str:
    head = ("| scene | server | CPU ms per camera frame | cores (of one) | disk written MB/hour "
            "| motion events started | camera fps (all cameras) | frames to viewers | node CPU % | background cores |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['server']} | {r['cpu_ms_per_frame']:.3f} | {r['cores']:.3f} "
                     f"| {r['disk_mb_per_hour']:,.0f} | {r['events']} | {r['camera_fps']} | {r['delivered_frames']} "
                     f"| {r['node_cpu_pct']} | {r['background_cores']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenes", default="realistic,busy")
    parser.add_argument("--servers", default="hub,motion")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--frame-size", default="VGA")
    parser.add_argument("--viewers", type=int, default=2, help="viewers per camera")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=240.0, help="seconds measured per scene and server")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "cameras"))
    from camhub_node.config import FRAME_SIZES

    args.size = FRAME_SIZES[args.frame_size.upper()]
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if "motion" in servers and motion_missing():
        print(f"motion: MISSING — {motion_missing()}; measuring the hub only", flush=True)
        servers.remove("motion")
    children = fanout.Children()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    rows: list[dict] = []
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="camhub-defaults-") as tmp:
        try:
            broker = children.broker = Mosquitto()
            for scene in scenes:
                nodes = start_nodes(args, scene, broker.port, children)
                for server in servers:
                    workdir = Path(tmp) / f"{scene}-{server}"
                    workdir.mkdir()
                    row = run_one(args, scene, server, nodes, broker.port, children, workdir)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                for proc in list(children.procs):
                    children.stop(proc)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping everything", file=sys.stderr)
            return 130
        finally:
            children.stop_all()
    print()
    print(table(rows))
    print(f"\n{args.cameras} cameras × {args.fps} fps {args.frame_size}, {args.viewers} viewers each; "
          f"{args.window:.0f} s window after {args.warmup:.0f} s of warm-up per row")
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
          f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
