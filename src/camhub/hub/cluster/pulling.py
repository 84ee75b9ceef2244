"""Where a hub in a cluster pulls each camera from: its board if this hub owns it, else its owner.

An origin pulls the board of every camera it owns (as ``CAMHUB_PULL`` says: always, or on demand),
asking the board first whether two other hubs pull it already (``fence``). Any other camera, on an
origin or an edge, is pulled from its owner's ``/cameras/<id>/stream`` while someone watches it here
(and ``CAMHUB_KEEP_WARM_S`` after), with the cluster credential: one upstream per camera per hub,
however many watch. When the owner changes the pull follows it (``Pulls.reconsider``); retries
towards a hub are quick (a new owner is found within seconds), towards a board as before.
"""

from __future__ import annotations

import functools

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.cluster.fence import BoardFence
from camhub.hub.cluster.ownership import Ownership
from camhub.hub.core.camera import Camera
from camhub.hub.ingest.pulls import PullOptions, PullPolicy

HUB_BACKOFF_MAX_S = 2.0


class ClusterPull:
    def __init__(self, ownership: Ownership, board: PullPolicy, key: ClusterKey, fence: BoardFence) -> None:
        self.ownership = ownership
        self.board = board  # CAMHUB_PULL's policy, for the cameras this hub owns
        self.key = key
        self.fence = fence

    def wants(self, camera: Camera, watched: bool) -> bool:
        if self.ownership.owns(camera.id):
            return self.board.wants(camera, watched)
        return watched

    def url(self, camera: Camera) -> str | None:
        if self.ownership.owns(camera.id):
            return self.board.url(camera)
        owner = self.ownership.owner(camera.id)
        if owner is None or owner.hub == self.ownership.me:
            return None
        return f"{owner.url}/cameras/{camera.id}/stream"

    def options(self, camera: Camera, url: str) -> PullOptions:
        owner = self.ownership.owner(camera.id)
        if self.ownership.owns(camera.id) or owner is None or not url.startswith(owner.url + "/"):
            return PullOptions(admit=functools.partial(self.fence.admit, camera, url))
        return PullOptions(headers=self.key.headers(owner.hub), backoff_max_s=HUB_BACKOFF_MAX_S)
