"""``/metrics``: the hub's counters in Prometheus text format, read at scrape time.

The hot paths keep plain integers; this collector turns them into metric families only when
Prometheus asks, so a frame costs no metric-library call. Per camera: what its pull and its feed
count; besides: every ``Family`` of every part the composition root registered (``counted``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from camhub.hub.core.camera import STREAMING
from camhub.hub.core.registry import Cameras
from camhub.hub.util.counters import Counted, Family

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector:
    def __init__(self, cameras: Cameras, counted: Sequence[Counted]) -> None:
        self._cameras = cameras
        self._counted = counted

    def collect(self) -> Iterator[Metric]:
        yield from self._per_camera()
        for part in self._counted:
            yield from (_family(f) for f in part.counters())

    def _per_camera(self) -> Iterable[Metric]:
        labels = ["camera"]
        frames_in = CounterMetricFamily("camhub_camera_frames_in", "Frames received from the camera", labels=labels)
        fps_in = GaugeMetricFamily("camhub_camera_fps_in", "Frames per second received", labels=labels)
        up = GaugeMetricFamily("camhub_camera_up", "1 while the camera streams", labels=labels)
        viewers = GaugeMetricFamily("camhub_camera_viewers", "Connected viewers", labels=labels)
        frames_out = CounterMetricFamily("camhub_camera_frames_out", "Frames delivered to viewers", labels=labels)
        dropped = CounterMetricFamily("camhub_camera_frames_dropped", "Frames skipped for busy viewers",
                                      labels=labels)
        skipped = CounterMetricFamily("camhub_camera_frames_skipped", "Frames left out for viewers' own fps limit",
                                      labels=labels)
        bytes_out = CounterMetricFamily("camhub_camera_bytes_out", "Bytes sent to viewers", labels=labels)
        reconnects = CounterMetricFamily("camhub_camera_upstream_reconnects", "Upstream reconnects",
                                         labels=labels)
        errors = CounterMetricFamily("camhub_camera_ingest_errors", "Upstream data rejected, by kind",
                                     labels=["camera", "kind"])
        for camera in self._cameras:
            cid = [camera.id]
            pull = camera.pull
            feed = camera.feed
            frames_in.add_metric(cid, pull.frames_in if pull else 0)
            fps_in.add_metric(cid, pull.fps_in if pull else 0.0)
            up.add_metric(cid, 1.0 if camera.state == STREAMING else 0.0)
            viewers.add_metric(cid, len(feed.viewers))
            frames_out.add_metric(cid, feed.frames_out)
            dropped.add_metric(cid, feed.dropped_total)
            skipped.add_metric(cid, feed.skipped_total)
            bytes_out.add_metric(cid, feed.bytes_out)
            reconnects.add_metric(cid, pull.reconnects if pull else 0)
            for kind, count in (pull.errors.items() if pull else ()):
                errors.add_metric([camera.id, kind], count)
        return (frames_in, fps_in, up, viewers, frames_out, dropped, skipped, bytes_out, reconnects, errors)


def _family(family: Family) -> Metric:
    labels = [family.label] if family.label else []
    metric: CounterMetricFamily | GaugeMetricFamily
    if family.kind == "gauge":
        metric = GaugeMetricFamily(family.name, family.help, labels=labels)
    else:
        metric = CounterMetricFamily(family.name, family.help, labels=labels)
    for value, count in family.values.items():
        metric.add_metric([value] if family.label else [], count)
    return metric


def render(collector: HubCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


COLLECTOR = web.AppKey("metrics", HubCollector)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=render(request.app[COLLECTOR]), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application, collector: HubCollector) -> None:
    app[COLLECTOR] = collector
    app.router.add_get("/metrics", metrics)
