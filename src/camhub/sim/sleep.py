"""Deep sleep on a PC: a snapshot-mode node lives one wake after another, as a board does.

On a board in deep sleep "CircuitPython must restart ``code.py`` from the beginning when awakened"
(docs.circuitpython.org, ``alarm``): RAM, sockets and Wi-Fi are gone; only ``alarm.sleep_memory``
is kept, and ``alarm.wake_alarm`` says what woke it. ``Board`` does the same with processes: each
wake is a fresh interpreter (CPython, or the MicroPython VM) running ``code.py`` from the top. The
node's ``alarm`` is the stand-in ``camhub_node.simalarm``; when the program asks for deep sleep it
writes its alarms and sleep memory into the folder ``CAMHUB_VM_ALARM`` names and ends. ``Board``
then waits for the earliest alarm -- the time alarm, or a pin alarm, which SIGUSR1 fires (the PIR
sensor of a PC) -- and starts the next wake with the alarm that woke it. A program that ends
without asking to sleep ends the run with its exit status, as code.py finishing does on a board.

SIGTERM or SIGINT while asleep ends the run at once (exit 0); while awake, the wake may finish first
(``WAKE_STOP_S``), as a board switched off after its picture.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("camhub.sleep")

POLL_S = 0.05
WAKE_STOP_S = 10.0  # a stop asked for while awake: the wake may finish this long, then it is ended

StartWake = Callable[[dict[str, str]], "subprocess.Popen[bytes]"]  # extra environment -> the wake's process


class Board:
    """One simulated board in snapshot mode: ``run()`` wakes, sleeps and wakes it until stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.wakes = 0
        self._stop = False
        self._pin = False

    # ---- signals -------------------------------------------------------------------------------
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _on_pin(self, signum: int, frame: FrameType | None) -> None:
        self._pin = True

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        handlers = {signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop, signal.SIGUSR1: self._on_pin}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ---- the run -------------------------------------------------------------------------------
    def run(self, start_wake: StartWake, service: Callable[[], None] = lambda: None) -> int:
        """Wake after wake until stopped; ``service`` is called while waiting (the VM's renders)."""
        for name in ("memory", "wake", "sleep"):  # a power-on: sleep memory is zeroed, nothing woke us
            (self.folder / name).unlink(missing_ok=True)
        with self._signals():
            woke: dict[str, Any] | None = None
            while True:
                code, request = self._wake(start_wake, service, woke)
                if request is None:
                    return code
                if self._stop:
                    return 0
                woke = self._sleep(request, service)
                if woke is None:
                    return 0

    def _wake(self, start_wake: StartWake, service: Callable[[], None],
              woke: dict[str, Any] | None) -> tuple[int, dict[str, Any] | None]:
        """Run ``code.py`` once; its exit status and its deep-sleep request (None: it asked for none)."""
        wake_file, sleep_file = self.folder / "wake", self.folder / "sleep"
        if woke is None:
            wake_file.unlink(missing_ok=True)
        else:
            wake_file.write_text(json.dumps(woke))
        sleep_file.unlink(missing_ok=True)
        self.wakes += 1
        proc = start_wake({"CAMHUB_VM_ALARM": str(self.folder)})
        stop_by: float | None = None
        while proc.poll() is None:
            service()
            if self._stop and stop_by is None:
                stop_by = time.monotonic() + WAKE_STOP_S
            if stop_by is not None and time.monotonic() > stop_by:
                log.warning("the wake did not end within %g s of the stop; ending it", WAKE_STOP_S)
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
                proc.kill()
            time.sleep(POLL_S)
        try:
            request = json.loads(sleep_file.read_text())
        except (OSError, ValueError):
            request = None
        return proc.returncode or 0, request if isinstance(request, dict) else None

    def _sleep(self, request: dict[str, Any], service: Callable[[], None]) -> dict[str, Any] | None:
        """Wait for the request's earliest alarm; what woke the board (None: stopped)."""
        seconds = request.get("seconds")
        pins = [p for p in request.get("pins") or [] if isinstance(p, dict)]
        until = None if seconds is None else time.monotonic() + float(seconds)
        log.info("deep sleep%s%s", "" if seconds is None else f" for {float(seconds):.1f} s",
                 f" or until pin {pins[0].get('pin')} (SIGUSR1)" if pins else "")
        self._pin = False  # a pin alarm is armed only now: a trigger while awake is not remembered
        while True:
            if self._stop:
                return None
            if self._pin:
                self._pin = False
                if pins:
                    log.info("woken by pin %s", pins[0].get("pin"))
                    return {"kind": "pin", "pin": pins[0].get("pin"), "value": bool(pins[0].get("value", True))}
                log.info("SIGUSR1 while no pin alarm is armed: ignored")
            if until is not None and time.monotonic() >= until:
                log.info("woken by the timer")
                return {"kind": "time"}
            service()
            time.sleep(POLL_S)


@contextlib.contextmanager
def alarm_folder() -> Iterator[Path]:
    """A fresh folder for the stand-in alarm's files, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="camhub-sleep-") as folder:
        yield Path(folder)


def run_code(code_py: str, lib: str | None = None) -> int:
    """One wake on CPython (the child process ``Board`` starts): ``code.py`` from the top, with a
    deployed ``lib/`` first if given; a deep-sleep request ends it as CircuitPython's supervisor does."""
    if lib:
        from camhub.sim.boarddir import library_path

        library_path(Path(lib))
    from camhub_node.simalarm import DeepSleepRequest  # after the path: the deployed package's own

    try:
        runpy.run_path(code_py, run_name="__main__")
    except DeepSleepRequest:
        return 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return 0


def cpython_wake(code_py: Path, lib: Path | None, env: dict[str, str],
                 preexec: Callable[[], None] | None = None) -> StartWake:
    """How ``Board`` starts a wake on CPython: a fresh interpreter running ``run_code``."""
    call = f"from camhub.sim.sleep import run_code; raise SystemExit(run_code({str(code_py)!r}, " \
           f"{None if lib is None else str(lib)!r}))"

    def start(extra: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", call], env={**os.environ, **env, **extra},
                                preexec_fn=preexec)

    return start
