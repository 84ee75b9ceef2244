"""The hub's MQTT link: one connection; what the parts subscribe to comes in, what they publish goes out.

One connection, kept up with capped exponential backoff. Publishing never blocks the hub and never
grows without bound: ``publish()`` puts the message in a queue that one sender task drains. For a
retained topic only the newest payload is kept (a camera's state replaces the one not yet sent);
other messages (events) wait in a bounded queue, and when the broker cannot keep up or the link is
down they are dropped and counted. A broker that stops answering (frozen, half-open) is noticed
within a few seconds (an unacknowledged publish, or the short keep-alive) and reported as not
connected; ``up`` tells the parts each time the link is up (they re-publish their retained
state), ``down`` each time it went down. With ``keep_retained = False`` (a hub in a cluster) retained
messages not sent when the link goes down are dropped rather than sent after the reconnect: they are
re-published on ``up`` by their parts, and an old one (a claim, a state) must not overwrite what
another hub wrote meanwhile. Of the contract the link knows only the hub's availability (its will); the parts subscribe
with ``subscribe`` and publish on the topics of ``topics.Topics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from camhub.hub.mqtt.topics import Topics
from camhub.hub.util.counters import Family
from camhub.hub.util.signals import Signal

log = logging.getLogger(__name__)

MAX_RETAINED_PENDING = 4096  # distinct retained topics waiting (cameras x a few topics each)
MAX_EVENTS_PENDING = 1000  # non-retained messages waiting; older ones are dropped beyond this
PUBLISH_TIMEOUT_S = 3.0  # a QoS 1 publish not acknowledged by then: the broker is stuck
# A short keep-alive is the probe: paho pings after this long without traffic and drops the link
# when a ping goes unanswered for as long again. (An UNSUBSCRIBE probe upset amqtt's shutdown.)
KEEPALIVE_S = 3


def _cancels() -> int:
    """The cancels this task was sent and has not taken back (``Task.cancelling()``)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _raise_swallowed_cancel(before: int = 0) -> None:
    """Raise a cancel this task was sent (since it had ``before``) but never received. aiomqtt awaits every
    acknowledgement through ``asyncio.wait_for``, which on Python 3.11 returns the result and drops a cancel
    that lands in the loop iteration the acknowledgement arrives in (CPython gh-86296, fixed in 3.12); the
    task still counts the request. Unraised, the sender waited for work for ever and the task group (a hub
    stopping) with it. The count is compared with one taken before: on 3.11 a task group whose child failed
    after the group's body ended leaves its parent's count raised for good, so ``run()`` has one after
    every lost connection that is no cancel at all."""
    if _cancels() > before:
        raise asyncio.CancelledError


Handler = Callable[[str, bytes], Awaitable[None] | None]  # (topic, payload)
# (topic, payload, retained): retained means the broker sent a stored message (at subscribe time), not a new one
RetainHandler = Callable[[str, bytes, bool], Awaitable[None] | None]


@dataclass(frozen=True)
class LinkSettings:
    """Where the broker is and who the hub is on it."""

    host: str = "127.0.0.1"
    port: int = 1883
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    embedded: bool = False  # the hub's own broker (shown in the API)
    keep_retained: bool = True  # retained messages not yet sent survive a reconnect (False: dropped)


class BrokerStuck(aiomqtt.MqttError):
    """The broker accepted the connection but stopped acknowledging."""


