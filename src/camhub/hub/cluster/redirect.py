"""Redirect mode (``CAMHUB_STREAM_REDIRECT = "edges"``): which edge a camera's next viewer is sent to.

A hub in this mode answers a viewer's ``/cameras/<id>/stream`` with a 307 to an edge instead of relaying
the stream (``http/redirect.py``), so viewers connect to the edges directly and no proxy carries their
bytes. The edge is the one ``hashing.bounded`` picks from the live edges (the same rendezvous hash the
origins use for ownership): a camera's viewers go to its first edge, so that edge pulls the camera once
for all of them, until the edge holds more than ``redirect_percent`` % of the mean; then they spill to
the camera's next edge.

The loads are the edges' own viewer counts (their retained ``state``, sent at most every 2 s, a fall to
half at once) plus the viewers this hub sent to each edge since: a viewer redirected ``FOLLOW_S`` before an edge's count
arrived is taken to be in it; later ones are added here (so a burst of viewers within the 2 s does not
all land on one edge). A redirect is thus counted twice for up to ``FOLLOW_S`` (the safe side: the
next viewers spill a little sooner), and a viewer that takes longer than that to reach its edge is
missed until the edge's next count (then an edge can pass the bound by those). Two hubs redirecting at
once each see only their own recent redirects: between two counts an edge can get up to (hubs - 1) ×
that burst more than the bound. This hub itself, if it is an edge, counts with its live viewer count.
No live edge, or this hub chosen: the viewer is served here.

Bounded load caps the fullest edge at ``percent`` % of the mean; it does not fill the emptiest: with
few cameras an edge that few cameras rank first can stay light while the others sit at the bound
(benchmarks/README.md). Size the edges' links for the bound, or lower it.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from camhub.hub.cluster.hashing import bounded
from camhub.hub.cluster.members import Member, Members
from camhub.hub.util.counters import Family

FOLLOW_S = 2.0  # a redirected viewer is in its edge's count within this (its connect, MQTT): else counted twice
FORGET_S = 10.0  # a redirect not in an edge's count by then was not followed
MAX_PENDING = 100_000  # redirects remembered per edge (FORGET_S of a flood)


class EdgeChooser:
    def __init__(self, members: Members, percent: int, own_viewers: Callable[[], int]) -> None:
        self.members = members
        self.percent = percent
        self.own_viewers = own_viewers  # this hub's viewers now (if it is an edge itself)
        self._sent: dict[str, deque[float]] = {}  # edge id -> when this hub sent it viewers lately
        self.redirected: Counter[str] = Counter()  # viewers sent away, by edge
        self.kept: Counter[str] = Counter()  # viewers served here, by why

    def loads(self) -> dict[str, int]:
        """``{edge id: its viewers as far as this hub knows}`` of the live edges."""
        now = time.monotonic()
        loads: dict[str, int] = {}
        for member in self.members.all():
            if member.role != "edge" or not self.members.live(member.id):
                continue
            if member is self.members.me:
                loads[member.id] = self.own_viewers()
                continue
            sent = self._sent.get(member.id)
            if sent:
                counted = max(now - FORGET_S, member.viewers_at - FOLLOW_S)
                while sent and sent[0] < counted:
                    sent.popleft()
            loads[member.id] = member.viewers + len(sent or ())
        for gone in self._sent.keys() - loads.keys():
            del self._sent[gone]
        return loads

    def choose(self, camera_id: str) -> Member | None:
        """The edge to send a new viewer of ``camera_id`` to, or None: serve it here."""
        edge = bounded(camera_id, self.loads(), self.percent)
        member = self.members.get(edge) if edge is not None else None
        if member is None or member.url is None:
            self.keep("no_edge")
            return None
        if member is self.members.me:
            self.keep("this_hub")
            return None
        self._sent.setdefault(member.id, deque(maxlen=MAX_PENDING)).append(time.monotonic())
        self.redirected[member.id] += 1
        return member

    def keep(self, reason: str) -> None:
        self.kept[reason] += 1

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_stream_redirects", "Viewers sent to an edge with a redirect, by edge", "edge",
                     dict(self.redirected))
        yield Family("camhub_stream_redirects_kept", "Viewers this redirecting hub served itself, by why", "reason",
                     dict(self.kept))
