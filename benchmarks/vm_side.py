"""The VM side of the node benchmarks: runs inside MicroPython's or CircuitPython's Unix port (``-X heapsize=N``).

Started by ``benchmarks/vm.py`` after ``camhub_node.unixport.prepare()``; prints one line
``RESULT {json}`` for the CPython side. MicroPython code (no annotations). Modes:

- ``serve_example PORT FPS FRAMES SIZE``: the Adafruit example's pattern as a server.
- ``alloc camhub|example SIZE FRAMES DRAIN_PORT VIEWERS FRAMES_DIR``: bytes the VM allocates per
  frame, ``gc.mem_alloc()`` deltas with the collector off around each frame (and a collection
  before it): the capture (take + copy into the pool) and the send path (publish, then pumps 3 ms
  apart as the node's fan-out task does until the frame is out; or the example's per-viewer
  sends) separately, viewers drained by the CPython side.
- ``idle node|empty SECONDS``: CPU (``/proc/self/stat``) and allocation rate of the real node with no
  viewers (settings from the environment, as the node reads them) or of an asyncio loop running only
  the same sampler.
- ``settings FILE ROUNDS``: what the start-up check of a board's settings.toml costs
  (``camhub_node.keys``): heap kept by importing the key list, bytes allocated while importing it,
  bytes and microseconds per check of FILE, microseconds per suggestion. Started by
  ``benchmarks/settings_keys.py`` without ``prepare()`` (which imports the list itself), on
  MicroPython's or CircuitPython's VM.
"""

import gc
import json
import sys
import time

SETTLE_FRAMES = 50
COLLECT_EVERY = 1  # frames between collections (outside the measured region): the example copies every frame
SAMPLE_S = 0.25
PUMP_MS = 3  # node.py _fanout_task's pause while frames are in flight


def _result(values):
    print("RESULT " + json.dumps(values))


def _cpu_s():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, USER_HZ ticks


def _camhub_path(camera, socks):
    from adafruit_ticks import ticks_ms

    from camhub_node.fanout import Fanout
    from camhub_node.frames import FramePool
    from camhub_node.unixport import UnixPortPlatform

    platform = UnixPortPlatform()
    pool = FramePool(len(socks) + 2, len(camera._buffer))
    fanout = Fanout(len(socks), 5000, ticks_ms, None, platform.prepare_viewer)
    for sock in socks:
        fanout.add(sock, "127.0.0.1:0", "bench")

    def capture():
        ts_s, ts_us = platform.wall_time()
        return pool.store(camera.take(), ts_s, ts_us, ticks_ms())

    def send(frame):
        fanout.publish(frame)
        while fanout.pump():
            time.sleep_ms(PUMP_MS)  # as the node's fan-out task waits between pumps while busy

    return capture, send


def _example_path(camera, socks):
    from example_pattern import example_response_class

    stream_class = example_response_class()

    class Request:  # what Response needs of a request: the connection
        def __init__(self, sock):
            self.connection = sock

    viewers = []
    for sock in socks:
        sock.settimeout(1)  # as Server.poll() leaves the connection
        viewers.append(stream_class(Request(sock)))

    def send(frame):
        for viewer in viewers:
            viewer.send_frame(frame)

    return camera.take, send


def alloc(kind, frame_size, frames, port, viewers, frames_dir):
    from camhub_node.unixport import FileCamera, SocketPool

    pool = SocketPool()
    camera = FileCamera(frames_dir, frame_size, 12)
    socks = []
    for _ in range(viewers):
        sock = pool.socket()
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    capture, send = (_camhub_path if kind == "camhub" else _example_path)(camera, socks)
    for _ in range(SETTLE_FRAMES):
        send(capture())
    captured = sent = worst = 0
    size = 0
    gc.collect()
    gc.disable()
    try:
        for i in range(frames):
            if i % COLLECT_EVERY == 0:
                gc.collect()
            a0 = gc.mem_alloc()
            frame = capture()
            a1 = gc.mem_alloc()
            send(frame)
            a2 = gc.mem_alloc()
            captured += a1 - a0
            sent += a2 - a1
            worst = max(worst, a2 - a1)
            size = len(frame) if kind != "camhub" else frame.length
    finally:
        gc.enable()
    gc.collect()
    _result({"capture_per_frame": captured / frames, "send_per_frame": sent / frames, "send_worst": worst,
             "frame_bytes": size, "free_heap": gc.mem_free(), "heap": gc.mem_free() + gc.mem_alloc()})


