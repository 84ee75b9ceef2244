"""The hub's MQTT link: discovery in (announce, availability), status out (availability, state, events).

One connection, kept up with capped exponential backoff. Publishing never blocks the hub: while the
link is down messages are skipped, and every retained camera state is re-published on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt

from camhub.hub.config import HubConfig

log = logging.getLogger(__name__)

class MqttLink:
    """Subscribes to node topics and publishes the hub's own; ``run()`` until cancelled."""

    def __init__(self, config: HubConfig, host: str, port: int,
                 on_node_message: Callable[[str, str, bytes], Awaitable[None]],
                 on_connect: Callable[[], None]) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.prefix = config.topic_prefix
        self._on_node_message = on_node_message
        self._on_connect = on_connect
        self._client: aiomqtt.Client | None = None
        self.connected = False
        self.messages_in = 0
        self.ignored_messages = 0

    @property
    def availability_topic(self) -> str:
        return f"{self.prefix}/hub/availability"

    def describe(self) -> str:
        kind = "embedded" if self.config.embedded_broker else "external"
        return f"{kind} {self.host}:{self.port}"

    async def run(self) -> None:
        delay = 0.5
        while True:
            client = aiomqtt.Client(
                self.host, self.port, username=self.config.mqtt_user or None,
                password=self.config.mqtt_password or None,
                identifier=f"camhub-hub-{uuid.uuid4().hex[:8]}", keepalive=15,
                will=aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True),
            )
            try:
                async with client:
                    self._client = client
                    self.connected = True
                    delay = 0.5
                    log.info("MQTT connected to %s", self.describe())
                    await client.publish(self.availability_topic, b"online", qos=1, retain=True)
                    await client.subscribe(f"{self.prefix}/nodes/+/announce", qos=1)
                    await client.subscribe(f"{self.prefix}/nodes/+/availability", qos=1)
                    self._on_connect()
                    async for message in client.messages:
                        await self._dispatch(message)
            except aiomqtt.MqttError as exc:
                log.warning("MQTT link to %s down: %s; retrying in %.1f s", self.describe(), exc, delay)
            finally:
                self._client = None
                self.connected = False
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, 30.0)

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        self.messages_in += 1
        parts = message.topic.value.split("/")
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        # <prefix>/nodes/<id>/<kind>; the prefix itself may contain slashes. Size limits are the
        # handler's: an oversized announce is a counted rejection, not silence.
        if len(parts) < 3 or parts[-3] != "nodes":
            self.ignored_messages += 1
            return
        try:
            await self._on_node_message(parts[-2], parts[-1], bytes(payload))
        except Exception:  # one bad message must never take the link down
            log.exception("error handling %s", message.topic.value)

    def publish(self, topic: str, payload: dict[str, Any] | str, retain: bool = False) -> None:
        """Queue a publish if connected; never blocks the caller."""
        client = self._client
        if client is None:
            return
        data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        task = asyncio.get_running_loop().create_task(self._publish(client, topic, data, retain))
        task.add_done_callback(_ignore_result)

    async def _publish(self, client: aiomqtt.Client, topic: str, data: str, retain: bool) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, data, qos=1 if retain else 0, retain=retain)

    def publish_state(self, camera_id: str, payload: dict[str, Any]) -> None:
        self.publish(f"{self.prefix}/hub/cameras/{camera_id}/state", payload, retain=True)

    def publish_event(self, camera_id: str, payload: dict[str, Any]) -> None:
        self.publish(f"{self.prefix}/hub/cameras/{camera_id}/events", payload)

    async def close(self) -> None:
        """Say ``offline`` (retained) before a clean shutdown."""
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await asyncio.wait_for(
                    client.publish(self.availability_topic, b"offline", qos=1, retain=True), 3)


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
