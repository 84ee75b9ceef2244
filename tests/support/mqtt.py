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

    def json(self) -> object:
        return json.loads(self.payload)

    @property
    def text(self) -> str:
        return self.payload.decode()


class Observer:
    """Subscribes to ``topics`` and records every message, retained ones included."""

    def __init__(self, port: int, topics: list[str], host: str = "127.0.0.1",
                 username: str | None = None, password: str | None = None) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        if not subscribed.wait(5):
            raise TimeoutError("MQTT subscribe was not acknowledged")

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))
            self._cond.notify_all()

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
        self.client.loop_stop()
        self.client.disconnect()
