"""The embedded MQTT broker (amqtt), so that one command is enough at home.

Users who outgrow it point the hub at mosquitto or a clustered broker instead; nothing else changes.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, listen: str, port: int) -> None:
        self.listen = listen
        self.port = port
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker  # imported here: only the embedded case pays for it

        # amqtt logs every packet at INFO; the hub's own log says what matters.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.listen}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own types
            raise OSError(f"embedded MQTT broker cannot listen on {self.listen}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s:%d", self.listen, self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            try:
                await self._broker.shutdown()
            except Exception:  # shutting down anyway; amqtt may complain about half-open sessions
                log.debug("embedded broker shutdown", exc_info=True)
            self._broker = None
