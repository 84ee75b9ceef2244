"""The recordings' HTTP endpoints: the list, the file for download, and playback as MJPEG at its pace.

Playback reads the segment on a worker thread a few frames at a time and writes each JPEG as one
MJPEG part when its moment comes (``?t=`` seconds in, ``?speed=`` times as fast), so a dashboard
plays a recording in an ``<img>`` exactly like the live view. Auth is that of the live stream:
credentials, or the camera's view token (the routes carry a ``media`` part, which the guard reads).

In a cluster a camera's recordings are wherever it was owned: the list merges what every live hub
holds of it (``?local=1``: only this hub's), each item naming its holder (``hub``), and its stream and
download links carry ``?hub=<holder>``: any hub passes such a request on to the holder and the answer
back, so playback works through any hub (and through HAProxy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import aiohttp
import av
from aiohttp import web

from camhub.hub.http.responses import camera_or_404, error, http_error, json_response, query_number, time_range
from camhub.hub.http.services import services
from camhub.hub.http.streams import take_connection
from camhub.hub.taps import segments
from camhub.hub.taps.recordings import RECORDING_ID
from camhub_node import mjpeg

MAX_PLAYBACKS = 16  # recordings played at once, hub-wide (each holds a file and a worker-thread read)
BATCH = 8  # frames read per trip to the worker thread
MAX_OFFSET_S = 7 * 86400.0


class Playbacks:
    """Recordings being played back now, against the limit."""

    def __init__(self, limit: int = MAX_PLAYBACKS, write_timeout_s: float = 10.0) -> None:
        self.limit = limit
        self.write_timeout_s = write_timeout_s  # a viewer that takes nothing for this long is gone
        self.playing = 0


PLAYBACKS = web.AppKey("playbacks", Playbacks)


def add_routes(app: web.Application, playbacks: Playbacks) -> None:
    app[PLAYBACKS] = playbacks
    app.router.add_get("/api/cameras/{camera_id}/recordings", api_recordings)
    app.router.add_get("/cameras/{camera_id}/recordings/{rec}/{media:video\\.mkv}", download)
    app.router.add_get("/cameras/{camera_id}/recordings/{rec}/{media:stream}", playback)


def _urls(camera_id: str, item: dict[str, Any], hub: str | None = None) -> dict[str, Any]:
    base = f"/cameras/{camera_id}/recordings/{item['id']}"
    held = "" if hub is None else f"?hub={hub}"
    return {**item, "stream": f"{base}/stream{held}", "download": f"{base}/video.mkv{held}",
            **({} if hub is None else {"hub": hub})}


async def api_recordings(request: web.Request) -> web.Response:
    camera = camera_or_404(request)
    since, until = time_range(request)
    found = services(request)
    items = found.recordings.recorder_for(camera.id).recordings(since, until)
    cluster = found.cluster
    if cluster is None:
        return json_response([_urls(camera.id, item) for item in items])
    merged = [_urls(camera.id, item, cluster.hub_id) for item in items]
    if request.query.get("local") != "1":
        elsewhere, _unreachable = await cluster.peers.recordings(camera.id, request.query)
        for hub_id, held in elsewhere.items():
            merged += [_urls(camera.id, item, hub_id) for item in held if RECORDING_ID.match(item["id"])]
        merged.sort(key=_start, reverse=True)
    return json_response(merged)


def _start(item: dict[str, Any]) -> float:
    start = item.get("start")
    return float(start) if isinstance(start, int | float) else 0.0


async def _elsewhere(request: web.Request) -> web.StreamResponse | None:
    """A request for a recording another hub holds (``?hub=``): passed on to it, its answer passed back."""
    cluster = services(request).cluster
    holder = request.query.get("hub")
    if cluster is None or holder is None or holder == cluster.hub_id:
        return None
    camera = camera_or_404(request)
    member = cluster.peers.live(holder)
    if member is None:
        return error(503, "the hub holding this recording is not online", id=camera.id, hub=holder[:64])
    query = {k: v for k, v in request.query.items() if k in ("t", "speed")}
    query["hub"] = holder
    try:
        upstream = await cluster.peers.open(member, request.path, query)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return error(503, "the hub holding this recording does not answer", id=camera.id, hub=holder)
    async with upstream:
        if upstream.status == 200 and upstream.headers.get("Content-Type") == mjpeg.CONTENT_TYPE:
            return await _relay_stream(request, upstream)
        headers = {k: v for k, v in upstream.headers.items()
                   if k.lower() in ("content-type", "content-length", "content-disposition", "x-camera-id",
                                    "x-recording-id", "retry-after")}
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, ConnectionError, OSError):
            pass  # either side left
    return response


async def _relay_stream(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """A playback from its holder, passed on as it comes: the same MJPEG response, until either side goes."""
    extra = b"".join(f"{name}: {upstream.headers[name]}\r\n".encode() for name in ("X-Camera-Id", "X-Recording-Id")
                     if name in upstream.headers)
    taken = take_connection(request, extra)
    if taken is None:
        return web.Response()
    sock, transport, _peer = taken
    loop = asyncio.get_running_loop()
    try:
        async for chunk in upstream.content.iter_any():
            await asyncio.wait_for(loop.sock_sendall(sock, chunk), request.app[PLAYBACKS].write_timeout_s)
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass  # either side left
    finally:
        sock.close()
        transport.close()
    return web.Response()  # never sent: the connection is closed


def _recording(request: web.Request) -> tuple[str, dict[str, Any]]:
    camera = camera_or_404(request)
    rec_id = request.match_info["rec"]
    found = None
    if RECORDING_ID.match(rec_id):
        found = next((r for r in services(request).recordings.recorder_for(camera.id).recordings()
                      if r["id"] == rec_id), None)
    if found is None:
        raise http_error(web.HTTPNotFound, "unknown recording", id=rec_id[:64])
    return camera.id, found


async def download(request: web.Request) -> web.StreamResponse:
    if (passed := await _elsewhere(request)) is not None:
        return passed
    camera_id, found = _recording(request)
    path = services(request).recordings.store.path(camera_id, found["id"])
    if not path.is_file():
        return error(503, "the recording has no data on disk yet", id=found["id"])
    return web.FileResponse(path, headers={
        "Content-Type": "video/x-matroska",
        "Content-Disposition": f'attachment; filename="{camera_id}-{found["id"]}.mkv"'})


def _take(frames: Generator[tuple[int, bytes], None, None], count: int) -> list[tuple[int, bytes]]:
    out = []
    for item in frames:
        out.append(item)
        if len(out) == count:
            break
    return out


async def playback(request: web.Request) -> web.StreamResponse:
    if (passed := await _elsewhere(request)) is not None:
        return passed
    camera_id, found = _recording(request)
    offset = query_number(request, "t", 0.0, 0.0, MAX_OFFSET_S) or 0.0
    speed = query_number(request, "speed", 1.0, 0.1, 64.0) or 1.0
    playbacks = request.app[PLAYBACKS]
    if playbacks.playing >= playbacks.limit:
        return error(503, "too many recordings playing", id=found["id"])
    path = services(request).recordings.store.path(camera_id, found["id"])
    try:
        frames = segments.read(path, int(offset * 1000))
        batch = await asyncio.to_thread(_take, frames, BATCH)
    except (OSError, av.error.FFmpegError):
        return error(503, "the recording cannot be read yet", id=found["id"])
    taken = take_connection(request, b"X-Camera-Id: " + camera_id.encode() + b"\r\nX-Recording-Id: "
                            + found["id"].encode() + b"\r\n")
    if taken is None:
        await asyncio.to_thread(frames.close)
        return web.Response()
    sock, transport, _peer = taken
    playbacks.playing += 1
    loop = asyncio.get_running_loop()
    try:
        began = first = None
        seq = 0
        while batch:
            for pts, jpeg in batch:
                if began is None or first is None:
                    began, first = loop.time(), pts
                delay = began + (pts - first) / 1000 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                captured = found["start"] + pts / 1000
                seconds = int(captured)
                seq += 1
                part = mjpeg.encode_part(jpeg, seq, seconds, int((captured - seconds) * 1_000_000))
                # a viewer that takes nothing for this long is gone (as for live viewers)
                await asyncio.wait_for(loop.sock_sendall(sock, part), playbacks.write_timeout_s)
            batch = await asyncio.to_thread(_take, frames, BATCH)
    except (OSError, TimeoutError):
        pass  # the viewer left, or stopped reading
    finally:
        playbacks.playing -= 1
        await asyncio.to_thread(frames.close)
        sock.close()
        transport.close()
    return web.Response()  # never sent: the connection is closed
