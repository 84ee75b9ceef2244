"""Counters as the parts that count them show them: ``/metrics`` and ``/api/hub`` read them from here.

A part keeps plain integers where it counts (hot paths cost no metric-library call) and says what
they are in ``counters()``: one ``Family`` per metric, one label each. The composition root hands
every such part to the HTTP side, which renders them at scrape time; nothing else writes a part's
counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Family:
    """One metric: ``camhub_*`` name (counters without ``_total``), help text, its label and the values
    (``{label value: number}``; a metric without a label has ``label=""`` and one value under ``""``)."""

    name: str
    help: str
    label: str
    values: Mapping[str, float]
    kind: Literal["counter", "gauge"] = "counter"


class Counted(Protocol):
    """A part with counters."""

    def counters(self) -> Iterable[Family]: ...
