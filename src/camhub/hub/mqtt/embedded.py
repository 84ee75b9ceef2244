"""The embedded MQTT broker (amqtt), so that one command is enough at home.

Users who outgrow it point the hub at mosquitto or a clustered broker instead; nothing else changes.
tests/test_mqtt_conformance.py holds it to what mosquitto does, on everything the hub, the boards and
Home Assistant rely on.

Where amqtt (0.12) differs from MQTT 3.1.1 and mosquitto, it is corrected here (issue #28):

- When a client connects, ``Broker._handle_client_session`` sends it the retained messages matching
  *every* client's subscriptions (it loops over ``self._subscriptions``), for new sessions too: a board
  that connects while Home Assistant is subscribed to the snapshots reads every camera's JPEG, at every
  reconnect. Retained messages go to a subscription as it is made (§3.3.1.3, [MQTT-3.3.1-6]), so here
  they are sent only while a SUBSCRIBE is handled (``_handle_subscription``): a new session gets nothing
  until it subscribes, a resumed one gets what was queued for it (as mosquitto does; no retained messages
  again, those came when it subscribed).
- amqtt keeps no session for a client it let in anonymously (the embedded broker lets every client in so):
  a client with ``clean_session=False`` lost its subscriptions and every QoS 1 message sent while it was
  away. Here it keeps them, as MQTT says and mosquitto does, for at most SESSION_EXPIRY_S after it left,
  and at most MAX_QUEUED_MESSAGES (mosquitto's default) queued per session; what comes beyond that is
  dropped and logged. Queued messages are delivered as ordinary messages, not flagged retained (amqtt
  flags them: Home Assistant ignores retained messages in places, e.g. device triggers).
- ``$SYS/broker/version`` is retained, as mosquitto does (a client can ask which broker it talks to).

Two more amqtt behaviours are worked around here, both seen as "Ctrl-C on the demo sometimes
hangs / a camera stays online":

- A client's session loop (``Broker._client_message_loop``) handles a SUBSCRIBE inline and
  ``_publish_retained_messages_for_subscription`` waits until every matching retained message is
  acknowledged by the subscriber (a QoS 1 publish waits up to 5 s for its PUBACK,
  ``ProtocolHandler._handle_qos1_message_flow``). A node subscribes to its own retained topics right
  after connecting; one that goes away meanwhile leaves its session loop blocked for up to 5 s per
  subscription, and only then is its disconnect handled and its will (``offline``) published. Here
  that delivery runs beside the session loop, so a disconnect is handled at once.
- ``Broker.shutdown()`` stops each client's handler by cancelling its reader and then waiting, with
  no timeout, for the reader to end (``ProtocolHandler.stop``). The reader reads through
  ``asyncio.wait_for``, which on Python 3.11 loses a cancellation that arrives in the same loop turn
  as a packet (CPython gh-86296); the reader then waits for the client's next packet, possibly for
  ever. Here the shutdown is bounded, and after the timeout the listener is closed regardless.

Shutdown also drops whatever amqtt has accepted but not yet broadcast ("N messages not
broadcasted"), and closing a connection whose client's acknowledgements are still unread resets
it, which can discard data the client has not read yet. So the hub says ``offline`` and waits for
its own message to come back (mqtt.MqttLink.close), and ``stop()`` first waits (bounded) until
amqtt has nothing left to broadcast and every subscriber has acknowledged what it was sent.

Every correction overrides one of amqtt's private methods and calls amqtt's own code for the rest. An
amqtt whose internals differ from what they assume (``_compatible``) is run as it is, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import types
from contextvars import ContextVar
from typing import Any

from camhub.hub.util.ratelimit import LogLimiter

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0
SETTLE_TIMEOUT_S = 2.0
SESSION_EXPIRY_S = 7 * 24 * 3600  # a persistent session is forgotten this long after its client left
MAX_QUEUED_MESSAGES = 1000  # per persistent session while its client is away (mosquitto's max_queued_messages)

# True while this task (one client's connection) handles a SUBSCRIBE: the only time retained messages go out.
_SUBSCRIBING: ContextVar[bool] = ContextVar("camhub_broker_subscribing", default=False)

# What the overrides below rely on in amqtt's Broker: method -> names its code uses (0.12).
_RELIED_ON = {
    "_handle_subscription": {"_publish_retained_messages_for_subscription"},
    "_handle_client_session": {"_publish_session_retained_messages"},
    "_publish_session_retained_messages": {"retained_messages", "_get_handler", "mqtt_publish"},
    "_run_broadcast": {"is_anonymous", "_retain_broadcast_message"},
    "_session_monitor": {"is_anonymous"},
    "_authenticate": set(),
    "_publish_retained_messages_for_subscription": set(),
    "_retain_broadcast_message": {"retained_messages"},
}


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names ``code`` uses, its nested functions' and comprehensions' included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _compatible(broker: type) -> bool:
    """Whether amqtt's Broker has the methods the overrides replace, using what they assume."""
    for method, needs in _RELIED_ON.items():
        code = getattr(getattr(broker, method, None), "__code__", None)
        if code is None or not needs <= _names(code):
            return False
    return True


