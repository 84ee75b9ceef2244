"""``/metrics``: the hub's counters in Prometheus text format, read at scrape time.

The hot paths keep plain integers; this collector turns them into metric families only when
Prometheus asks, so a frame costs no metric-library call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from camhub.hub.core.cameras import Cameras


class HubCollector:
    def __init__(self, cameras: Cameras, rejections: Counter[str], refusals: Counter[str],
                 mqtt_connected: Callable[[], bool],
                 counters: Callable[[], Mapping[str, tuple[str, str, Mapping[str, int]]]] | None = None) -> None:
        self._cameras = cameras
        self._rejections = rejections
        self._refusals = refusals
        self._mqtt_connected = mqtt_connected
        # more labelled counters: name -> (help, label name, {label value: count})
        self._counters = counters or dict

    def collect(self) -> Iterator[Metric]:
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
        for camera in self._cameras.cameras.values():
            cid = [camera.id]
            upstream = camera.upstream
            feed = camera.feed
            frames_in.add_metric(cid, upstream.frames_in if upstream else 0)
            fps_in.add_metric(cid, upstream.fps_in if upstream else 0.0)
            up.add_metric(cid, 1.0 if camera.state == "streaming" else 0.0)
            viewers.add_metric(cid, len(feed.viewers))
            frames_out.add_metric(cid, feed.frames_out)
            dropped.add_metric(cid, feed.dropped_total)
            skipped.add_metric(cid, feed.skipped_total)
            bytes_out.add_metric(cid, feed.bytes_out)
            reconnects.add_metric(cid, upstream.reconnects if upstream else 0)
            for kind, count in (upstream.errors.items() if upstream else ()):
                errors.add_metric([camera.id, kind], count)
        yield from (frames_in, fps_in, up, viewers, frames_out, dropped, skipped, bytes_out, reconnects, errors)
        rejected = CounterMetricFamily("camhub_announces_rejected", "MQTT announces rejected", labels=["reason"])
        for reason, count in self._rejections.items():
            rejected.add_metric([reason], count)
        yield rejected
        refused = CounterMetricFamily("camhub_viewers_refused", "Viewer requests refused", labels=["reason"])
        for reason, count in self._refusals.items():
            refused.add_metric([reason], count)
        yield refused
        mqtt = GaugeMetricFamily("camhub_mqtt_connected", "1 while the hub's MQTT link is up")
        mqtt.add_metric([], 1.0 if self._mqtt_connected() else 0.0)
        yield mqtt
        for name, (text, label, counts) in self._counters().items():
            family = CounterMetricFamily(name, text, labels=[label])
            for value, count in counts.items():
                family.add_metric([value], count)
            yield family


def render(collector: HubCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)
