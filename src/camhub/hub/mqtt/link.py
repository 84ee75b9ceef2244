"""The hub's MQTT link: discovery in (announce, availability, stats), status out (availability, state, events).

One connection, kept up with capped exponential backoff. Publishing never blocks the hub and never
grows without bound: ``publish()`` puts the message in a queue that one sender task drains. For a
retained topic only the newest payload is kept (a camera's state replaces the one not yet sent);
other messages (events) wait in a bounded queue, and when the broker cannot keep up or the link is
down they are dropped and counted. A broker that stops answering (frozen, half-open) is noticed
within a few seconds (an unacknowledged publish, or the short keep-alive) and reported as not
connected; every retained camera state is re-published on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt

from camhub.hub.config import HubConfig

log = logging.getLogger(__name__)

MAX_RETAINED_PENDING = 4096  # distinct retained topics waiting (cameras x a few topics each)
MAX_EVENTS_PENDING = 1000  # non-retained messages waiting; older ones are dropped beyond this
PUBLISH_TIMEOUT_S = 3.0  # a QoS 1 publish not acknowledged by then: the broker is stuck
# A short keep-alive is the probe: paho pings after this long without traffic and drops the link
# when a ping goes unanswered for as long again. (An UNSUBSCRIBE probe upset amqtt's shutdown.)
KEEPALIVE_S = 3


class BrokerStuck(aiomqtt.MqttError):
    """The broker accepted the connection but stopped acknowledging."""


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
        self.published = 0
        self.dropped: Counter[str] = Counter()  # messages not sent, by reason
        self._retained: dict[str, tuple[str | bytes, int]] = {}  # topic -> newest (payload, qos)
        self._events: deque[tuple[str, str | bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._extra: dict[str, Callable[[bytes], None]] = {}  # other topics the hub listens to
        self._goodbye: asyncio.Event | None = None  # set when our own "offline" comes back (close())

    @property
    def pending(self) -> int:
        return len(self._retained) + len(self._events)

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "broker": self.describe(), "messages_in": self.messages_in,
                "published": self.published, "pending": self.pending, "dropped": dict(self.dropped)}

    def listen(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """Also subscribe to ``topic`` (exact, no wildcards) from the next connection on."""
        self._extra[topic] = handler

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
                identifier=f"camhub-hub-{uuid.uuid4().hex[:8]}", keepalive=KEEPALIVE_S,
                timeout=PUBLISH_TIMEOUT_S,
                will=aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True),
            )
            # One sender means at most a couple of calls in flight: aiomqtt's "pending publish
            # calls" warning (meant for unbounded publishers) would only be noise.
            client.pending_calls_threshold = 1000
            try:
                async with client:
                    self._client = client
                    self.connected = True
                    delay = 0.5
                    log.info("MQTT connected to %s", self.describe())
                    await client.publish(self.availability_topic, b"online", qos=1, retain=True)
                    await client.subscribe(f"{self.prefix}/nodes/+/announce", qos=1)
                    await client.subscribe(f"{self.prefix}/nodes/+/availability", qos=1)
                    await client.subscribe(f"{self.prefix}/nodes/+/stats", qos=0)
                    await client.subscribe(self.availability_topic, qos=1)  # close() waits for its echo
                    for topic in self._extra:
                        await client.subscribe(topic, qos=1)
                    self._on_connect()
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._receive(client))
                        group.create_task(self._send(client))
            except* aiomqtt.MqttError as errors:
                self.connected = False
                log.warning("MQTT link to %s down: %s; retrying in %.1f s", self.describe(),
                            "; ".join(str(e) for e in errors.exceptions), delay)
            finally:
                self._client = None
                self.connected = False
                self._drop_events("disconnected")
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, 30.0)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._dispatch(message)

    async def _send(self, client: aiomqtt.Client) -> None:
        """The one sender: retained states first (newest only), then events, in order."""
        while True:
            if not self._retained and not self._events:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            if self._retained:
                topic = next(iter(self._retained))
                data, qos = self._retained.pop(topic)
                retain = True
            else:
                topic, data, qos = self._events.popleft()
                retain = False
            try:
                await client.publish(topic, data, qos=qos, retain=retain, timeout=PUBLISH_TIMEOUT_S)
            except aiomqtt.MqttError as exc:
                self.dropped["broker_error"] += 1
                self.connected = False  # say so now, not when the teardown is over
                raise BrokerStuck(f"publish not acknowledged within {PUBLISH_TIMEOUT_S:g} s ({exc})") from None
            self.published += 1

    def _drop_events(self, reason: str) -> None:
        if self._events:
            self.dropped[reason] += len(self._events)
            self._events.clear()

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        self.messages_in += 1
        parts = message.topic.value.split("/")
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        if message.topic.value == self.availability_topic:
            if self._goodbye is not None and payload == b"offline":
                self._goodbye.set()
            return
        extra = self._extra.get(message.topic.value)
        if extra is not None:
            try:
                extra(bytes(payload[:64]))  # a status word; anything longer is not one
            except Exception:
                log.exception("error handling %s", message.topic.value)
            return
        # <prefix>/nodes/<id>/<kind>; the prefix itself may contain slashes. Size limits are the
        # handler's: an oversized announce is a counted rejection, not silence.
        if len(parts) < 3 or parts[-3] != "nodes":
            self.ignored_messages += 1
            return
        try:
            await self._on_node_message(parts[-2], parts[-1], bytes(payload))
        except Exception:  # one bad message must never take the link down
            log.exception("error handling %s", message.topic.value)

    def publish(self, topic: str, payload: dict[str, Any] | list[Any] | str | bytes, retain: bool = False,
                qos: int | None = None) -> None:
        """Queue a message (JSON for dicts and lists); never blocks. QoS defaults to 1 if retained, else 0.

        A retained topic keeps only its newest payload until sent (also while the link is down);
        other messages are dropped, and counted, while the link is down or the queue is full.
        """
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload, separators=(",", ":"))
        level = (1 if retain else 0) if qos is None else qos
        if retain:
            if topic not in self._retained and len(self._retained) >= MAX_RETAINED_PENDING:
                self.dropped["queue_full"] += 1
                return
            self._retained[topic] = (data, level)
        else:
            if self._client is None:
                self.dropped["disconnected"] += 1
                return
            if len(self._events) >= MAX_EVENTS_PENDING:
                self._events.popleft()  # the newest events say more than the oldest
                self.dropped["queue_full"] += 1
            self._events.append((topic, data, level))
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until everything queued has been sent, if connected."""
        if self._client is not None and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    def publish_state(self, camera_id: str, payload: dict[str, Any]) -> None:
        self.publish(f"{self.prefix}/hub/cameras/{camera_id}/state", payload, retain=True)

    def publish_set(self, camera_id: str, payload: dict[str, Any]) -> None:
        """A change for a node's settings, on the topic the node listens to."""
        self.publish(f"{self.prefix}/nodes/{camera_id}/set", payload, qos=1)

    def publish_event(self, camera_id: str, payload: dict[str, Any]) -> None:
        self.publish(f"{self.prefix}/hub/cameras/{camera_id}/events", payload)

    def publish_motion(self, camera_id: str, active: bool) -> None:
        self.publish(f"{self.prefix}/hub/cameras/{camera_id}/motion", "ON" if active else "OFF", retain=True)

    def publish_recordings(self, status: dict[str, Any]) -> None:
        self.publish(f"{self.prefix}/hub/recordings", status, retain=True)

    async def close(self, timeout: float = 3.0) -> None:
        """Say ``offline`` (retained) before a clean shutdown; wait (at most ``timeout``) until it is passed on.

        A broker acknowledges a publish before it forwards it, and amqtt drops what it has not
        forwarded yet when it stops. So the hub waits for its own ``offline`` to come back on its
        subscription: then it, and whatever the broker took in before it, has gone out.
        """
        client = self._client
        if client is None:
            return
        self._goodbye = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await client.publish(self.availability_topic, b"offline", qos=1, retain=True)
                await self._goodbye.wait()
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("MQTT goodbye not confirmed by %s within %g s (%s)", self.describe(), timeout,
                        str(exc) or "no echo")
