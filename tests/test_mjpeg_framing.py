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


@pytest.mark.parametrize("length,seq,ts,us", [(0, 0, 0, 0), (1004, 42, 1764000000, 5), (2**31, 10**12, 2**40, 999999)])
def test_the_hubs_formatted_header_is_the_in_place_one(length: int, seq: int, ts: int, us: int) -> None:
    buf = bytearray(400)
    start = mjpeg.write_part_header(buf, 300, length, seq, ts, us)
    assert mjpeg.part_header(length, seq, ts, us) == bytes(buf[start:300])
    with pytest.raises(ValueError):
        mjpeg.part_header(length, seq, ts, 1_000_000)


def test_header_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        mjpeg.write_part_header(bytearray(200), 160, 10, 1, 1, 1_000_000)
    with pytest.raises(ValueError):
        mjpeg.write_part_header(bytearray(200), 10, 10, 1, 1, 0)
    for length, seq, ts, us in ((-1, 1, 1, 0), (1, -1, 1, 0), (1, 1, -1, 0), (1, 1, 1, -1), (1, 1, 1, 10**6)):
        with pytest.raises(ValueError):  # each one alone is refused, by both writers
            mjpeg.write_part_header(bytearray(200), 160, length, seq, ts, us)
        with pytest.raises(ValueError):
            mjpeg.part_header(length, seq, ts, us)


def test_a_header_may_fill_the_room_before_the_jpeg_exactly() -> None:
    room = mjpeg.part_header_length(1004, 42, 1764000000)
    buf = bytearray(room)
    assert mjpeg.write_part_header(buf, room, 1004, 42, 1764000000, 5) == 0
    assert bytes(buf).startswith(b"--camhubframe\r\n") and bytes(buf).endswith(b"\r\n\r\n")


def test_the_stream_response_head() -> None:
    head = mjpeg.response_head(b"X-Camera-Id: door\r\n")
    assert head == (b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=camhubframe\r\n"
                    b"Cache-Control: no-cache, no-store, must-revalidate\r\nPragma: no-cache\r\n"
                    b"Connection: close\r\nX-Camera-Id: door\r\n\r\n")
    assert mjpeg.response_head().endswith(b"Connection: close\r\n\r\n")


# Subscriber times are ticks_ms integers; the second base wraps (2**29) in the middle of each test.
TICK_BASES = pytest.mark.parametrize("base", [0, 2**29 - 2500], ids=["ticks", "ticks-wrapping"])


def at(base: int, ms: int) -> int:
    return (base + ms) % 2**29


@TICK_BASES
def test_subscriber_counts_every_frame_exactly_once(base: int) -> None:
    sub = Subscriber(1, "127.0.0.1:1", "test", now=at(base, 0))
    assert sub.publish(1, at(base, 0))
    sub.begin("f1", 1, 100, at(base, 0))
    assert not sub.publish(2, at(base, 10))  # busy: pending
    assert not sub.publish(3, at(base, 20))  # frame 2 superseded while busy: dropped
    assert sub.advance(60, at(base, 30)) is False
    assert sub.advance(40, at(base, 40)) is True
    assert sub.ready(at(base, 40))
    sub.begin("f3", 3, 10, at(base, 40))
    assert sub.advance(10, at(base, 50))
    assert (sub.frames_sent, sub.frames_dropped, sub.frames_skipped) == (2, 1, 0)
    assert sub.bytes_sent == 110


@TICK_BASES
def test_fps_limit_skips_instead_of_dropping(base: int) -> None:
    sub = Subscriber(1, "p", "ua", now=at(base, 2400), max_fps=2)
    assert sub.publish(1, at(base, 2400))
    sub.begin("f", 1, 1, at(base, 2400))
    sub.advance(1, at(base, 2400))
    assert not sub.publish(2, at(base, 2500))
    assert not sub.publish(3, at(base, 2600))  # 2 superseded while rate-limited: skipped
    assert sub.publish(4, at(base, 3000))  # 3 superseded, but now the limit lets 4 through
    assert (sub.frames_dropped, sub.frames_skipped) == (0, 2)


