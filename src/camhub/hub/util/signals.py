"""How the parts tell each other what happened, without knowing each other.

A part owns a ``Signal`` for each thing it reports (a camera changed, a motion event, a viewer came
or went, the MQTT link is up); the composition root (``app.py``) connects the listeners, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")


class Signal(Generic[P]):
    """Listeners called synchronously, in the order they connected; a listener's error reaches the
    emitter, as a direct call's would."""

    def __init__(self) -> None:
        self._listeners: list[Callable[P, object]] = []

    def connect(self, listener: Callable[P, object]) -> None:
        self._listeners.append(listener)

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for listener in self._listeners:
            listener(*args, **kwargs)
