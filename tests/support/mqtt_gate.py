"""A relay in front of the real broker that holds a client's SUBSCRIBE to a topic until released.

It opens, on demand, the window a client cannot control: between its PUBLISH of a retained message and its
SUBSCRIBE to the same topic, another client may change that message. Bytes are relayed unchanged; the
client-to-broker direction is cut at MQTT packet boundaries (fixed header, then the remaining length as a
base-128 varint, MQTT 3.1.1 §2.2) only to find the SUBSCRIBE (packet type 8) naming the topic. The client
waits for its SUBACK meanwhile: hold it for less than the client's receive timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.mqtt_wire import SUBSCRIBE, packet_size
from tests.support.relay import Relay


class SubscribeGate(Relay):
    """Relay ``127.0.0.1:port`` to the broker on ``broker_port``; the first SUBSCRIBE naming ``topic`` waits
    for ``release()``."""

    def __init__(self, broker_port: int, topic: str) -> None:
        self._topic = topic.encode()
        self.held = threading.Event()  # a SUBSCRIBE arrived and is being held
        self._released = threading.Event()
        super().__init__(broker_port)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        super().close()

    def client_to_target(self, client: socket.socket, target: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                pending += data
                while (size := packet_size(pending)) is not None:
                    packet, pending = pending[:size], pending[size:]
                    if (packet[0] >> 4 == SUBSCRIBE and self._topic in packet
                            and not self._released.is_set()):
                        self.held.set()
                        self._released.wait(30)
                    target.sendall(packet)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

