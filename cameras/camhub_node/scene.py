"""What a simulated camera shows, and when. Node code: CircuitPython, MicroPython and CPython.

Two scenes (``CAMHUB_SIM_SCENE``; ``--scene`` of ``camhub node --sim`` and ``camhub demo``):

- ``realistic``, the default: a still view with sensor noise. Once per period (``CAMHUB_SIM_PERIOD_S``,
  40 s: every 20 to 60 s) someone crosses it, in ``CROSSING_MS``; one period in ``DIM_EVERY`` the
  light is dimmed, switched at once between two crossings, as a lamp or a cloud does. The hub's
  motion detector reports the crossings and learns the light (it relearns a picture that changed
  almost everywhere at once). Each camera has its own phase (from its id), so cameras do not move
  together.
- ``busy``: a test pattern whose box moves on every frame, so motion never ends: the hub's worst
  case, for benchmarks and load tests.

The pictures are rendered once on the PC side (``simcam.render_scene``, Pillow) into one list:
``realistic`` holds, for each light (0 = day, 1 = dim), ``still`` frames of the still view (the same
view, fresh noise and overlay in each) followed by the crossing's ``crossing`` frames; ``busy`` is one
loop. ``Scene.index(now_ms)`` picks the frame for a picture taken at wall-clock time ``now_ms``
(integer milliseconds): nothing allocated per frame, the schedule worked out once per period.

The schedule is a function of the node id, the period and the wall clock only, so a test or a tool
knows when each camera's crossings and light changes happen (``Schedule.crossings``,
``Schedule.light_changes``) without asking the node.
"""

from camhub_node.config import ConfigError

REALISTIC = "realistic"
BUSY = "busy"
SCENES = (REALISTIC, BUSY)
DEFAULT_SCENE = REALISTIC

PERIOD_S = 40  # a crossing per period, at a random point of its middle half: 20..60 s apart
PERIOD_MIN_S = 8  # the crossing must fit the middle half of a period: period / 2 >= CROSSING_MS
PERIOD_MAX_S = 86400
CROSSING_MS = 3000  # how long someone takes to cross the picture
DIM_EVERY = 4  # one period in this many is dim
STILL_FRAMES = 8  # noisy variants of the still view, per light
CROSSING_FPS_MAX = 15  # frames rendered per second of crossing, at most (a faster camera repeats some)

_MASK32 = 0xFFFFFFFF


def seed_of(text):
    """A 32-bit FNV-1a hash of ``text``: the same number on every interpreter (``hash()`` is not)."""
    h = 0x811C9DC5
    for ch in text:
        h = ((h ^ ord(ch)) * 0x01000193) & _MASK32
    return h


