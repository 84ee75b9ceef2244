"""The change bus: the dashboard's wake-up when anything it shows changed.

Anything may ``notify`` it (it takes any arguments, so it connects to any ``Signal``); each
server-sent-events stream waits on its own event. ``close()`` ends the streams when the hub stops.
"""

from __future__ import annotations

import asyncio


class Changes:
    """Something the dashboard shows changed: every subscriber's event is set."""

    def __init__(self) -> None:
        self._listeners: set[asyncio.Event] = set()
        self.closing = False  # the hub is stopping: streams end

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._listeners.discard(event)

    def sizes(self) -> dict[str, int]:
        return {"listeners": len(self._listeners)}

    def notify(self, *_: object) -> None:
        for event in self._listeners:
            event.set()

    def close(self) -> None:
        self.closing = True
        self.notify()
