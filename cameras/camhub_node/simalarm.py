"""A stand-in for CircuitPython's ``alarm`` module on a PC, for ``camhub node --sim`` in snapshot mode.

Deep sleep cannot exist on a PC, so this module follows CircuitPython's documented behaviour
(docs.circuitpython.org, ``alarm``, ``alarm.time``, ``alarm.pin``; the text is in
``shared-bindings/alarm/__init__.c``, ``shared-bindings/alarm/time/TimeAlarm.c`` and
``shared-bindings/alarm/pin/PinAlarm.c``) and the ESP32-S3's, where the node relies on it:

- ``exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=())`` "does not return": it raises
  ``DeepSleepRequest``, which the supervisor handles like ``SystemExit`` (CircuitPython raises
  ``mp_type_DeepSleepRequest`` and ``main.c`` turns it into a deep sleep). The program ends; RAM,
  sockets and Wi-Fi are gone. "When awakened, the microcontroller will restart and will run
  ``boot.py`` and ``code.py`` from the beginning": the PC runner (``camhub.sim.sleep``) waits for
  the alarm and starts ``code.py`` again in a fresh interpreter.
- ``wake_alarm``: "If no alarm occurred since the last hard reset ... ``None``"; after a deep sleep
  "an alarm *equivalent* to the one that caused the wake-up ... For time-base alarms, currently, an
  ``alarm.time.TimeAlarm()`` is created" -- here a ``TimeAlarm`` or a ``PinAlarm`` with the pin.
- ``sleep_memory``: "Memory that persists during deep sleep", bytearray-like with a fixed length:
  4096 bytes on the ESP32-S3 (``ports/espressif/common-hal/alarm/SleepMemory.h``), kept across a
  deep-sleep wake and zeroed on power-on (``SleepMemory.c``): here kept in a file between wakes,
  and all zero on the runner's first start.
- ``alarm.time.TimeAlarm(*, monotonic_time=None, epoch_time=None)``: exactly one of the two; "If the
  given time is already in the past, then an exception is raised".
- ``alarm.pin.PinAlarm(pin, value, edge=False, pull=False)``: on Espressif chips level only
  ("Cannot wake on pin edge. Only level.", ``ports/espressif/common-hal/alarm/pin/PinAlarm.c``).
  A PC has no pins: the runner fires a pin alarm when it gets SIGUSR1 (the PIR sensor).

The runner and this module talk through files in the directory ``CAMHUB_VM_ALARM`` names (not a
setting: ``pc.VM_KEYS``): ``memory`` (the sleep memory), ``wake`` (JSON: the alarm that woke
this run, absent after a power-on) and ``sleep`` (JSON, written when the program asks to sleep: the
seconds until its time alarm, its pin alarms, and the clock when it asked). PC only (CPython and the
MicroPython and CircuitPython Unix ports); copied to boards with the package, never imported there.
"""

import json
import os
import time as _time

SLEEP_MEMORY_LENGTH = 4096  # ESP32-S3 (ports/espressif/common-hal/alarm/SleepMemory.h)


class DeepSleepRequest(BaseException):
    """What ``exit_and_deep_sleep_until_alarms`` raises: the program ends here (not an ``Exception``,
    so no ``except Exception`` in the program can swallow it)."""


class TimeAlarm:
    """``alarm.time.TimeAlarm``: triggers when ``time.monotonic()`` reaches ``monotonic_time``."""

    def __init__(self, *, monotonic_time=None, epoch_time=None):
        if (monotonic_time is None) == (epoch_time is None):
            raise ValueError("Only one alarm.time alarm can be set")
        now = _time.monotonic()
        if epoch_time is not None:
            monotonic_time = now + (epoch_time - _time.time())
        if monotonic_time < now:
            raise ValueError("Time is in the past.")
        self.monotonic_time = monotonic_time


class PinAlarm:
    """``alarm.pin.PinAlarm``: triggers while ``pin`` is at ``value`` (level only, as on Espressif)."""

    def __init__(self, pin, value, edge=False, pull=False):
        if edge:
            raise ValueError("Cannot wake on pin edge. Only level.")
        self.pin = pin
        self.value = bool(value)
        self.edge = False
        self.pull = bool(pull)


class _Submodule:
    def __init__(self, name, cls):
        self.__name__ = name
        setattr(self, cls.__name__, cls)


time = _Submodule("time", TimeAlarm)  # alarm.time.TimeAlarm, as on the board
pin = _Submodule("pin", PinAlarm)  # alarm.pin.PinAlarm


class SleepMemory:
    """``alarm.SleepMemory``: bytes by index or slice, a fixed length (a slice keeps its length)."""

    def __init__(self, data):
        self._data = data

    def __len__(self):
        return len(self._data)

    def __getitem__(self, index):
        return self._data[index]

    def __setitem__(self, index, value):
        if isinstance(index, slice) and len(self._data[index]) != len(value):
            raise ValueError("Slice and value different lengths.")
        self._data[index] = value


def _path(name):
    folder = os.getenv("CAMHUB_VM_ALARM")
    return None if not folder else folder + "/" + name


def _read(name):
    path = _path(name)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _write(name, data):
    path = _path(name)
    if path is not None:
        with open(path + ".new", "wb") as f:
            f.write(data)
        os.rename(path + ".new", path)


def _load_memory():
    data = bytearray(SLEEP_MEMORY_LENGTH)
    saved = _read("memory")
    if saved is not None and len(saved) == SLEEP_MEMORY_LENGTH:
        data[:] = saved
    return data


def _load_wake_alarm():
    raw = _read("wake")
    if not raw:
        return None
    woke = json.loads(raw)
    if woke.get("kind") == "pin":
        return PinAlarm(woke.get("pin"), woke.get("value", True))
    alarm = TimeAlarm(monotonic_time=_time.monotonic() + 1)  # "an alarm equivalent to the one that caused
    alarm.monotonic_time = _time.monotonic()  # the wake-up": it went off just now
    return alarm


sleep_memory = SleepMemory(_load_memory())
wake_alarm = _load_wake_alarm()


def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
    """Save the sleep memory and the alarms for the runner, then end the program (never returns)."""
    seconds = None
    pins = []
    for alarm in alarms:
        if isinstance(alarm, TimeAlarm):
            left = alarm.monotonic_time - _time.monotonic()
            left = left if left > 0 else 0  # a sleep after the alarm's time wakes at once
            seconds = left if seconds is None or left < seconds else seconds
        elif isinstance(alarm, PinAlarm):
            pins.append({"pin": str(alarm.pin), "value": alarm.value, "pull": alarm.pull})
        else:
            raise TypeError("Expected a kind of Alarm")
    _write("memory", bytes(sleep_memory._data))
    _write("sleep", json.dumps({"seconds": seconds, "pins": pins,
                                "at_ms": int(_time.monotonic() * 1000)}).encode())
    raise DeepSleepRequest()
