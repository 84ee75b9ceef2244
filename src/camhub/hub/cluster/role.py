"""This hub's part in a cluster (``CAMHUB_ROLE`` origin or edge): its members, ownership, board fence,
hub-to-hub pulls and peers, built together; what the rest of the hub asks of the cluster is here.

The composition root builds one ``ClusterRole`` for a cluster role (none for a single hub), hands
its ``policy`` to ``Pulls``, its ``publishes`` to the MQTT publishers (a camera's topics are written
by its owner only), its ``only_owned`` to the frame taps (motion and recordings run on the owner)
and itself to the HTTP side (owners in the camera list, members in ``/api/hub``, recordings from
every member, and in redirect mode the edge a viewer is sent to).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.cluster.fence import BoardFence
from camhub.hub.cluster.members import ClusterSettings, Members
from camhub.hub.cluster.ownership import TICK_S, Ownership
from camhub.hub.cluster.peers import Peers
from camhub.hub.cluster.pulling import ClusterPull
from camhub.hub.cluster.redirect import EdgeChooser
from camhub.hub.core.broker import Frame, FrameTap
from camhub.hub.core.camera import Camera
from camhub.hub.core.registry import Cameras
from camhub.hub.ingest.pulls import PullPolicy
from camhub.hub.mqtt.link import MqttLink
from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.tasks import every


class ClusterRole:
    def __init__(self, settings: ClusterSettings, secret: str, link: MqttLink, topics: Topics, cameras: Cameras,
                 board: PullPolicy, user_agent: str) -> None:
        self.settings = settings
        self.hub_id = settings.hub_id
        self.key = ClusterKey(secret, settings.hub_id)
        self.members = Members(settings, link, topics)
        self.ownership = Ownership(settings, link, topics, cameras, self.members)
        self.fence = BoardFence(settings.instance, user_agent)
        self.peers = Peers(self.members, self.key, user_agent)
        self.policy = ClusterPull(self.ownership, board, self.key, self.fence)
        self.members.changed.connect(self.ownership.decide_soon)
        self.redirects = EdgeChooser(self.members, settings.redirect_percent, lambda: cameras.broker.viewer_count) \
            if settings.redirect_percent else None  # CAMHUB_STREAM_REDIRECT = edges

    # ---- wiring --------------------------------------------------------------------------------
    def subscribe(self) -> None:
        self.members.subscribe()
        self.ownership.subscribe()

    def link_up(self) -> None:
        self.members.link_up()
        self.ownership.link_up()

    def link_down(self) -> None:
        self.ownership.link_down()

    async def run(self) -> None:
        """Until cancelled: ownership's clock (next-preferred claims, rebalance), the beats, the shared boards."""
        async with asyncio.TaskGroup() as group:
            group.create_task(every(TICK_S, self.ownership.tick))
            group.create_task(every(self.settings.beat_s, self.members.beat))
            group.create_task(self.fence.watch())

    async def close(self) -> None:
        await self.fence.close()
        await self.peers.close()

    def leave(self) -> None:
        self.ownership.leave()

    def camera_removed(self, camera_id: str) -> None:
        self.ownership.camera_removed(camera_id)
        self.fence.forget(camera_id)

    def lost(self, camera: Camera) -> None:
        self.fence.forget(camera.id)

    # ---- what the others ask ---------------------------------------------------------------------
    def owns(self, camera_id: str) -> bool:
        return self.ownership.owns(camera_id)

    def publishes(self, camera_id: str) -> bool:
        return self.ownership.publishes(camera_id)

    def only_owned(self, camera_id: str, tap: FrameTap) -> FrameTap:
        """A frame tap that sees the camera's frames only while this hub owns it."""
        owned = self.ownership.owned

        def tap_if_owned(frame: Frame) -> None:
            if camera_id in owned:
                tap(frame)

        return tap_if_owned

    def summary(self, camera: Camera) -> dict[str, Any]:
        return self.ownership.summary(camera)

    def health(self) -> dict[str, Any]:
        """``/api/hub``: the members, and the cameras online as the cluster sees them (not just here)."""
        cluster = {"hub_id": self.hub_id, "role": self.settings.role, "url": self.settings.url,
                   "instance": self.settings.instance, **self.ownership.health(), "members": self.members.view()}
        return {"cameras_online": self.ownership.online(), "cluster": cluster}

    def counters(self) -> Iterable[Family]:
        yield from self.members.counters()
        yield from self.ownership.counters()
        yield from self.fence.counters()
        if self.redirects is not None:
            yield from self.redirects.counters()
