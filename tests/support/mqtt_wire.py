"""MQTT 3.1.1 on the wire, for tests that must see exactly what a client sends or reads.

A packet is a fixed header (type in the upper nibble of the first byte, flags in the lower), the remaining
length as a base-128 varint, then the body (MQTT 3.1.1 §2.2). ``WireClient`` is a bare client on a socket:
it reads every byte the broker sends and can count them, which no client library lets a test do.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.support.relay import Relay

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9


def string(text: str) -> bytes:
    """A UTF-8 string field: two bytes of length, then the bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def packet(first: int, body: bytes) -> bytes:
    """One packet: ``first`` (type and flags), the remaining length, ``body``."""
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return bytes([first]) + encoded + body


def packet_size(data: bytes) -> int | None:
    """The length of the whole packet at the start of ``data``, or None while it is incomplete."""
    length, shift = 0, 0
    for i in range(1, min(len(data), 5)):
        length |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            size = i + 1 + length
            return size if len(data) >= size else None
        shift += 7
    return None


def split(data: bytes) -> tuple[list[bytes], bytes]:
    """The whole packets at the start of ``data``, and what is left of an incomplete one."""
    packets = []
    while (size := packet_size(data)) is not None:
        packets.append(data[:size])
        data = data[size:]
    return packets, data


def kind(whole: bytes) -> int:
    return whole[0] >> 4


def _body(whole: bytes) -> bytes:
    i = 1
    while whole[i] & 0x80:
        i += 1
    return whole[i + 1:]


def publish_topic(whole: bytes) -> str:
    body = _body(whole)
    return body[2:2 + int.from_bytes(body[:2], "big")].decode()


def publish_packet_id(whole: bytes) -> int | None:
    """The packet id of a QoS 1 or 2 PUBLISH (None at QoS 0)."""
    if not whole[0] & 0x06:
        return None
    body = _body(whole)
    at = 2 + int.from_bytes(body[:2], "big")
    return int.from_bytes(body[at:at + 2], "big")


def connect_packet(client_id: str, keepalive_s: int = 60, clean_session: bool = True,
                   will: tuple[str, bytes] | None = None) -> bytes:
    """CONNECT; a ``will`` (topic, payload) goes out at QoS 1, retained."""
    flags = 0x02 if clean_session else 0
    tail = b""
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20
        tail = string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    return packet(CONNECT << 4, string("MQTT") + bytes([4, flags]) + keepalive_s.to_bytes(2, "big")
                  + string(client_id) + tail)


def publish_packet(topic: str, payload: bytes, packet_id: int, retain: bool = False) -> bytes:
    """PUBLISH at QoS 1."""
    return packet(PUBLISH << 4 | 0x02 | int(retain), string(topic) + packet_id.to_bytes(2, "big") + payload)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    return packet(SUBSCRIBE << 4 | 0x02, packet_id.to_bytes(2, "big")
                  + b"".join(string(f) + bytes([qos]) for f, qos in filters))


class WireClient:
    """A bare MQTT client on a socket: every packet the broker sends is kept, every byte counted, and a
    QoS 1 PUBLISH is acknowledged as a client library would (unless ``ack`` is false). ``connect`` goes to
    ``connect_packet``."""

    def __init__(self, port: int, client_id: str, host: str = "127.0.0.1", ack: bool = True,
                 **connect: object) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.packets: list[bytes] = []
        self.bytes_read = 0
        self._ack = ack
        self._pending = b""
        self.send(connect_packet(client_id, **connect))  # type: ignore[arg-type]
        self.expect(CONNACK)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, timeout: float) -> bool:
        """Read what arrives within ``timeout``; False when the broker closed the connection."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        if not data:
            return False
        self.bytes_read += len(data)
        packets, self._pending = split(self._pending + data)
        for whole in packets:
            if self._ack and kind(whole) == PUBLISH and (packet_id := publish_packet_id(whole)) is not None:
                self.sock.sendall(packet(PUBACK << 4, packet_id.to_bytes(2, "big")))
        self.packets += packets
        return True

    def expect(self, wanted: int, timeout: float = 5.0) -> bytes:
        """The next packet of type ``wanted`` not seen before (the packets before it are kept too)."""
        deadline = time.monotonic() + timeout
        seen = len(self.packets)
        while True:
            for whole in self.packets[seen:]:
                if kind(whole) == wanted:
                    self.packets.remove(whole)
                    return whole
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise TimeoutError(f"no packet of type {wanted} within {timeout}s")

    def read_for(self, seconds: float) -> None:
        """Read (and acknowledge) whatever the broker sends for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0 and self._read(remaining):
            pass

    def publishes(self) -> list[bytes]:
        return [whole for whole in self.packets if kind(whole) == PUBLISH]

    def close(self) -> None:
        """DISCONNECT, then close: a clean goodbye."""
        with contextlib.suppress(OSError):
            self.sock.sendall(packet(0xE0, b""))
        self.sock.close()

    def drop(self) -> None:
        """Close the connection without DISCONNECT, as a client that dies does (its will goes out)."""
        self.sock.close()


class Tap(Relay):
    """A relay in front of a broker that keeps every byte the broker sends back, per connection, as it is."""

    def __init__(self, broker_port: int) -> None:
        self._lock = threading.Lock()
        self.received: list[bytearray] = []
        super().__init__(broker_port)

    def target_to_client(self, target: socket.socket, client: socket.socket) -> None:
        seen = bytearray()
        with self._lock:
            self.received.append(seen)
        with contextlib.suppress(OSError):
            while data := target.recv(65536):
                with self._lock:
                    seen += data
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def packets(self) -> list[bytes]:
        """The whole packets the broker has sent so far, on every connection (oldest first)."""
        with self._lock:
            return [whole for seen in self.received for whole in split(bytes(seen))[0]]