def _mix(x):
    """A well-stirred 32-bit function of ``x`` (Chris Wellons' lowbias32)."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def crossing_frames(fps):
    """How many frames a crossing is rendered with at ``fps``."""
    return max(2, min(fps, CROSSING_FPS_MAX) * CROSSING_MS // 1000)


def settings(getenv):
    """``(scene, period_ms)`` from ``CAMHUB_SIM_SCENE`` and ``CAMHUB_SIM_PERIOD_S``; ConfigError if bad."""
    raw = getenv("CAMHUB_SIM_SCENE")
    kind = str(raw).strip().lower() if raw is not None and str(raw).strip() else DEFAULT_SCENE
    if kind not in SCENES:
        raise ConfigError("CAMHUB_SIM_SCENE must be one of %s, not %r" % (", ".join(SCENES), raw))
    raw = getenv("CAMHUB_SIM_PERIOD_S")
    period = PERIOD_S
    if raw is not None and str(raw).strip():
        try:
            period = int(str(raw).strip())
        except ValueError:
            period = -1
        if not PERIOD_MIN_S <= period <= PERIOD_MAX_S:
            raise ConfigError("CAMHUB_SIM_PERIOD_S must be a whole number of seconds from %d to %d, not %r"
                              % (PERIOD_MIN_S, PERIOD_MAX_S, raw))
    return kind, period * 1000


class Schedule:
    """When a camera's crossings and light changes happen, in wall-clock milliseconds.

    Time is cut into periods of ``period_ms``, shifted by the camera's phase. In period ``k`` the
    crossing starts at a random point of the middle half (``period / 4`` to ``3 period / 4 -
    crossing``), so crossings are ``period / 2`` to ``3 period / 2`` apart and a light change (at a
    period's start) is never during one. ``light`` is 1 (dim) in one period of ``DIM_EVERY``.
    """

    def __init__(self, node_id, period_ms=PERIOD_S * 1000, crossing_ms=CROSSING_MS):
        if period_ms < 2 * crossing_ms:
            raise ValueError("a period must be at least twice the crossing")
        self.seed = seed_of(node_id)
        self.period_ms = period_ms
        self.crossing_ms = crossing_ms
        self.phase_ms = self.seed % period_ms
        self._span = period_ms // 2 - crossing_ms + 1
        self.slot = None
        self.slot_start = 0
        self.crossing_start = 0
        self.light = 0

    def _slot(self, now_ms):
        return (now_ms - self.phase_ms) // self.period_ms

    def _at(self, slot):
        """(slot start, crossing start, light) of period ``slot``."""
        start = self.phase_ms + slot * self.period_ms
        crossing = start + self.period_ms // 4 + _mix(self.seed ^ (slot & _MASK32)) % self._span
        light = 1 if (slot + self.seed) % DIM_EVERY == 0 else 0
        return start, crossing, light

    def update(self, now_ms):
        """Bring ``crossing_start`` and ``light`` to the period of ``now_ms`` (work only when it changes)."""
        slot = self._slot(now_ms)
        if slot != self.slot:
            self.slot = slot
            self.slot_start, self.crossing_start, self.light = self._at(slot)

    def crossings(self, start_ms, end_ms):
        """Every crossing ``(start, end)`` that overlaps ``[start_ms, end_ms)``, oldest first."""
        found = []
        for slot in range(self._slot(start_ms), self._slot(end_ms) + 1):
            begin = self._at(slot)[1]
            if begin < end_ms and begin + self.crossing_ms > start_ms:
                found.append((begin, begin + self.crossing_ms))
        return found

    def light_changes(self, start_ms, end_ms):
        """Every ``(time, light)`` at which the light changes in ``[start_ms, end_ms)``."""
        found = []
        for slot in range(self._slot(start_ms), self._slot(end_ms) + 1):
            at, _, light = self._at(slot)
            if start_ms <= at < end_ms and light != self._at(slot - 1)[2]:
                found.append((at, light))
        return found


class Scene:
    """Which of the pre-rendered frames a picture taken now shows (see the module's docstring)."""

    def __init__(self, kind, still, crossing=0, schedule=None):
        if kind == REALISTIC and (schedule is None or still < 1 or crossing < 1):
            raise ValueError("a realistic scene needs still and crossing frames and a schedule")
        self.kind = kind
        self.still = still
        self.crossing = crossing
        self.schedule = schedule
        self.taken = 0

    def skip_to(self, taken):
        """Go on as if ``taken`` pictures had been taken: which noisy still (or busy loop frame) comes
        next. A battery camera's wake, a fresh start each time, says how many a free-running sensor
        would have taken by now, so each wake's picture is not the first one again."""
        self.taken = taken

    def index(self, now_ms):
        """The frame for a picture taken at wall-clock ``now_ms``."""
        self.taken += 1
        if self.kind != REALISTIC:
            return self.taken % self.still
        schedule = self.schedule
        schedule.update(now_ms)
        base = schedule.light * (self.still + self.crossing)
        into = now_ms - schedule.crossing_start
        if 0 <= into < schedule.crossing_ms:
            return base + self.still + into * self.crossing // schedule.crossing_ms
        return base + self.taken % self.still