def _broker_class() -> type:
    from amqtt.broker import Broker  # imported here: only the embedded case pays for it

    class CamhubBroker(Broker):
        """amqtt's broker, sending retained messages only to the subscription that asked, keeping persistent
        sessions, and delivering a new subscriber's retained messages beside its session loop."""

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config)
            self._retained_deliveries: set[asyncio.Task[None]] = set()
            self._log_limiter = LogLimiter(log)  # the queue-full lines: clients decide how often they happen

        async def _authenticate(self, session: Any, listener: Any) -> bool:
            authenticated: bool = await super()._authenticate(session, listener)
            # amqtt keeps no session of a client let in anonymously (every client, here); MQTT keeps any
            # client's: a clean_session=False client keeps its subscriptions and its QoS 1 messages.
            session.is_anonymous = False
            return authenticated

        async def _handle_subscription(self, *args: Any, **kwargs: Any) -> None:
            subscribing = _SUBSCRIBING.set(True)
            try:
                await super()._handle_subscription(*args, **kwargs)
            finally:
                _SUBSCRIBING.reset(subscribing)

        async def _publish_retained_messages_for_subscription(self, subscription: Any, session: Any) -> None:
            if not _SUBSCRIBING.get():
                return  # amqtt's loop at connect time over every client's subscriptions: nothing was asked
            deliver = super()._publish_retained_messages_for_subscription
            task = asyncio.create_task(deliver(subscription, session))
            self._retained_deliveries.add(task)
            task.add_done_callback(self._retained_deliveries.discard)

        async def _retain_broadcast_message(self, broadcast: Any, qos: int, target_session: Any) -> None:
            """Queue a message for a persistent session whose client is away, up to MAX_QUEUED_MESSAGES."""
            if target_session.retained_messages.qsize() < MAX_QUEUED_MESSAGES:
                await super()._retain_broadcast_message(broadcast, qos, target_session)
                return
            # counted on the session: forgotten with it
            target_session.camhub_dropped = getattr(target_session, "camhub_dropped", 0) + 1
            client_id = target_session.client_id
            self._log_limiter.warning(f"full:{client_id}", "MQTT client %r is away with %d messages queued for it; "
                                      "dropping newer ones until it is back", client_id, MAX_QUEUED_MESSAGES)

        async def _publish_session_retained_messages(self, session: Any) -> None:
            """What was queued for a resumed session, in order, as ordinary messages (amqtt flags them retained)."""
            dropped, session.camhub_dropped = getattr(session, "camhub_dropped", 0), 0
            if dropped:
                self._log_limiter.warning(f"back:{session.client_id}", "MQTT client %r is back; %d messages for it "
                                          "were dropped while it was away", session.client_id, dropped)
            handler = self._get_handler(session)
            sends = []
            while handler is not None and not session.retained_messages.empty():
                queued = session.retained_messages.get_nowait()
                sends.append(asyncio.ensure_future(
                    handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)))
            if sends:
                await asyncio.wait(sends)

        async def shutdown(self) -> None:
            for task in list(self._retained_deliveries):
                task.cancel()
            await super().shutdown()

    if not _compatible(Broker):
        log.warning("amqtt %s differs from the version the embedded broker was adapted to (0.12); running it "
                    "as it is: it may send clients retained messages they did not subscribe to, and keeps no "
                    "persistent sessions (use mosquitto)", _amqtt_version())
        broker: type = Broker
        return broker
    return CamhubBroker


