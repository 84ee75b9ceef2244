"""Segment files (``taps.segments``): the JPEGs as sent, with their capture times, in a Matroska file that a
player opens and a crash leaves readable. In process with PyAV; Debian's ffmpeg (another implementation)
reads the files and rewrites their tags. End to end with ffprobe: test_hub_recordings.py."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import av
import pytest
from PIL import Image

from camhub.hub.taps import segments
from camhub.hub.taps.segments import SegmentWriter

START = 1_700_000_000.5


def jpeg(level: int, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, level).save(out, "JPEG", quality=80)
    return out.getvalue()


FRAMES = [jpeg(40 + 9 * i) for i in range(12)]


def written(path: Path, frames: list[tuple[bytes, float | None, int | None]], start: float = START) -> SegmentWriter:
    writer = SegmentWriter(path, start, frames[0][0], "camhub yard always")
    for data, at, pts_ms in frames:
        writer.write(data, at, pts_ms)
    writer.close()
    return writer


def test_each_jpeg_is_stored_as_sent_at_its_capture_time_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "yard" / "seg.mkv"  # the folder is made
    times = [0.0, 0.1004, 0.2006, 0.35, 1.0]
    writer = written(path, [(FRAMES[i], START + t, None) for i, t in enumerate(times)])
    assert list(segments.read(path)) == [(0, FRAMES[0]), (100, FRAMES[1]), (201, FRAMES[2]), (350, FRAMES[3]),
                                         (1000, FRAMES[4])]
    assert (writer.frames, writer.bytes, writer.end) == (5, sum(map(len, FRAMES[:5])), START + 1.0)
    assert [pts for pts, _ in segments.read(path, from_ms=201)] == [201, 350, 1000]
    assert [pts for pts, _ in segments.read(path, from_ms=1001)] == []


def test_timestamps_only_go_forward_when_the_cameras_clock_steps_back(tmp_path: Path) -> None:
    path = tmp_path / "seg.mkv"
    written(path, [(FRAMES[0], START + 1.0, None), (FRAMES[1], START + 0.5, None), (FRAMES[2], START + 0.5, None),
                   (FRAMES[3], START - 3.0, None), (FRAMES[4], START + 1.2, None)])
    assert [pts for pts, _ in segments.read(path)] == [1000, 1001, 1002, 1003, 1200]


def test_a_timelapse_gives_its_own_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "lapse.mkv"
    writer = written(path, [(FRAMES[i], None, 100 * i) for i in range(4)] + [(FRAMES[4], START + 99, 400)])
    assert [pts for pts, _ in segments.read(path)] == [0, 100, 200, 300, 400]  # pts_ms wins over a capture time
    assert writer.end == START + 0.4


def test_a_frame_without_a_time_follows_the_last(tmp_path: Path) -> None:
    path = tmp_path / "seg.mkv"
    writer = SegmentWriter(path, START, FRAMES[0], "t")
    assert writer.end == START  # nothing written yet
    writer.write(FRAMES[0])
    writer.write(FRAMES[1])
    writer.close()
    assert [pts for pts, _ in segments.read(path)] == [0, 1]


def test_the_file_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "seg.mkv"
    big = [jpeg(90, (320, 240)), jpeg(100, (320, 240))]
    written(path, [(big[0], START, None), (big[1], START + 0.25, None)])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("mjpeg", 320, 240)
        assert container.metadata["title"] == "camhub yard always"
    found = segments.probe(path)
    assert (found.start, found.frames, found.bytes, found.duration_s) == (START, 2, sum(map(len, big)), 0.25)
    assert segments.jpeg_size(big[0]) == (320, 240)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.mark.parametrize(("metadata", "start"), [(["-map_metadata", "-1"], None),
                                                 (["-metadata", "CAMHUB_START=soon"], None),
                                                 (["-metadata", "CAMHUB_START=12.5"], 12.5)])
def test_the_start_comes_from_the_files_own_tag(tmp_path: Path, metadata: list[str], start: float | None) -> None:
    path = tmp_path / "seg.mkv"
    written(path, [(FRAMES[i], START + i / 4, None) for i in range(3)])
    copy = tmp_path / "copy.mkv"
    _ffmpeg("-i", str(path), "-c", "copy", *metadata, str(copy))
    found = segments.probe(copy)
    assert (found.start, found.frames, found.duration_s) == (start, 3, 0.5)


def test_a_file_cut_short_by_a_crash_reads_up_to_its_last_whole_frame(tmp_path: Path) -> None:
    path = tmp_path / "seg.mkv"
    written(path, [(FRAMES[i % 12], START + i * 0.25, None) for i in range(40)])  # ten seconds, ten clusters
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) * 2 // 3])
    found = segments.probe(path)
    stored = list(segments.read(path))
    assert 10 < found.frames < 40 and len(stored) == found.frames
    assert [data for _, data in stored] == [FRAMES[i % 12] for i in range(found.frames)]
    assert found.duration_s == stored[-1][0] / 1000 and found.bytes == sum(len(d) for _, d in stored)


def test_a_hub_killed_mid_segment_loses_at_most_the_last_second(tmp_path: Path) -> None:
    # the file as it is on disk while it is still being written is what a killed hub leaves behind
    path, left = tmp_path / "seg.mkv", tmp_path / "left.mkv"
    writer = SegmentWriter(path, START, FRAMES[0], "t")
    times = [i * 0.25 for i in range(25)]  # six seconds
    for i, now in enumerate(times):
        writer.write(FRAMES[i % 12], START + now)
        if now <= 1.0:
            continue  # the first second may be lost whole
        left.write_bytes(path.read_bytes())
        found = segments.probe(left)
        assert found.frames >= sum(1 for t in times if t < now - 1.0), now
        assert [pts for pts, _ in segments.read(left)] == [round(t * 1000) for t in times[:found.frames]]
    writer.close()


def test_a_file_cut_before_its_first_whole_frame_holds_nothing(tmp_path: Path) -> None:
    # a hub killed just after a segment began: the recorder removes such a file on its next start
    path = tmp_path / "seg.mkv"
    written(path, [(FRAMES[0], START, None), (FRAMES[1], START + 0.5, None)])
    whole = path.read_bytes()
    path.write_bytes(whole[:whole.index(bytes.fromhex("1F43B675")) + 20])  # into the first cluster (its ID)
    found = segments.probe(path)
    assert (found.start, found.frames, found.bytes, found.duration_s) == (START, 0, 0, 0.0)


def test_a_start_tag_written_in_lower_case_is_read_too(tmp_path: Path) -> None:
    # ffmpeg upper-cases the tags it writes; a tag editor may keep the name as typed
    path = tmp_path / "seg.mkv"
    written(path, [(FRAMES[i], START + i / 4, None) for i in range(3)])
    lower = tmp_path / "lower.mkv"
    lower.write_bytes(path.read_bytes().replace(b"CAMHUB_START", b"camhub_start"))
    found = segments.probe(lower)
    assert (found.start, found.frames, found.duration_s) == (START, 3, 0.5)


def test_a_first_frame_stamped_before_the_segments_start_is_stored_at_its_start(tmp_path: Path) -> None:
    path = tmp_path / "seg.mkv"
    writer = written(path, [(FRAMES[0], START - 0.5, None), (FRAMES[1], START + 0.5, None)])
    assert [pts for pts, _ in segments.read(path)] == [0, 500]
    assert writer.end == START + 0.5


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))  # this process's threads as the kernel counts them (top -H)


def test_an_open_segment_runs_no_threads_of_its_own(tmp_path: Path) -> None:
    # libavcodec would open the (unused) MJPEG encoder with a pool of worker threads per open file
    before = _threads()
    writers = [SegmentWriter(tmp_path / f"{n}.mkv", START, FRAMES[0], "t") for n in range(6)]
    for writer in writers:
        writer.write(FRAMES[0], START)
    assert _threads() - before < 3  # (slack for another test's thread starting or ending meanwhile)
    for writer in writers:
        writer.close()


def test_a_segments_folders_are_made_however_many_are_missing(tmp_path: Path) -> None:
    # the recordings folder removed while the hub runs (to free space): the next segment makes it again
    path = tmp_path / "recordings" / "yard" / "seg.mkv"
    written(path, [(FRAMES[0], START, None)])
    assert [pts for pts, _ in segments.read(path)] == [0]
