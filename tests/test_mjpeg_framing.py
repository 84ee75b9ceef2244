"""The shared part framing: exact bytes, in place, and the subscriber's accounting."""

from __future__ import annotations

import pytest

from camhub_node import mjpeg
from camhub_node.subscriber import Subscriber


def test_part_is_written_in_place_and_matches_the_contract() -> None:
    jpeg = b"\xff\xd8" + b"x" * 1000 + b"\xff\xd9"
    buf = bytearray(mjpeg.HEADER_ROOM + len(jpeg) + 2)
    buf[mjpeg.HEADER_ROOM:mjpeg.HEADER_ROOM + len(jpeg)] = jpeg
    start = mjpeg.write_part_header(buf, mjpeg.HEADER_ROOM, len(jpeg), 42, 1764000000, 5)
    expected_head = (b"--camhubframe\r\nContent-Type: image/jpeg\r\nContent-Length: 1004\r\n"
                     b"X-Frame-Seq: 42\r\nX-Timestamp: 1764000000.000005\r\n\r\n")
    assert bytes(buf[start:mjpeg.HEADER_ROOM]) == expected_head
    assert bytes(buf[mjpeg.HEADER_ROOM:-2]) == jpeg
    assert bytes(mjpeg.encode_part(jpeg, 42, 1764000000, 5)) == expected_head + jpeg + b"\r\n"


@pytest.mark.parametrize("length,seq,ts", [(0, 0, 0), (9, 9, 9), (10, 10, 10), (2**31, 10**12, 2**40)])
def test_header_length_is_exact(length: int, seq: int, ts: int) -> None:
    buf = bytearray(400)
    start = mjpeg.write_part_header(buf, 300, length, seq, ts, 999999)
    assert 300 - start == mjpeg.part_header_length(length, seq, ts) <= mjpeg.HEADER_ROOM
    assert bytes(buf[start:300]).endswith(b"\r\n\r\n")


def test_header_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        mjpeg.write_part_header(bytearray(200), 160, 10, 1, 1, 1_000_000)
    with pytest.raises(ValueError):
        mjpeg.write_part_header(bytearray(200), 10, 10, 1, 1, 0)


def test_subscriber_counts_every_frame_exactly_once() -> None:
    sub = Subscriber(1, "127.0.0.1:1", "test", now=0.0)
    assert sub.publish(1, 0.0)
    sub.begin("f1", 1, 100, 0.0)
    assert not sub.publish(2, 0.01)  # busy: pending
    assert not sub.publish(3, 0.02)  # frame 2 superseded while busy: dropped
    assert sub.advance(60, 0.03) is False
    assert sub.advance(40, 0.04) is True
    assert sub.ready(0.04)
    sub.begin("f3", 3, 10, 0.04)
    assert sub.advance(10, 0.05)
    assert (sub.frames_sent, sub.frames_dropped, sub.frames_skipped) == (2, 1, 0)
    assert sub.bytes_sent == 110


def test_fps_limit_skips_instead_of_dropping() -> None:
    sub = Subscriber(1, "p", "ua", now=0.0, max_fps=2)
    assert sub.publish(1, 0.0)
    sub.begin("f", 1, 1, 0.0)
    sub.advance(1, 0.0)
    assert not sub.publish(2, 0.1)
    assert not sub.publish(3, 0.2)  # 2 superseded while rate-limited: skipped
    assert sub.publish(4, 0.6)  # 3 superseded, but now the limit lets 4 through
    assert (sub.frames_dropped, sub.frames_skipped) == (0, 2)


def test_keepalive_and_stall_detection() -> None:
    sub = Subscriber(1, "p", "ua", now=0.0)
    sub.publish(1, 0.0)
    sub.begin("f", 1, 10, 0.0)
    assert not sub.stalled(1.0, 2.0)
    assert sub.stalled(2.5, 2.0)
    sub.advance(10, 2.6)
    assert not sub.keepalive_due(3.0, 1.0)
    assert sub.keepalive_due(3.1, 0.5)
    sub.close("closed", 4.0)
    sub.close("reset", 5.0)
    assert sub.reason == "closed" and sub.closed_at == 4.0
