"""A part's metrics as ``/metrics`` shows them, read in process from its ``counters()``."""

from __future__ import annotations

from camhub.hub.util.counters import Counted


def families(part: Counted) -> dict[str, tuple[str, str, dict[str, float]]]:
    """name -> (label, kind, values); every family must have its help text."""
    found = list(part.counters())
    assert all(isinstance(f.help, str) and f.help for f in found), "a metric without its help text"
    return {f.name: (f.label, f.kind, dict(f.values)) for f in found}