def _amqtt_version() -> str:
    try:
        return importlib.metadata.version("amqtt")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def _busy(broker: Any) -> bool:
    """Messages amqtt has taken in but not broadcast yet, or sent to a subscriber not acknowledged yet."""
    queue = getattr(broker, "_broadcast_queue", None)
    if queue is not None and not queue.empty():
        return True
    sessions = getattr(broker, "_sessions", {})
    return any(session.inflight_out for session, _ in sessions.values() if session.transitions.state == "connected")


async def _settle(broker: Any, timeout: float) -> None:
    """Wait (at most ``timeout``) until the broker is not busy: the goodbyes have reached the subscribers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while _busy(broker) and loop.time() < deadline:
            await asyncio.sleep(0.02)
    except Exception:  # another amqtt's internals: stop without waiting
        log.debug("cannot tell whether the embedded broker is idle", exc_info=True)


class EmbeddedBroker:
    def __init__(self, listen: str, port: int) -> None:
        self.listen = listen
        self.port = port
        self._broker: Any = None

    async def start(self) -> None:
        broker_class = _broker_class()
        # amqtt logs every packet at INFO; the hub's own log says what matters.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.listen}:{self.port}"}},
            "session_expiry_interval": SESSION_EXPIRY_S,
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = broker_class(config)
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own types
            raise OSError(f"embedded MQTT broker cannot listen on {self.listen}:{self.port}: {exc}") from exc
        version = f"amqtt version {_amqtt_version()}".encode()
        with contextlib.suppress(Exception):  # as mosquitto does; a broker without it works just as well
            await self._broker.retain_message(None, "$SYS/broker/version", version)
        log.info("embedded MQTT broker listening on %s:%d", self.listen, self.port)

    def sizes(self) -> dict[str, int]:
        """amqtt's tables (``util.diagnostics``): sessions (connected or kept), subscriptions, retained
        messages, what waits to be broadcast, and what waits in the sessions' own queues. Read through
        amqtt's internals, so another amqtt may show fewer."""
        broker = self._broker
        if broker is None:
            return {}
        sizes: dict[str, int] = {}
        with contextlib.suppress(Exception):  # another amqtt's internals
            sessions = [session for session, _handler in broker._sessions.values()]
            sizes["sessions"] = len(sessions)
            sizes["sessions_connected"] = sum(s.transitions.state == "connected" for s in sessions)
            sizes["session_queued"] = sum(s.retained_messages.qsize() + s.delivered_message_queue.qsize()
                                          for s in sessions)
            sizes["session_inflight"] = sum(len(s.inflight_in) + len(s.inflight_out) for s in sessions)
            sizes["subscription_filters"] = len(broker._subscriptions)
            sizes["subscriptions"] = sum(len(subscribers) for subscribers in broker._subscriptions.values())
            sizes["retained"] = len(broker._retained_messages)
            sizes["broadcast_queue"] = broker._broadcast_queue.qsize()
            sizes["broadcast_tasks"] = len(broker._tasks_queue)
            sizes["retained_deliveries"] = len(getattr(broker, "_retained_deliveries", ()))
        return sizes

    async def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Stop the broker within ``timeout`` seconds, its port closed in any case."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        await _settle(broker, SETTLE_TIMEOUT_S)
        try:
            await asyncio.wait_for(broker.shutdown(), timeout)
        except TimeoutError:
            log.warning("embedded MQTT broker did not stop within %g s (a client's reader did not end); "
                        "closing its listener", timeout)
            for server in getattr(broker, "_servers", {}).values():  # amqtt's listeners
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.close_instance(), 1.0)
        except Exception:  # shutting down anyway; amqtt may complain about half-open sessions
            log.debug("embedded broker shutdown", exc_info=True)
