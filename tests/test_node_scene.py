"""What the simulated camera shows: a still scene someone crosses on the camera's own schedule, now and then
a change of light; or (``--scene busy``) motion on every frame. Judged by the hub's own motion detector on the
frames the real firmware streams, on both node runtimes."""

from __future__ import annotations

import subprocess
import time

import pytest

from camhub.hub.taps.motion import Detector, MotionSettings
from camhub.sim import vm as nodevm
from camhub.sim.demo import DEMO_CAMERAS
from camhub_node import scene
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import ROOT, RUNTIMES, SimNode

DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01, any wall-clock time would do


def test_crossings_are_20_to_60_s_apart_and_each_camera_has_its_own() -> None:
    firsts = set()
    for node_id, _name in DEMO_CAMERAS:
        schedule = scene.Schedule(node_id)
        crossings = schedule.crossings(T0, T0 + DAY_MS)
        starts = [start for start, _ in crossings]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert min(gaps) >= 20_000 and max(gaps) <= 60_000, (node_id, min(gaps), max(gaps))
        assert all(end - start == scene.CROSSING_MS for start, end in crossings)
        firsts.add(starts[0] % 60_000 // 1000)
        changes = schedule.light_changes(T0, T0 + DAY_MS)
        assert len(changes) > DAY_MS / (scene.DIM_EVERY * 40_000)  # now and then: every few minutes
        for at, _light in changes:  # never while someone crosses, nor in the seconds around it
            assert all(at + 5_000 <= start or end + 5_000 <= at for start, end in crossings), (node_id, at)
    assert len(firsts) >= 6  # the eight demo cameras do not move together


def _scores(url: str, seconds: float) -> list[tuple[float, float]]:
    """(capture time, motion score) of the frames of ``seconds`` of the stream, counted in capture time (a
    loaded machine that reads slowly gets fewer frames of the same span, not a shorter span), scored as the hub
    does."""
    detector = Detector(MotionSettings())
    out: list[tuple[float, float]] = []
    with StreamReader(url) as reader:
        give_up = time.monotonic() + 3 * seconds + 30
        while not out or out[-1][0] - out[0][0] < seconds:
            assert time.monotonic() < give_up, f"the stream did not cover {seconds} s of capture time"
            part = reader.read_part()
            out.append((part.timestamp, detector.score(part.body)))
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_realistic_scene_is_still_except_when_someone_crosses_it_on_schedule(runtime: str) -> None:
    period_s = scene.PERIOD_MIN_S
    node = SimNode("garden", None, fps=10, frame_size="QVGA", runtime=runtime,
                   env={"CAMHUB_SIM_PERIOD_S": str(period_s)})
    try:
        node.wait_ready(timeout=30)
        # Three periods: a crossing that began just before the first frame holds the settle point until
        # 5 s after it ends, which can skip the next slot's crossing; the one after still ends inside the
        # window (crossings start 1/4 to 3/4 - 3 s into their slot; 2.2 periods left none, now and then).
        scores = _scores(node.url + "/stream", 3.0 * period_s)
    finally:
        node.stop()
    threshold = MotionSettings().min_area_pct
    schedule = scene.Schedule("garden", period_s * 1000)
    first, last = scores[0][0], scores[-1][0]
    crossings = [(a / 1000, b / 1000) for a, b in schedule.crossings(int(first * 1000), int(last * 1000))]
    # The background starts from the first frame; let it settle (if someone was crossing then, until
    # their picture has faded from it: the hub's detector behaves the same when it meets a camera)
    settled = max([first + 1.0] + [b + 5.0 for a, b in crossings if a <= first + 1.0])
    for at, score in scores:
        during = any(a - 0.1 <= at <= b + 0.1 for a, b in crossings)
        if at > settled and not during:
            assert score < threshold, f"motion {score}% at {at - first:.1f} s while the scene was still"
    whole = [(a, b) for a, b in crossings if a > settled and b < last]
    assert whole, "no whole crossing in the window"
    for a, b in whole:
        moving = [score for at, score in scores if a <= at <= b]
        assert sum(s >= threshold for s in moving) >= 0.6 * len(moving), (a - first, moving)


def test_a_busy_scene_moves_on_every_frame() -> None:
    node = SimNode("busy", None, fps=10, frame_size="QVGA", extra=["--scene", "busy"])
    try:
        node.wait_ready(timeout=30)
        scores = _scores(node.url + "/stream", 3.0)
    finally:
        node.stop()
    assert all(score >= MotionSettings().min_area_pct for _, score in scores[1:]), scores


def test_picking_a_frame_allocates_nothing_on_micropython() -> None:
    """``Scene.index`` runs for every frame: within a period it allocates nothing on the board's interpreter."""
    binary = nodevm.find_micropython()
    assert binary, nodevm.MISSING
    code = (
        "import gc, time\n"
        "from camhub_node import scene\n"
        "def frames(s, t, end):\n"  # a frame every 20 ms through a whole period, its crossing included
        "    while t < end:\n"
        "        s.index(t)\n"
        "        t += 20\n"
        "s = scene.Scene(scene.REALISTIC, 8, 30, scene.Schedule('garden', 40000))\n"
        "s.index(time.time_ns() // 1000000)\n"
        "start, end = s.schedule.slot_start + 1, s.schedule.slot_start + 39000\n"
        "before = 0\n"  # (a new global's first store grows the module's dict: not the scene's doing)
        "gc.collect(); gc.disable()\n"
        "before = gc.mem_alloc()\n"
        "frames(s, start, end)\n"
        "print(gc.mem_alloc() - before)\n")
    done = subprocess.run([binary, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'cameras')!r})\n{code}"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == 0
