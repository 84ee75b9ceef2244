"""An MQTT observer for the tests (paho-mqtt, a different client from the code under test)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float
    qos: int = 0

    def json(self) -> object:
        return json.loads(self.payload)

    @property
    def text(self) -> str:
        return self.payload.decode()


class Client:
    """A connected MQTT client that records every message it receives (topic, payload, retain flag, QoS).

    ``clean_session=False`` (with a ``client_id``) asks for a persistent session; ``session_present`` is
    what the broker's CONNACK said. A ``will`` (topic, payload) goes out at QoS 1, retained."""

    def __init__(self, port: int, client_id: str = "", clean_session: bool = True,
                 will: tuple[str, bytes] | None = None, host: str = "127.0.0.1",
                 username: str | None = None, password: str | None = None) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._acknowledged: set[int] = set()  # SUBSCRIBE packet ids the broker has answered
        self.session_present = False
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean_session)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        connected = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            self.session_present = bool(flags.session_present)
            connected.set()

        self.client.on_connect = on_connect
        self.client.connect(host, port)
        self.client.loop_start()
        if not connected.wait(5):
            raise TimeoutError("MQTT connect was not acknowledged")

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.time(), msg.qos))
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self._acknowledged.add(mid)
            self._cond.notify_all()

    def subscribe(self, topics: list[str], qos: int = 1) -> None:
        """Subscribe to ``topics`` in one SUBSCRIBE; returns once the broker has acknowledged it."""
        _, mid = self.client.subscribe([(t, qos) for t in topics])
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acknowledged, 5):
                raise TimeoutError("MQTT subscribe was not acknowledged")

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if paho.topic_matches_sub(topic, m.topic)]

    def wait_for(self, topic: str, predicate: Callable[[Message], bool] = lambda m: True,
                 timeout: float = 10.0, after: float = 0.0) -> Message:
        """The first message on ``topic`` (a filter) received at or after ``after`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.at >= after and paho.topic_matches_sub(topic, m.topic) and predicate(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:120]) for m in self.messages[-10:]]
                    raise TimeoutError(f"no matching message on {topic} within {timeout}s; last: {seen}")
                self._cond.wait(remaining)

    def close(self) -> None:
        """A clean goodbye: DISCONNECT (no will), written and the socket closed before this returns (with the
        network thread stopped first, paho sends it at once)."""
        self.client.loop_stop()
        self.client.disconnect()

    def kill(self) -> None:
        """End the connection without DISCONNECT, as a client that crashes or loses power does (its will goes
        out): the kernel closes a killed process's sockets the same way."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


class Observer(Client):
    """Subscribes to ``topics`` and records every message, retained ones included."""

    def __init__(self, port: int, topics: list[str], host: str = "127.0.0.1",
                 username: str | None = None, password: str | None = None) -> None:
        super().__init__(port, host=host, username=username, password=password)
        self.subscribe(topics)
