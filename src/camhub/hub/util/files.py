"""Files the hub keeps: one durability rule, and never written on the event loop.

Every file the hub writes whole (the known cameras, the camera options, a recording's sidecar, the
token key, the trimmed motion log) goes through ``atomic_write``: the new content is written to a
temporary file beside the target, flushed and fsync'd, renamed over the target, and the directory is
fsync'd. After a crash or a power cut the file is the old one or the new one, whole, never torn.
``atomic_write`` blocks: it runs on a worker thread (``SoonWriter`` takes care of that for files the
event loop changes; the recorder's writer thread is one already).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably (blocking; raises OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None when there is no such file or it cannot be read (logged)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


class SoonWriter:
    """Keeps one file up to date with ``render()``: after a change (``soon()``) it is written within
    ``delay_s``, once for everything that changed meanwhile, on a worker thread; ``flush()`` writes
    the latest state before the hub stops. ``saves`` counts the writes."""

    def __init__(self, path: Path, render: Callable[[], str | bytes], delay_s: float, what: str) -> None:
        self.path = path
        self._render = render
        self._delay_s = delay_s
        self._what = what
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._dirty = False  # changed since the last write began
        self.saves = 0

    def soon(self) -> None:
        self._dirty = True
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._writing is not None and not self._writing.done():
            self.soon()  # the previous write is still going: try again shortly
            return
        self._dirty = False
        self._writing = asyncio.get_running_loop().create_task(asyncio.to_thread(self._write, self._render()))

    def _write(self, data: str | bytes) -> None:
        try:
            atomic_write(self.path, data)
            self.saves += 1
        except OSError as exc:
            log.warning("cannot save %s to %s: %s", self._what, self.path, exc)

    async def flush(self, always: bool = False) -> None:
        """Write what changed (or, ``always``, the current state) now, off the event loop, after any write
        still going."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            await asyncio.wait([self._writing])
        if self._dirty or always:
            self._dirty = False
            await asyncio.to_thread(self._write, self._render())
