"""The hub's tolerant MJPEG parser: every quirk real cameras send, any chunking, any garbage."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from camhub.hub.ingest.parser import (
    HEADER_ALLOWANCE,
    MjpegParser,
    ParsedFrame,
    boundary_from_content_type,
)
from camhub_node import mjpeg

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
LIMIT = 4096


@dataclass(frozen=True)
class Style:
    """How a camera frames its parts (what it declares, what it actually sends)."""

    declared: str | None  # the boundary as the Content-Type header gives it (None: no header)
    wire: bytes  # the boundary line as sent
    eol: bytes = b"\r\n"
    content_length: bool = True
    after_body: bytes | None = None  # what separates a body from the next boundary (default eol)

    def part(self, jpeg: bytes, seq: int) -> bytes:
        head = [self.wire, b"Content-Type: image/jpeg"]
        if self.content_length:
            head.append(b"Content-Length: %d" % len(jpeg))
        head.append(b"X-Frame-Seq: %d" % seq)
        head.append(b"X-Timestamp: 1764000000.%06d" % seq)
        sep = self.eol if self.after_body is None else self.after_body
        return self.eol.join(head) + self.eol + self.eol + jpeg + sep

    def stream(self, jpegs: list[bytes]) -> bytes:
        # A final boundary: a part without Content-Length ends only where the next one starts.
        return b"".join(self.part(j, i) for i, j in enumerate(jpegs)) + self.wire + b"--" + self.eol


STYLES = {
    "standard": Style("foo", b"--foo"),
    "declared_with_dashes": Style("--foo", b"--foo"),
    "quoted": Style('"foo"', b"--foo"),
    "doubled_dashes": Style("foo", b"----foo"),
    "lf_only": Style("foo", b"--foo", eol=b"\n"),
    "no_content_length": Style("foo", b"--foo", content_length=False),
    "no_length_lf_only": Style("--foo", b"--foo", eol=b"\n", content_length=False),
    "undeclared": Style(None, b"--myboundary"),
    "undeclared_no_length": Style(None, b"--myboundary", eol=b"\n", content_length=False),
    "no_gap_after_body": Style("foo", b"--foo", after_body=b""),
}


def most_buffered(parser: MjpegParser) -> int:
    """What a parser may hold at most: the frame limit, a header block, one read step and a little slack."""
    return parser.max_frame_bytes + HEADER_ALLOWANCE + 65536 + 1024


def node_stream(jpegs: list[bytes]) -> bytes:
    """Exactly what a camhub node sends (the shared framing)."""
    return b"".join(bytes(mjpeg.encode_part(j, i, 1764000000, i)) for i, j in enumerate(jpegs))


def feed_chunks(parser: MjpegParser, data: bytes, cuts: list[int]) -> list[ParsedFrame]:
    out: list[ParsedFrame] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out += parser.feed(data[last:cut])
        last = cut
        assert parser.buffered <= most_buffered(parser)
    return out


def fake_jpeg(i: int, size: int = 200) -> bytes:
    rnd = random.Random(i)
    return SOI + bytes(rnd.getrandbits(8) for _ in range(size)) + EOI


def real_jpeg(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    rnd = random.Random(seed)
    img = Image.frombytes("RGB", size, bytes(rnd.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


bodies = st.binary(max_size=300).map(lambda b: SOI + b + EOI)


# ---- the quirks, one example each ----------------------------------------------------------
@pytest.mark.parametrize("name", list(STYLES))
def test_each_quirk_yields_every_frame(name: str) -> None:
    style = STYLES[name]
    jpegs = [fake_jpeg(i, 100 + 50 * i) for i in range(6)]
    parser = MjpegParser(style.declared, LIMIT)
    frames = parser.feed(style.stream(jpegs))
    assert [f.jpeg for f in frames] == jpegs
    assert [f.seq for f in frames] == list(range(6))
    assert frames[2].timestamp == pytest.approx(1764000000.000002)
    assert (parser.resyncs, parser.dropped_not_jpeg, parser.dropped_oversize) == (0, 0, 0)


def test_node_framing_with_real_jpegs_in_small_chunks() -> None:
    jpegs = [real_jpeg(i) for i in range(3)]
    data = node_stream(jpegs)
    parser = MjpegParser(mjpeg.BOUNDARY, 2 * 1024 * 1024)
    frames = feed_chunks(parser, data, list(range(0, len(data), 1400)))
    assert [f.jpeg for f in frames] == jpegs
    assert frames[1].headers["content-type"] == "image/jpeg"
    assert parser.frames == 3 and parser.bytes_in == len(data)
    Image.open(io.BytesIO(frames[2].jpeg)).load()  # decodable, not just delimited


@pytest.mark.parametrize("header,expected", [
    ("multipart/x-mixed-replace; boundary=frame", "frame"),
    ('multipart/x-mixed-replace;boundary="--frame"', "--frame"),
    ('Multipart/X-Mixed-Replace; Boundary="my boundary"; charset=x', "my boundary"),
    ("multipart/x-mixed-replace;boundary=--myboundary", "--myboundary"),
    ("multipart/x-mixed-replace", None),
    ("", None),
    (None, None),
])
def test_boundary_from_content_type(header: str | None, expected: str | None) -> None:
    assert boundary_from_content_type(header) == expected


def test_declared_oversize_part_is_refused_at_once_and_never_buffered() -> None:
    parser = MjpegParser("foo", LIMIT)
    head = b"--foo\r\nContent-Type: image/jpeg\r\nContent-Length: 100000000\r\n\r\n" + SOI
    assert parser.feed(head) == []
    assert parser.dropped_oversize == 1  # before any of the body arrived
    chunk = bytes(64 * 1024)
    for _ in range(40):  # 2.5 MB of the refused body
        assert parser.feed(chunk) == []
        assert parser.buffered <= LIMIT
    good = fake_jpeg(1)
    frames = parser.feed(b"\r\n" + Style("foo", b"--foo").part(good, 7))
    assert [(f.jpeg, f.seq) for f in frames] == [(good, 7)]


def test_part_without_length_growing_past_the_limit_is_dropped() -> None:
    style = STYLES["no_content_length"]
    big = SOI + bytes(3 * LIMIT) + EOI
    parser = MjpegParser("foo", LIMIT)
    frames = feed_chunks(parser, style.stream([fake_jpeg(1), big, fake_jpeg(2)]), list(range(0, 20000, 512)))
    assert [f.jpeg for f in frames] == [fake_jpeg(1), fake_jpeg(2)]
    assert parser.dropped_oversize == 1


@pytest.mark.parametrize("name", ["no_content_length", "standard"])
def test_a_part_is_judged_by_its_size_exactly_at_the_limit(name: str) -> None:
    """A JPEG of exactly ``max_frame_bytes`` passes and one byte more is dropped, with or without a length."""
    style = STYLES[name]
    at_limit, over = SOI + bytes(LIMIT - 4) + EOI, SOI + bytes(LIMIT - 3) + EOI
    for cuts in ([], list(range(0, 4 * LIMIT, 700))):
        parser = MjpegParser("foo", LIMIT)
        frames = feed_chunks(parser, style.stream([at_limit, fake_jpeg(1), over, fake_jpeg(2)]), cuts)
        assert [f.jpeg for f in frames] == [at_limit, fake_jpeg(1), fake_jpeg(2)]
        assert parser.dropped_oversize == 1


def test_parts_that_are_not_jpeg_are_dropped_and_counted() -> None:
    style = STYLES["standard"]
    no_soi = b"<html>not a picture</html>"
    no_eoi = SOI + b"cut short"
    data = (style.part(fake_jpeg(1), 1) + style.part(no_soi, 2) + style.part(no_eoi, 3)
            + style.part(b"", 4) + style.part(fake_jpeg(5), 5))
    parser = MjpegParser("foo", LIMIT)
    frames = parser.feed(data)
    assert [f.seq for f in frames] == [1, 5]
    assert parser.dropped_not_jpeg == 3


@pytest.mark.parametrize("name", ["standard", "no_content_length", "lf_only"])
def test_a_part_ending_like_a_jpeg_but_not_starting_like_one_is_dropped(name: str) -> None:
    style = STYLES[name]
    impostor = b"<html>camera busy</html>" + EOI  # ends in FF D9, has no start marker
    data = (style.part(fake_jpeg(1), 1) + style.part(impostor, 2) + style.part(fake_jpeg(3), 3)
            + style.wire + b"--" + style.eol)
    for chunking in ([], list(range(0, len(data), 7))):
        parser = MjpegParser("foo", LIMIT)
        frames = feed_chunks(parser, data, chunking)
        assert [f.seq for f in frames] == [1, 3]
        assert parser.dropped_not_jpeg == 1


def test_padding_after_the_end_marker_is_trimmed() -> None:
    jpeg = fake_jpeg(3)
    padded = jpeg + bytes(20)  # some encoders pad the buffer they send
    parser = MjpegParser("foo", LIMIT)
    frames = parser.feed(Style("foo", b"--foo").part(padded, 1) + b"--foo\r\n")
    assert [f.jpeg for f in frames] == [jpeg]


@pytest.mark.parametrize("error", [-10, -1, 1, 10])
def test_wrong_content_length_is_recovered_by_scanning(error: int) -> None:
    jpegs = [fake_jpeg(i) for i in range(3)]
    style = STYLES["standard"]
    wrong = style.part(jpegs[1], 1).replace(b"Content-Length: %d" % len(jpegs[1]),
                                            b"Content-Length: %d" % (len(jpegs[1]) + error))
    data = style.part(jpegs[0], 0) + wrong + style.part(jpegs[2], 2)
    parser = MjpegParser("foo", LIMIT)
    assert [f.jpeg for f in parser.feed(data)] == jpegs
    assert parser.resyncs <= 1  # one byte too many is just the line end, trimmed as padding


def test_garbage_between_parts_is_skipped_and_counted_once_per_gap() -> None:
    style = STYLES["standard"]
    jpegs = [fake_jpeg(i) for i in range(3)]
    data = (b"preamble is fine\r\n" + style.part(jpegs[0], 0) + b"\x00junk\xff" * 100
            + style.part(jpegs[1], 1) + style.part(jpegs[2], 2))
    parser = MjpegParser("foo", LIMIT)
    assert [f.jpeg for f in parser.feed(data)] == jpegs
    assert parser.resyncs == 1


def test_a_part_cut_short_by_the_next_boundary() -> None:
    style = STYLES["standard"]
    data = b"--foo\r\nContent-Type: image/jpeg\r\n" + style.part(fake_jpeg(2), 2)
    parser = MjpegParser("foo", LIMIT)
    assert [f.seq for f in parser.feed(data)] == [2]


def test_endless_header_line_is_abandoned() -> None:
    parser = MjpegParser("foo", LIMIT)
    parser.feed(b"--foo\r\nX-Junk: " + b"a" * (HEADER_ALLOWANCE + 100))
    assert parser.resyncs == 1 and parser.buffered <= most_buffered(parser)
    assert [f.seq for f in parser.feed(b"\r\n" + STYLES["standard"].part(fake_jpeg(1), 9))] == [9]


def test_bad_header_values_are_ignored_not_fatal() -> None:
    jpeg = fake_jpeg(1)
    data = (b"--foo\r\nContent-Length: %d\r\nX-Frame-Seq: -3\r\nX-Timestamp: nan\r\nno colon here\r\n\r\n"
            % len(jpeg)) + jpeg + b"\r\n"
    (frame,) = MjpegParser("foo", LIMIT).feed(data)
    assert (frame.jpeg, frame.seq, frame.timestamp) == (jpeg, None, None)


# ---- properties ----------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(STYLES)), st.lists(bodies, min_size=1, max_size=8), st.data())
def test_any_chunking_gives_the_same_frames(name: str, jpegs: list[bytes], data: st.DataObject) -> None:
    style = STYLES[name]
    needle = b"--" + (style.declared or "myboundary").strip('"').lstrip("-").encode()
    assume(not any(needle in j for j in jpegs))
    stream = style.stream(jpegs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    frames = feed_chunks(MjpegParser(style.declared, LIMIT), stream, cuts)
    assert [f.jpeg for f in frames] == jpegs
    assert [f.seq for f in frames] == list(range(len(jpegs)))


@settings(max_examples=60, deadline=None)
@given(st.lists(bodies, min_size=1, max_size=6), st.data())
def test_node_framing_survives_any_chunking(jpegs: list[bytes], data: st.DataObject) -> None:
    stream = node_stream(jpegs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=60))
    frames = feed_chunks(MjpegParser(mjpeg.BOUNDARY, LIMIT), stream, cuts)
    assert [f.jpeg for f in frames] == jpegs


# Token soup: random bytes mixed with the pieces a parser reacts to, so garbage gets deep.
TOKENS = [b"--foo", b"--foo--", b"----foo", b"\r\n", b"\n", b"\r\n\r\n", b"--", b"-", b"Content-Length: ",
          b"Content-Length: 40000000", b"Content-Length: 300", b"12", b"0", SOI, EOI, b"X-Frame-Seq: ",
          b"X-Timestamp: 1e999", b":", b" " * 70, b"\x00" * 70, b"-" * 20]
soup = st.lists(st.one_of(st.binary(max_size=80), st.sampled_from(TOKENS)), max_size=60).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=12), st.sampled_from([None, "foo"]))
def test_random_bytes_never_raise_and_memory_stays_bounded(chunks: list[bytes], boundary: str | None) -> None:
    parser = MjpegParser(boundary, LIMIT)
    for chunk in chunks:
        for frame in parser.feed(chunk):
            assert frame.jpeg.startswith(SOI) and len(frame.jpeg) <= LIMIT
        assert parser.buffered <= most_buffered(parser)


@settings(max_examples=200, deadline=None)
@given(soup, st.sampled_from([None, "foo"]), st.data())
def test_token_soup_parses_the_same_however_it_is_chunked(garbage: bytes, boundary: str | None,
                                                          data: st.DataObject) -> None:
    stream = garbage + b"\r\n" + STYLES["standard"].stream([fake_jpeg(i) for i in range(3)])
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    whole = MjpegParser(boundary, LIMIT)
    split = MjpegParser(boundary, LIMIT)
    expected = whole.feed(stream)
    got = feed_chunks(split, stream, cuts)
    assert [f.jpeg for f in got] == [f.jpeg for f in expected]
    counters = ("frames", "dropped_oversize", "dropped_not_jpeg", "resyncs", "bytes_in")
    assert [getattr(split, c) for c in counters] == [getattr(whole, c) for c in counters]


@settings(max_examples=150, deadline=None)
@given(soup, st.data())
def test_valid_frames_after_any_garbage_come_out(garbage: bytes, data: st.DataObject) -> None:
    style = STYLES["standard"]
    jpegs = [fake_jpeg(i, 150) for i in range(80)]
    parts = [style.part(j, i) for i, j in enumerate(jpegs)]
    stream = garbage + b"\r\n" + b"".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    got = {f.jpeg for f in feed_chunks(MjpegParser("foo", LIMIT), stream, cuts)}
    # Garbage can at worst hide the frames within one frame limit (plus headers) after it.
    offset, must = len(garbage) + 2, []
    for part, jpeg in zip(parts, jpegs, strict=True):
        if offset > len(garbage) + LIMIT + HEADER_ALLOWANCE:
            must.append(jpeg)
        offset += len(part)
    assert must and all(j in got for j in must)


@settings(max_examples=150, deadline=None)
@given(st.lists(bodies, min_size=2, max_size=6), st.lists(st.binary(min_size=1, max_size=200), min_size=1),
       st.data())
def test_garbage_between_parts_loses_nothing(jpegs: list[bytes], junk: list[bytes], data: st.DataObject) -> None:
    style = STYLES["standard"]
    assume(not any(b"--foo" in j for j in jpegs + junk))
    pieces = []
    for i, jpeg in enumerate(jpegs):
        pieces.append(style.part(jpeg, i))
        pieces.append(junk[i % len(junk)] if data.draw(st.booleans()) else b"")
    stream = b"".join(pieces)
    frames = feed_chunks(MjpegParser("foo", LIMIT), stream, data.draw(st.lists(st.integers(0, len(stream)))))
    assert [f.jpeg for f in frames] == jpegs


@settings(max_examples=150, deadline=None)
@given(st.lists(bodies, min_size=4, max_size=8), st.binary(min_size=1, max_size=300), st.data())
def test_garbage_inside_a_part_costs_at_most_two_frames(jpegs: list[bytes], junk: bytes,
                                                        data: st.DataObject) -> None:
    style = STYLES["standard"]
    assume(not any(b"--foo" in j for j in [*jpegs, junk]))
    parts = [style.part(j, i) for i, j in enumerate(jpegs)]
    stream = b"".join(parts)
    at = data.draw(st.integers(0, len(stream)))
    hit = next(i for i, end in enumerate(_ends(parts)) if at < end or i == len(parts) - 1)
    frames = MjpegParser("foo", LIMIT).feed(stream[:at] + junk + stream[at:])
    got = [f.jpeg for f in frames]
    must = [j for i, j in enumerate(jpegs) if i < hit or i > hit + 1]
    assert all(j in got for j in must)


def _ends(parts: list[bytes]) -> list[int]:
    total, ends = 0, []
    for part in parts:
        total += len(part)
        ends.append(total)
    return ends


def _fast_and_slow_agree(stream: bytes, boundary: str | None, cuts: list[int]) -> None:
    fast, slow = MjpegParser(boundary, LIMIT), MjpegParser(boundary, LIMIT)
    slow.fast_path = False
    got, expected = feed_chunks(fast, stream, cuts), feed_chunks(slow, stream, cuts)
    assert [(f.jpeg, f.seq, f.timestamp, f.headers) for f in got] == [
        (f.jpeg, f.seq, f.timestamp, f.headers) for f in expected]
    counters = ("frames", "dropped_oversize", "dropped_not_jpeg", "resyncs", "bytes_in")
    assert [getattr(fast, c) for c in counters] == [getattr(slow, c) for c in counters]
    assert fast.buffered <= slow.buffered  # (the fast path does not keep a part's trailing line break)


_NODE = node_stream([fake_jpeg(1)])
_PART = STYLES["standard"].part(fake_jpeg(2), 2)


@pytest.mark.parametrize("stream,boundary", [
    (_NODE + b"garbage between" + _NODE, mjpeg.BOUNDARY),  # a resync after a part taken whole
    (_NODE + b"\r\n\r\n\r\n" + _NODE, mjpeg.BOUNDARY),  # extra blank lines are not garbage
    (_PART.replace(b"Content-Type", b"--foo\r\nContent-Type") + _PART, "foo"),  # a boundary among headers
    (_PART.replace(b"X-Frame-Seq", b" \r\nX-Frame-Seq") + _PART, "foo"),  # a blank-looking header line
    (_PART.replace(b"\r\nX-Frame-Seq", b"\r\r\nX-Frame-Seq") + _PART, "foo"),
    (_PART.replace(b"Content-Length: 204", b"Content-Length: 150") + _PART, "foo"),  # a wrong length
    (_PART.replace(b"Content-Length: 204", b"Content-Length: 208").replace(EOI, EOI + b"\0\0\0\0") + _PART, "foo"),
    (_PART.replace(b"--foo\r\n", b"--foo  \r\n") + _PART, "foo"),  # transport padding after the boundary
])
def test_whole_part_fast_path_agrees_on_known_cases(stream: bytes, boundary: str) -> None:
    _fast_and_slow_agree(stream, boundary, [])
    _fast_and_slow_agree(stream, boundary, [len(stream) // 2])


@pytest.mark.parametrize("cuts", ["none", "per_part", "mid_gap"])
@pytest.mark.parametrize("name", ["node", "standard", "no_gap_after_body", "padded"])
def test_ordinary_parts_arriving_whole_take_the_fast_path(name: str, cuts: str) -> None:
    """What the fast path exists for: every ordinary part lying whole in a chunk is taken from it (the state
    machine would give the same frames, only slower, so only this counter tells the two apart)."""
    jpegs = [real_jpeg(i, (160, 120)) for i in range(6)]
    if name == "node":
        parts, boundary = [node_stream([j]) for j in jpegs], mjpeg.BOUNDARY
    elif name == "padded":  # a line break before each boundary line, as many servers send
        parts, boundary = [b"\r\n" + STYLES["standard"].part(j, i) for i, j in enumerate(jpegs)], "foo"
    else:
        parts, boundary = [STYLES[name].part(j, i) for i, j in enumerate(jpegs)], STYLES[name].declared
    stream, ends = b"".join(parts), _ends(parts)
    chunk_ends = {"none": [], "per_part": ends, "mid_gap": [e + 10 for e in ends[:-1]]}[cuts]
    parser = MjpegParser(boundary, 2 * 1024 * 1024)
    frames = feed_chunks(parser, stream, chunk_ends)
    assert [f.jpeg for f in frames] == jpegs
    # (cut 10 bytes into each next part, none after the first is whole in a chunk: the state machine takes them)
    assert parser.parts_whole == (1 if cuts == "mid_gap" else len(jpegs))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(soup, st.sampled_from(["node", "standard", "lf_only", "no_gap_after_body"])), max_size=12),
       st.sampled_from([None, "foo", mjpeg.BOUNDARY]), st.data())
def test_whole_part_fast_path_agrees_with_the_state_machine(pieces: list, boundary: str | None,
                                                            data: st.DataObject) -> None:
    """Parts taken whole from a chunk give exactly what the general state machine gives."""
    stream = b""
    for i, piece in enumerate(pieces):
        if piece == "node":
            stream += node_stream([fake_jpeg(i)])
        elif isinstance(piece, str):
            stream += STYLES[piece].part(fake_jpeg(i), i)
        else:
            stream += piece
    _fast_and_slow_agree(stream, boundary, data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))


@pytest.mark.parametrize("name", ["undeclared", "undeclared_no_length"])
def test_an_undeclared_boundary_is_found_wherever_the_stream_is_cut(name: str) -> None:
    style = STYLES[name]
    jpegs = [fake_jpeg(i, 60) for i in range(3)]
    # before the first part: "--" inside a line, a "--" line too long to be a boundary, one with bad characters
    preamble = (b"x--not-a-boundary" + style.eol + b"--" + b"y" * 100 + style.eol
                + b"--<b>not one either</b>" + style.eol)
    data = preamble + style.stream(jpegs)
    for size in (1, 2, 3, 5, 64, len(data)):
        parser = MjpegParser(None, LIMIT)
        frames = feed_chunks(parser, data, list(range(size, len(data), size)))
        assert [f.jpeg for f in frames] == jpegs, f"chunks of {size} bytes"
        assert parser.boundary == "myboundary"


def test_every_resync_and_oversize_part_is_counted() -> None:
    style, loose = STYLES["standard"], STYLES["no_content_length"]
    wrong = style.part(fake_jpeg(1), 1).replace(b"Content-Length: %d" % len(fake_jpeg(1)), b"Content-Length: 150")
    data = wrong + style.part(fake_jpeg(2), 2) + wrong + style.part(fake_jpeg(3), 3)
    parser = MjpegParser("foo", LIMIT)
    assert [f.seq for f in parser.feed(data)] == [1, 2, 1, 3]  # each wrong length recovered by scanning
    assert parser.resyncs == 2
    big = SOI + bytes(2 * LIMIT) + EOI
    parser = MjpegParser("foo", LIMIT)
    frames = parser.feed(loose.part(big, 1) + loose.part(fake_jpeg(2), 2) + loose.part(big, 3)
                         + loose.part(fake_jpeg(4), 4) + loose.wire + b"--" + loose.eol)
    assert [f.seq for f in frames] == [2, 4] and parser.dropped_oversize == 2
