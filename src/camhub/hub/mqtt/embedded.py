"""The embedded MQTT broker (amqtt), so that one command is enough at home.

Users who outgrow it point the hub at mosquitto or a clustered broker instead; nothing else changes.

Two amqtt (0.12) behaviours are worked around here, both seen as "Ctrl-C on the demo sometimes
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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0
SETTLE_TIMEOUT_S = 2.0


def _broker_class() -> type:
    from amqtt.broker import Broker  # imported here: only the embedded case pays for it

    class CamhubBroker(Broker):
        """amqtt's broker, delivering retained messages to a new subscriber beside its session loop."""

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config)
            self._retained_deliveries: set[asyncio.Task[None]] = set()

        async def _publish_retained_messages_for_subscription(self, subscription: Any, session: Any) -> None:
            deliver = super()._publish_retained_messages_for_subscription
            task = asyncio.create_task(deliver(subscription, session))
            self._retained_deliveries.add(task)
            task.add_done_callback(self._retained_deliveries.discard)

        async def shutdown(self) -> None:
            for task in list(self._retained_deliveries):
                task.cancel()
            await super().shutdown()

    if not hasattr(Broker, "_publish_retained_messages_for_subscription"):  # another amqtt: no workaround
        log.debug("amqtt has no _publish_retained_messages_for_subscription; using its broker as is")
        broker: type = Broker
        return broker
    return CamhubBroker


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
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = broker_class(config)
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own types
            raise OSError(f"embedded MQTT broker cannot listen on {self.listen}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s:%d", self.listen, self.port)

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