@TICK_BASES
def test_keepalive_and_stall_detection(base: int) -> None:
    sub = Subscriber(1, "p", "ua", now=at(base, 0))
    sub.publish(1, at(base, 0))
    sub.begin("f", 1, 10, at(base, 0))
    assert not sub.stalled(at(base, 1000), 2000)
    assert sub.stalled(at(base, 2600), 2000)
    sub.advance(10, at(base, 2600))
    assert not sub.keepalive_due(at(base, 3000), 1000)
    assert sub.keepalive_due(at(base, 3100), 500)
    assert sub.as_dict(at(base, 4000))["connected_for_s"] == 4.0
    sub.close("closed")
    sub.close("reset")
    assert sub.reason == "closed"  # the first reason wins


def test_connected_time_is_exact_over_weeks_of_wrapping_ticks() -> None:
    now = 2**29 - 10
    sub = Subscriber(1, "p", "ua", now=now)
    for hour in range(1, 21 * 24 + 1):  # three weeks, looked at hourly: the ticks wrap three times
        now = (now + 3600 * 1000) % 2**29
        assert sub.as_dict(now)["connected_for_s"] == hour * 3600


@TICK_BASES
def test_a_viewer_that_waited_for_buffer_space_gets_the_newest_frame(base: int) -> None:
    sub = Subscriber(1, "p", "ua", now=at(base, 0))
    assert not sub.swap_unsent("f0", 0, 10, at(base, 0))  # nothing in flight: nothing to swap
    assert sub.publish(1, at(base, 0))
    sub.begin("f1", 1, 100, at(base, 0))
    assert not sub.publish(2, at(base, 10))  # busy: 2 waits
    assert not sub.publish(3, at(base, 15))  # 2 superseded while busy: dropped
    assert sub.swap_unsent("f3", 3, 50, at(base, 20))  # no byte of 1 went out: 3 replaces it
    assert (sub.frame, sub.length, sub.offset) == ("f3", 50, 0)
    assert sub.advance(50, at(base, 30)) and not sub.ready(at(base, 30))  # 3 is not sent twice
    assert (sub.frames_sent, sub.frames_dropped) == (1, 2)  # three published: one sent, two dropped
    assert sub.publish(4, at(base, 40))
    sub.begin("f4", 4, 100, at(base, 40))
    assert sub.advance(1, at(base, 50)) is False
    assert not sub.swap_unsent("f5", 5, 10, at(base, 60))  # part of 4 is out: it must finish
    assert (sub.frame, sub.frames_dropped) == ("f4", 2)


@TICK_BASES
def test_the_fps_limit_holds_a_waiting_frame_back_exactly_its_interval(base: int) -> None:
    sub = Subscriber(1, "p", "ua", now=at(base, 0), max_fps=2)  # one frame per 500 ms
    assert sub.ready(at(base, 0)) is False  # nothing published yet
    assert sub.publish(1, at(base, 0))  # the very first frame is never held back
    sub.begin("f1", 1, 10, at(base, 0))
    assert sub.advance(10, at(base, 5))
    assert not sub.publish(2, at(base, 100))
    assert not sub.ready(at(base, 499))
    assert sub.ready(at(base, 500))
    assert sub.as_dict(at(base, 500))["max_fps"] == 2


@TICK_BASES
def test_keepalive_only_when_idle_with_nothing_new(base: int) -> None:
    sub = Subscriber(1, "p", "ua", now=at(base, 0))
    assert not sub.keepalive_due(at(base, 5000), 1000)  # never sent anything: nothing to repeat
    sub.publish(1, at(base, 0))
    sub.begin("f1", 1, 10, at(base, 0))
    assert not sub.keepalive_due(at(base, 5000), 1000)  # a frame in flight
    sub.advance(10, at(base, 0))
    assert sub.keepalive_due(at(base, 1000), 1000)
    assert not sub.publish(2, at(base, 1000), busy=True)  # a new frame waits: send that, not a repeat
    assert not sub.keepalive_due(at(base, 5000), 1000)