async def _sampler(asyncio, seconds, done):
    from adafruit_ticks import ticks_diff, ticks_ms

    await asyncio.sleep(1)  # settle
    gc.collect()
    gc.disable()
    allocated = 0
    cpu0 = _cpu_s()
    t0 = ticks_ms()
    base = gc.mem_alloc()
    while ticks_diff(ticks_ms(), t0) < seconds * 1000:
        await asyncio.sleep(SAMPLE_S)
        allocated += gc.mem_alloc() - base
        gc.collect()
        base = gc.mem_alloc()
    elapsed = ticks_diff(ticks_ms(), t0) / 1000
    cpu = _cpu_s() - cpu0
    gc.enable()
    _result({"seconds": elapsed, "cpu_percent": 100 * cpu / elapsed, "alloc_per_s": allocated / elapsed})
    done()


def idle(kind, seconds):
    import asyncio

    if kind == "empty":
        asyncio.run(_sampler(asyncio, seconds, lambda: None))
        return
    from camhub_node.config import Config
    from camhub_node.node import Node
    from camhub_node.unixport import UnixPortPlatform

    platform = UnixPortPlatform()
    cfg = Config(defaults=platform.defaults())
    platform.start(cfg)
    node = Node(platform, cfg)

    async def both():
        await asyncio.gather(node.run(), _sampler(asyncio, seconds, node.request_stop))

    asyncio.run(both())


def settings(path, rounds):
    gc.collect()
    import camhub_node  # the package itself (a version string) is not the list's cost

    gc.collect()
    base = gc.mem_alloc()
    gc.disable()
    from camhub_node import keys

    imported = gc.mem_alloc() - base  # compiling keys.py: what the import needs at its peak
    gc.enable()
    gc.collect()
    kept = gc.mem_alloc() - base
    gc.disable()
    before = gc.mem_alloc()
    keys.report(keys.file_keys(path), "settings.toml", lambda line: None)
    check_bytes = gc.mem_alloc() - before
    gc.enable()
    started = time.ticks_us()
    for _ in range(rounds):
        keys.report(keys.file_keys(path), "settings.toml", lambda line: None)
    check_us = time.ticks_diff(time.ticks_us(), started) / rounds
    started = time.ticks_us()
    for _ in range(rounds):
        keys.nearest("CAMHUB_HUB_PASWORD")
    nearest_us = time.ticks_diff(time.ticks_us(), started) / rounds
    del sys.modules["camhub_node.keys"]
    del camhub_node.keys
    keys = None
    gc.collect()
    _result({"import_kept_bytes": kept, "import_allocated_bytes": imported, "check_bytes": check_bytes,
             "check_us": check_us, "nearest_us": nearest_us,
             "kept_after_forgetting_bytes": gc.mem_alloc() - base})


def main(argv):
    mode = argv[0]
    if mode == "serve_example":
        from example_pattern import serve_example

        from camhub_node.unixport import FileCamera, SocketPool

        port, fps, frames_dir, frame_size = int(argv[1]), int(argv[2]), argv[3], argv[4]
        serve_example(SocketPool(), FileCamera(frames_dir, frame_size, 12), port, fps)
    elif mode == "alloc":
        alloc(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    elif mode == "idle":
        idle(argv[1], float(argv[2]))
    elif mode == "settings":
        settings(argv[1], int(argv[2]))
    else:
        print("unknown mode", mode)
        sys.exit(2)