class MqttLink:
    """Subscribes for the parts and publishes for them; ``run()`` until cancelled."""

    def __init__(self, settings: LinkSettings, topics: Topics) -> None:
        self.settings = settings
        self.host = settings.host
        self.port = settings.port
        self.topics = topics
        self._client: aiomqtt.Client | None = None
        self.connected = False
        self.up: Signal[[]] = Signal()  # the link is (again) up: re-publish retained state
        self.down: Signal[[]] = Signal()  # the link that was up went down
        self.messages_in = 0
        self.ignored = 0  # messages no subscription wanted (a broker that sends more than asked for)
        self.published = 0
        self.dropped: Counter[str] = Counter()  # messages not sent, by reason
        self._retained: dict[str, tuple[str | bytes, int]] = {}  # topic -> newest (payload, qos)
        self._events: deque[tuple[str, str | bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._subscriptions: list[tuple[str, int, Handler | None, RetainHandler | None]] = []  # filter, QoS, handler
        self._goodbye: asyncio.Event | None = None  # set when our own "offline" comes back (close())

    @property
    def pending(self) -> int:
        return len(self._retained) + len(self._events)

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "broker": self.describe(), "messages_in": self.messages_in,
                "published": self.published, "pending": self.pending, "dropped": dict(self.dropped),
                "ignored": self.ignored}

    def sizes(self) -> dict[str, int]:
        return {"subscriptions": len(self._subscriptions), "retained_pending": len(self._retained),
                "events_pending": len(self._events), "drop_reasons": len(self.dropped)}

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_mqtt_connected", "1 while the hub's MQTT link is up", "",
                     {"": 1.0 if self.connected else 0.0}, kind="gauge")
        yield Family("camhub_mqtt_messages_dropped", "MQTT messages the hub did not publish", "reason",
                     dict(self.dropped))
        yield Family("camhub_mqtt_messages_ignored", "MQTT messages received that no subscription wanted", "reason",
                     {"unsubscribed_topic": self.ignored})

    def subscribe(self, topic_filter: str, qos: int, handler: Handler) -> None:
        """Receive ``topic_filter`` (MQTT wildcards allowed) from the next connection on: ``handler(topic,
        payload)`` for each message, in order (an async handler is awaited before the next message)."""
        self._subscriptions.append((topic_filter, qos, handler, None))

    def subscribe_retained(self, topic_filter: str, qos: int, handler: RetainHandler) -> None:
        """As ``subscribe``, and ``handler(topic, payload, retained)`` is told whether the broker sent a
        stored message (retained: e.g. at subscribe time, perhaps long after it was published) or a new one."""
        self._subscriptions.append((topic_filter, qos, None, handler))

    @property
    def availability_topic(self) -> str:
        return self.topics.hub_availability

    def describe(self) -> str:
        kind = "embedded" if self.settings.embedded else "external"
        return f"{kind} {self.host}:{self.port}"

    async def run(self) -> None:
        delay = 0.5
        while True:
            client = aiomqtt.Client(
                self.host, self.port, username=self.settings.user or None,
                password=self.settings.password or None,
                identifier=f"camhub-hub-{uuid.uuid4().hex[:8]}", keepalive=KEEPALIVE_S,
                timeout=PUBLISH_TIMEOUT_S,
                will=aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True),
            )
            # One sender means at most a couple of calls in flight: aiomqtt's "pending publish
            # calls" warning (meant for unbounded publishers) would only be noise.
            client.pending_calls_threshold = 1000
            try:
                cancels = _cancels()
                async with client:
                    self._client = client
                    self.connected = True
                    delay = 0.5
                    log.info("MQTT connected to %s", self.describe())
                    await client.publish(self.availability_topic, b"online", qos=1, retain=True)
                    for topic_filter, qos, _handler, _retain_handler in self._subscriptions:
                        await client.subscribe(topic_filter, qos=qos)
                    await client.subscribe(self.availability_topic, qos=1)  # close() waits for its echo
                    _raise_swallowed_cancel(cancels)
                    self.up.emit()
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._receive(client))
                        group.create_task(self._send(client))
            except* aiomqtt.MqttError as errors:
                self.connected = False
                log.warning("MQTT link to %s down: %s; retrying in %.1f s", self.describe(),
                            "; ".join(str(e) for e in errors.exceptions), delay)
            finally:
                was_up = self._client is not None
                self._client = None
                self.connected = False
                self._drop_events("disconnected")
                if not self.settings.keep_retained and self._retained:
                    self.dropped["disconnected"] += len(self._retained)
                    self._retained.clear()
                if was_up:
                    self.down.emit()
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
            _raise_swallowed_cancel()

    def _drop_events(self, reason: str) -> None:
        if self._events:
            self.dropped[reason] += len(self._events)
            self._events.clear()

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        self.messages_in += 1
        topic = message.topic.value
        payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
        if topic == self.availability_topic:
            if self._goodbye is not None and payload == b"offline":
                self._goodbye.set()
            return
        # Size limits are the handler's: an oversized announce is a counted rejection, not silence.
        wanted = False
        for topic_filter, _qos, handler, retain_handler in self._subscriptions:
            if not message.topic.matches(topic_filter):
                continue
            wanted = True
            try:
                done = (retain_handler(topic, payload, bool(message.retain)) if retain_handler is not None
                        else handler(topic, payload) if handler is not None else None)
                if done is not None:
                    await done
            except Exception:  # one bad message must never take the link down
                log.exception("error handling %s", topic)
        if not wanted:
            self.ignored += 1

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