@TICK_BASES
def test_a_viewers_report_carries_the_contract_fields_and_its_real_rate(base: int) -> None:
    sub = Subscriber(7, "10.0.0.5:5000", "VLC/3.0", now=at(base, 0))
    fresh = sub.as_dict(at(base, 0))
    assert fresh == {"id": 7, "peer": "10.0.0.5:5000", "user_agent": "VLC/3.0", "connected_for_s": 0.0,
                     "frames_sent": 0, "frames_dropped": 0, "frames_skipped": 0, "bytes_sent": 0, "fps": 0.0}
    for i in range(1, 12):  # 11 frames of 10 bytes, one every 100 ms, each done at once
        assert sub.publish(i, at(base, 100 * i))
        sub.begin("f", i, 10, at(base, 100 * i))
        assert sub.advance(10, at(base, 100 * i))
        if i == 10:  # the first second's window closes at 1000 ms with 10 frames in it
            assert sub.as_dict(at(base, 1000))["fps"] == 10.0
    assert sub.as_dict(at(base, 1100))["fps"] == 10.0
    assert not sub.publish(12, at(base, 1150), busy=True)
    assert not sub.publish(13, at(base, 1160), busy=True)
    assert not sub.publish(14, at(base, 1170), busy=True)  # 12 and 13 superseded while busy
    sub.close("reset")
    report = sub.as_dict(at(base, 1234))
    assert report == {"id": 7, "peer": "10.0.0.5:5000", "user_agent": "VLC/3.0", "connected_for_s": 1.2,
                      "frames_sent": 11, "frames_dropped": 2, "frames_skipped": 0, "bytes_sent": 110,
                      "fps": 10.0, "reason": "reset"}
    assert sub.frame is None
    # three more frames over the next 3 s, then nothing: the rate follows, then decays
    for t in (1500, 2700, 3900):
        sub.publish(100 + t, at(base, t))
        sub.begin("f", 100 + t, 1, at(base, t))
        sub.advance(1, at(base, t))
    assert sub.as_dict(at(base, 3900))["fps"] == round(1 * 1000 / 1200, 2)  # 1 frame in a 1.2 s window
    sub.publish(9999, at(base, 4000))
    sub.begin("f", 9999, 1, at(base, 4000))
    sub.advance(1, at(base, 4000))
    assert sub.as_dict(at(base, 5899))["fps"] == round(1000 / 1200, 2)  # the last window's rate...
    assert sub.as_dict(at(base, 5900))["fps"] == 0.5  # ...until 2 s pass with one frame: it decays
    assert sub.as_dict(at(base, 3900 - 10))["fps"] == 0.0  # ticks wrapped past the window start


@TICK_BASES
def test_no_byte_sent_is_no_progress_and_limits_hold_to_the_millisecond(base: int) -> None:
    sub = Subscriber(1, "p", "ua", now=at(base, 0))
    sub.publish(1, at(base, 0))
    sub.begin("f1", 1, 10, at(base, 0))
    assert sub.advance(0, at(base, 1500)) is False  # a zero-byte write does not reset the write timeout
    assert sub.stalled(at(base, 2100), 2000)
    slow = Subscriber(2, "p", "ua", now=at(base, 0), max_fps=0.5)  # ?fps=0.5: a frame every 2 s
    assert slow.publish(1, at(base, 0))
    slow.begin("f1", 1, 1, at(base, 0))
    slow.advance(1, at(base, 0))
    assert not slow.publish(2, at(base, 0))  # published in the same millisecond: held back
    assert not slow.ready(at(base, 0)) and not slow.ready(at(base, 1999))
    assert slow.publish(3, at(base, 2000))  # exactly the interval later: through
    assert slow.frames_skipped == 1
    slow.begin("f3", 3, 1, at(base, 2000))
    assert slow.swap_unsent("f4", 4, 1, at(base, 2010))
    assert not slow.stalled(at(base, 2020), 1000)  # the swapped-in frame restarts the write clock
