"""The node's HTTP front under bad input: every bad request gets a 4xx, is counted, and the stream
never stops. The node runs without MQTT here (no CAMHUB_MQTT_HOST), which it must tolerate; on
CPython and on the MicroPython Unix port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.mjpeg_client import StreamReader
from tests.support.procs import RUNTIMES, SimNode
from tests.support.waiting import get_json

BAD_REQUESTS = [
    (b"\x00\x01garbage\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", 431, "head_too_large"),
    (b"GET /status HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431, "head_too_large"),
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    (b"POST /status HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    (b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413, "body_not_accepted"),
    (b"GET /stream?fps=lots HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_query"),
    (b"GET /st\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
]


class NodeWithoutMqtt(SimNode):
    def __init__(self, runtime: str) -> None:
        super().__init__("web", None, fps=10, frame_size="QQVGA", runtime=runtime)
        self.port = self.http_port


@pytest.fixture(scope="module", params=RUNTIMES)
def node(request: pytest.FixtureRequest) -> Iterator[NodeWithoutMqtt]:
    proc = NodeWithoutMqtt(request.param)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def exchange(port: int, data: bytes, pause: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
            if len(out) > 65536:
                break
    return out


def test_bad_requests_get_4xx_and_are_counted_while_the_stream_flows(node: NodeWithoutMqtt) -> None:
    with StreamReader(node.url + "/stream") as viewer:
        viewer.read_part()
        before = get_json(node.url + "/status")["http"]["rejected"]
        expected: dict[str, int] = {}
        for data, status, reason in BAD_REQUESTS:
            answer = exchange(node.port, data)
            assert answer.startswith(b"HTTP/1.1 %d " % status), (data[:40], answer[:100])
            expected[reason] = expected.get(reason, 0) + 1
            viewer.read_part()  # the stream keeps going between bad requests
        rejected = get_json(node.url + "/status")["http"]["rejected"]
        for reason, count in expected.items():
            assert rejected.get(reason, 0) - before.get(reason, 0) == count, (reason, rejected)
        viewer.read_part()


def test_a_trickling_client_gets_408_and_a_silent_one_is_dropped(node: NodeWithoutMqtt) -> None:
    port = node.port
    answer = exchange(port, b"GET /sta", pause=1.0)  # never finishes its request line
    assert answer.startswith(b"HTTP/1.1 408 ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
        assert silent.recv(100) == b""  # closed by the node after its short socket timeout
    status = get_json(node.url + "/status")
    rejected = status["http"]["rejected"]
    assert rejected["request_timeout"] >= 1 and rejected["silent_client"] >= 1
    assert status["task_restarts"] == {}


def test_silent_connections_do_not_stop_the_stream(node: NodeWithoutMqtt) -> None:
    stop = threading.Event()

    def pester() -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
                sock.recv(10)  # says nothing; the node hangs up

    thread = threading.Thread(target=pester, daemon=True)
    thread.start()
    try:
        with StreamReader(node.url + "/stream") as viewer:
            parts = viewer.parts(10)
    finally:
        stop.set()
        thread.join(5)
    assert [p.image().size for p in parts] == [(160, 120)] * 10


def test_a_header_less_http10_request_is_served(node: NodeWithoutMqtt) -> None:
    answer = exchange(node.port, b"GET /status HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"id": "web"' in answer


def test_connect_and_close_does_not_hang_the_node(node: NodeWithoutMqtt) -> None:
    # adafruit_httpserver's own reader loops forever on a connection closed before its first byte
    # (recv_into returns 0 and it waits for a blank line); the node's reader must not.
    with StreamReader(node.url + "/stream") as viewer:
        viewer.read_part()
        for _ in range(5):
            socket.create_connection(("127.0.0.1", node.port), timeout=5).close()
        assert len(viewer.parts(5)) == 5
    assert get_json(node.url + "/status")["id"] == "web"
