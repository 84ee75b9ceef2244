"""The edge tier's capacity with 1, 2, 3 edges, behind HAProxy or by redirect, each edge's link capped (#22).

Builds a cluster in the network-namespace test bed (tests/support/netbed.py, root): a broker, boards running
the real firmware as simulated nodes (one camera each), one origin owning every camera, up to three edges,
HAProxy (docs/cluster/haproxy.cfg) in front of the edges and a viewer host, each its own namespace. Each
edge's NIC is capped by ``tbf`` (``--link``, 50 Mbit/s by default): a scaled-down link, so that the link and
not this machine's CPU is the limit. For 1, 2, 3 edges it searches the most viewers (the same number of each
camera) that all keep full frame rate through HAProxy: every viewer at >= 90 % of the camera's fps, no
stream ended in an error, and the worst viewer's frame age p95 under ``--max-age-ms``. Printed per point:

- viewers at full rate, and the scaling against one edge (target: each added edge adds >= 90 % of one
  edge's capacity);
- origin egress: the streams leaving the origin per camera (its own ``camhub_camera_viewers``, sampled
  every second of every run), against the edges serving that camera (the edges' ``camhub_camera_viewers``
  > 0): it must follow the edges, never the viewers;
- CPU per delivered frame (µs, from /proc/<pid>/task/*/schedstat) of the edge hubs, the origin and
  HAProxy at the largest passing run, and of the origin serving the same number of viewers directly
  (no edge, no HAProxy, its link uncapped) for comparison.

Two front ends (``--modes``), measured at each edge count one after the other: ``haproxy`` (viewers open
the stream through HAProxy, which relays it from the edge its hash picks) and ``redirect`` (viewers open
the stream on the origin, which runs ``CAMHUB_STREAM_REDIRECT = edges`` and answers with a 307 to the
edge the same hash picks among the live edges; the viewer tool follows it and streams from the edge
directly; no proxy). Both use the same bound (``--hash-balance-factor``, 150 as shipped). Edges are
started as the counts need them (ascending), so the origin sees exactly that many live edges.

    sudo .venv/bin/python benchmarks/edges.py                                   # ≈ 8 min (both fronts)
    sudo .venv/bin/python benchmarks/edges.py --edges 1,2 --link 30mbit --seconds 6
    sudo .venv/bin/python benchmarks/edges.py --modes redirect --cameras 1 --edges 3 --no-direct   # hot camera
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the bed

from fanout import cpu_seconds  # noqa: E402  (benchmarks/ is this script's directory)

from camhub.hub.cluster.credentials import ClusterKey  # noqa: E402
from camhub.hub.http.auth import Auth  # noqa: E402
from tests.support import netbed as nb  # noqa: E402
from tests.support.cluster import SECRET, cluster_env, owned_once  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

_SAMPLE = re.compile(r'^(camhub_camera_(?:viewers|bytes_out_total|frames_out_total))\{camera="([^"]+)"\} ([0-9.e+-]+)$')


def camera_metrics(bed: nb.NetBed, host: nb.Host, hub_url: str) -> dict[tuple[str, str], float]:
    """``{(metric, camera): value}`` of a hub's per-camera viewers, bytes and frames out (its /metrics)."""
    status, body = bed.http(host, hub_url + "/metrics")
    if status != 200:
        raise OSError(f"{hub_url}/metrics: HTTP {status}")
    return {(m[1], m[2]): float(m[3]) for line in body.decode().splitlines() if (m := _SAMPLE.match(line))}


@dataclass
class Run:
    """One run of the viewer tool: what the viewers saw, what the hubs said, what each process used."""

    per_camera: int
    viewers: int
    full: int  # viewers at >= 90 % of the camera's fps
    errors: int
    fps_min: float
    fps_median: float
    age_p50: float  # ms, the median viewer's p50
    age_p95: float  # ms, the worst viewer's p95
    frames: int  # delivered to viewers
    cpu: dict[str, float]  # process -> CPU seconds during the run
    origin_streams_max: int = 0  # streams leaving the origin for one camera, most at any sample
    origin_streams_total_max: int = 0  # all cameras, most at any sample
    edges_serving_max: int = 0  # edges with viewers of one camera, most at any sample
    egress_follows_edges: bool = True  # at every sample: origin streams of a camera <= edges pulling it
    per_edge_max: list[int] = field(default_factory=list)  # viewers on each edge, most at any sample
    samples: int = 0
    ok: bool = False


@dataclass
class Cluster:
    bed: nb.NetBed
    viewer: nb.Host
    proxy: nb.Host
    origin: Any
    edges: list[Any]
    edge_hosts: list[nb.Host]
    cameras: list[str]
    fps: int
    lb: nb.HAProxy | None = None
    config: Path = nb.HAPROXY_CONFIG
    samples: list[dict] = field(default_factory=list)

    def front(self, count: int) -> nb.HAProxy:
        """HAProxy in front of the first ``count`` edges (a new one replaces the last)."""
        if self.lb is not None:
            self.lb.stop()
        self.lb = self.bed.haproxy(self.proxy, self.edges[:count], config=self.config)
        return self.lb

    def sample(self, count: int, stop: threading.Event, out: list[dict]) -> None:
        """Every second until ``stop``: the origin's streams per camera and the edges with viewers of it."""
        while not stop.wait(1.0):
            try:
                origin = camera_metrics(self.bed, self.viewer, self.origin.url)
                edges = [camera_metrics(self.bed, self.viewer, e.url) for e in self.edges[:count]]
            except OSError:
                continue
            out.append({"cameras": {c: (int(origin.get(("camhub_camera_viewers", c), 0)),
                                        sum(1 for e in edges if e.get(("camhub_camera_viewers", c), 0) > 0))
                                    for c in self.cameras},
                        "edges": [int(sum(e.get(("camhub_camera_viewers", c), 0) for c in self.cameras))
                                  for e in edges]})

    def run(self, url_of: Any, per_camera: int, seconds: float, procs: dict[str, int], count: int,
            max_age_ms: float) -> Run:
        urls = [url_of(c) for c in self.cameras]
        before = {name: cpu_seconds(pid) for name, pid in procs.items()}
        stop = threading.Event()
        samples: list[dict] = []
        sampler = threading.Thread(target=self.sample, args=(count, stop, samples), daemon=True)
        sampler.start()
        started = time.monotonic()
        report = self.bed.watch(self.viewer, urls, viewers=per_camera, seconds=seconds)
        took = time.monotonic() - started
        stop.set()
        sampler.join(10)
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in procs.items()}
        cpu["viewer tool"] = report["cpu_s"]
        cpu["_wall"] = took
        rows = report["viewers"]
        fps = sorted(v["fps"] for v in rows)
        run = Run(per_camera=per_camera, viewers=len(rows),
                  full=sum(1 for v in rows if v["fps"] >= 0.9 * self.fps),
                  errors=sum(sum(v["errors"].values()) for v in rows),
                  fps_min=fps[0], fps_median=statistics.median(fps),
                  age_p50=statistics.median(v["age_ms"]["p50"] or 0 for v in rows),
                  age_p95=max(v["age_ms"]["p95"] or 0 for v in rows),
                  frames=sum(v["frames"] for v in rows), cpu=cpu, samples=len(samples))
        for taken in samples:
            sample = taken["cameras"]
            run.per_edge_max = [max(a, b) for a, b in zip(run.per_edge_max or [0] * len(taken["edges"]),
                                                          taken["edges"], strict=True)]
            run.origin_streams_max = max([run.origin_streams_max, *(s for s, _ in sample.values())])
            run.edges_serving_max = max([run.edges_serving_max, *(e for _, e in sample.values())])
            run.origin_streams_total_max = max(run.origin_streams_total_max, sum(s for s, _ in sample.values()))
            # an edge keeps a camera warm a moment after its last viewer: streams may exceed the edges with
            # viewers then, never the edges in the tier
            run.egress_follows_edges &= all(s <= len(self.edges) for s, _ in sample.values())
        run.ok = run.full == run.viewers and run.errors == 0 and run.age_p95 <= max_age_ms
        return run


def row(mode: str, edges: int, run: Run, one_edge: int | None) -> str:
    scaling = f"{run.viewers / one_edge:.2f}×" if one_edge else "-"
    return (f"| {mode} | {edges} | {run.viewers} | {scaling} | {run.fps_min:.1f} / {run.fps_median:.1f} | "
            f"{run.age_p50:.0f} / {run.age_p95:.0f} | {run.origin_streams_max} | {run.origin_streams_total_max} | "
            f"{run.edges_serving_max} | {'yes' if run.egress_follows_edges else 'NO'} | "
            f"{' / '.join(str(n) for n in run.per_edge_max)} |")


def cpu_row(setup: str, run: Run) -> str:
    """A CPU table row: per process, µs per delivered frame and (cores) over the run."""
    wall = run.cpu["_wall"]
    edges = sum(v for k, v in run.cpu.items() if k.startswith("edge"))

    def cell(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds / max(1, run.frames) * 1e6:.0f} ({seconds / wall:.2f})"
    return (f"| {setup} | {run.viewers} | {run.frames / wall:.0f} | {cell(edges if edges else None)} | "
            f"{cell(run.cpu['origin'])} | {cell(run.cpu.get('haproxy'))} | {cell(run.cpu['viewer tool'])} |")


def search(cl: Cluster, count: int, guess: int, args: argparse.Namespace,
           procs: dict[str, int], url_of: Any, mode: str) -> tuple[Run | None, list[Run]]:
    """The most viewers per camera that pass, from ``guess``: up by ~15 % until a run fails, down until one
    passes, then bisection; at most ``args.runs`` runs."""
    runs: list[Run] = []
    best: Run | None = None
    low, high = 0, math.inf  # passes at low, fails at high (per camera)
    n = max(1, guess)
    while len(runs) < args.runs:
        run = cl.run(url_of, n, args.seconds, procs, count, args.max_age_ms)
        runs.append(run)
        print(f"  {mode}, {count} edge(s), {run.viewers} viewers: {'pass' if run.ok else 'fail'} "
              f"(full rate {run.full}, "
              f"errors {run.errors}, fps min {run.fps_min:.1f}, age p95 {run.age_p95:.0f} ms, "
              f"origin streams max/camera {run.origin_streams_max}, viewers on each edge "
              f"{' / '.join(str(n) for n in run.per_edge_max)})", flush=True)
        if run.ok:
            low, best = n, run
        else:
            high = n
        if high - low <= 1:
            break
        n = max(n + 1, int(n * 1.15)) if high == math.inf else (low + high) // 2 if low else max(1, int(n * 0.8))
        if n >= high or (n <= low and low):
            break
        time.sleep(args.settle_s)
    return best, runs


def redirect_cost(cl: Cluster, count: int = 2000) -> tuple[float, float]:
    """The origin's CPU per redirect it answers (µs, its CPU while idle for as long taken off) and redirects
    a second, over ``count`` requests from the viewer host, a new connection each (as a viewer's)."""
    where = urlsplit(cl.origin.url)
    idle = cpu_seconds(cl.origin.pid)
    time.sleep(2.0)
    idle = (cpu_seconds(cl.origin.pid) - idle) / 2.0
    before, started = cpu_seconds(cl.origin.pid), time.monotonic()
    with cl.bed.inside(cl.viewer):
        for i in range(count):
            conn = http.client.HTTPConnection(where.hostname or "", where.port or 80, timeout=5)
            conn.request("GET", f"/cameras/{cl.cameras[i % len(cl.cameras)]}/stream")
            answer = conn.getresponse()
            answer.read()
            conn.close()
            if answer.status != 307:
                raise OSError(f"expected a redirect, got HTTP {answer.status}")
    took = time.monotonic() - started
    used = cpu_seconds(cl.origin.pid) - before - idle * took
    return used / count * 1e6, count / took


def failover(cl: Cluster, count: int, per_camera: int, args: argparse.Namespace, mode: str) -> int:
    """``per_camera`` viewers of each camera through HAProxy in front of ``count`` edges (or, ``mode``
    redirect, redirected by the origin); the edge serving the most is killed (SIGKILL, its machine alive:
    HAProxy sees refused connections, the broker its will). Printed: how long its viewers went without a
    frame (they reconnect 0.3 s after a cut, as the scenario tests' players, to the URL they opened first),
    and the longest gap and lowest fps of everyone else."""
    if mode == "haproxy":
        cl.front(count)
        urls = [cl.proxy.url(f"/cameras/{c}/stream") for c in cl.cameras]
    else:
        urls = [f"{cl.origin.url}/cameras/{c}/stream" for c in cl.cameras]
    tool = cl.bed.run(cl.viewer, nb.viewer_tool(urls, per_camera, 0, "--retry-s", "0.3", "--stall-s", "8"),
                      name="viewers")
    total = per_camera * len(cl.cameras)
    loads = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        loads = {i: sum(v for (m, _), v in camera_metrics(cl.bed, cl.viewer, e.url).items()
                        if m == "camhub_camera_viewers") for i, e in enumerate(cl.edges[:count])}
        if sum(loads.values()) >= total:
            break
        time.sleep(0.5)
    time.sleep(args.seconds)
    victim = max(loads, key=lambda i: loads[i])
    cl.bed.crash(cl.edge_hosts[victim])
    time.sleep(max(10.0, args.seconds))
    tool.stop()
    lines = [ln for ln in tool.output().splitlines() if ln.startswith('{"event": "summary"')]
    rows = json.loads(lines[-1])["viewers"]
    # the victim's viewers: a gap well past a frame interval (around the kill); the others: none
    hit = [v for v in rows if v["max_gap_s"] > 1.0]
    rest = [v for v in rows if v["max_gap_s"] <= 1.0]
    print(f"\nfailover under load ({mode}): {count} edges, {total} viewers ({per_camera} a camera), "
          f"edge{victim + 1} killed (kill -9) while serving {loads[victim]:.0f} of them")
    print("| viewers | count | longest without a frame, s (max / median) | fps over the run, min | errors |")
    print("|---|---:|---|---:|---:|")
    for name, group in (("cut by the kill", hit), ("the others", rest)):
        if group:
            gaps = [v["max_gap_s"] for v in group]
            print(f"| {name} | {len(group)} | {max(gaps):.2f} / {statistics.median(gaps):.2f} | "
                  f"{min(v['fps'] for v in group):.1f} | {sum(sum(v['errors'].values()) for v in group)} |")
    return victim


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--edges", default="1,2,3", help="edge counts, comma-separated (at most 3)")
    parser.add_argument("--modes", default="haproxy,redirect",
                        help="front ends, comma-separated: haproxy (relays), redirect (the origin's 307s)")
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--frame-size", default="QVGA")
    parser.add_argument("--link", default="50mbit", help="each edge's link (tc rate)")
    parser.add_argument("--seconds", type=float, default=8.0, help="each run's length")
    parser.add_argument("--runs", type=int, default=6, help="most runs per edge count")
    parser.add_argument("--max-age-ms", type=float, default=1000.0, help="worst viewer's frame age p95 bound")
    parser.add_argument("--hash-balance-factor", type=int, default=0,
                        help="the bound, percent: HAProxy's hash-balance-factor and the origin's "
                             "CAMHUB_STREAM_REDIRECT_BALANCE (0: as docs/cluster/haproxy.cfg, 150)")
    parser.add_argument("--no-direct", action="store_true", help="skip the one-hub-serving-directly run")
    parser.add_argument("--settle-s", type=float, default=1.0,
                        help="pause between runs (the edges' viewer counts go out at most every 2 s)")
    parser.add_argument("--failover", type=int, default=0, metavar="PER_CAMERA",
                        help="instead of the search: this many viewers of each camera through the largest "
                             "--edges count, then the busiest edge killed")
    args = parser.parse_args()
    if reason := nb.unavailable():
        print(reason, file=sys.stderr)
        return 2
    counts = sorted({int(n) for n in args.edges.split(",")})
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    most = max(counts)
    if most > 3 or min(counts) < 1:
        parser.error("--edges: 1 to 3")
    if not modes or set(modes) - {"haproxy", "redirect"}:
        parser.error("--modes: haproxy, redirect")
    shipped = int(re.search(r"(?m)^\s*hash-balance-factor (\d+)", nb.HAPROXY_CONFIG.read_text())[1])  # type: ignore[index]
    factor = args.hash_balance_factor or shipped
    with nb.NetBed(show_logs=False) as bed:
        broker_host, proxy, viewer, origin_host = bed.hosts("broker", "proxy", "viewer", "origin")
        broker = bed.mosquitto(broker_host)
        cameras = [f"cam{i}" for i in range(1, args.cameras + 1)]
        nodes = [bed.node(bed.host(f"board{i}"), c, broker, fps=args.fps, frame_size=args.frame_size, wait=False)
                 for i, c in enumerate(cameras, 1)]
        limits = {"CAMHUB_MAX_VIEWERS": "5000", "CAMHUB_MAX_VIEWERS_PER_CAMERA": "5000", "CAMHUB_KEEP_WARM_S": "2",
                  "CAMHUB_TRUSTED_PROXIES": proxy.address}
        # the origin redirects viewers (redirect mode); HAProxy's viewers reach the edges, which never redirect
        origin = bed.hub(origin_host, broker, proxies=[proxy], wait=False, env=cluster_env(
            "origin", "o1", **limits, CAMHUB_STREAM_REDIRECT="edges", CAMHUB_STREAM_REDIRECT_BALANCE=str(factor)))
        edge_hosts = [bed.host(f"edge{i}") for i in range(1, most + 1)]
        edges: list[Any] = []

        def edge(i: int) -> Any:
            return bed.hub(edge_hosts[i], broker, proxies=[proxy], env=cluster_env("edge", f"e{i + 1}", **limits))

        def start_edges(count: int) -> None:
            """Edges up to ``count`` running, and the origin seeing them live."""
            while len(edges) < count:
                edges.append(edge(len(edges)))
            def live() -> bool:
                members = bed.get_json(viewer, origin.url + "/api/hub")["cluster"]["members"]
                return sum(1 for m in members if m["role"] == "edge" and m["online"]) == count
            wait_until(live, 30, f"the origin seeing {count} edge(s) live")

        for proc in (*nodes, origin):
            proc.wait_ready()
        start_edges(1)
        for host in edge_hosts:
            bed.limit(host, args.link)
        config = nb.HAPROXY_CONFIG
        if args.hash_balance_factor:
            config = bed.workdir / "haproxy-factor.cfg"  # type: ignore[operator]
            config.write_text(re.sub(r"(?m)^(\s*hash-balance-factor )\d+", rf"\g<1>{args.hash_balance_factor}",
                                     nb.HAPROXY_CONFIG.read_text()))
        cl = Cluster(bed, viewer, proxy, origin, edges, edge_hosts, cameras, args.fps, config=config)
        wait_until(lambda: owned_once(lambda u: bed.get_json(viewer, u), [origin.url], cameras), 30,
                   "every camera owned by the origin")
        wait_until(lambda: all(bed.get_json(viewer, f"{origin.url}/api/cameras/{c}")["state"] == "streaming"
                               for c in cameras), 30, "every camera streaming")

        # The bytes a viewer needs: one viewer of each camera through one edge, the edge's bytes per frame.
        lb = cl.front(1)
        before = camera_metrics(bed, viewer, edges[0].url)
        bed.watch(viewer, [proxy.url(f"/cameras/{c}/stream") for c in cameras], viewers=1, seconds=3)
        after = camera_metrics(bed, viewer, edges[0].url)
        def delta(metric: str) -> float:
            return sum(after.get((metric, c), 0) - before.get((metric, c), 0) for c in cameras)
        sent, frames = delta("camhub_camera_bytes_out_total"), delta("camhub_camera_frames_out_total")
        frame_bytes = sent / max(1.0, frames)
        viewer_bits = frame_bytes * 8 * args.fps
        per_edge = nb._tc_rate(args.link) / viewer_bits
        print(f"{len(cameras)} cameras, {args.frame_size} at {args.fps} fps "
              f"({frame_bytes / 1000:.1f} KB a frame as sent: "
              f"{viewer_bits / 1e6:.2f} Mbit/s a viewer); each edge's link {args.link} (tbf): modelled "
              f"{per_edge:.0f} viewers an edge; {args.seconds:g} s runs; pass = every viewer >= 90 % of "
              f"{args.fps} fps, no errors, worst age p95 <= {args.max_age_ms:g} ms; bound {factor} %", flush=True)

        if args.failover:
            start_edges(most)
            for mode in modes:
                victim = failover(cl, most, args.failover, args, mode)
                edges[victim] = edge(victim)  # back, for the next mode
                start_edges(most)
                time.sleep(3.0)
            return 0
        results: dict[tuple[str, int], Run] = {}
        redirects = 0.0
        for count in counts:
            start_edges(count)
            edge_pids = {f"edge{i}": e.pid for i, e in enumerate(edges[:count], 1)}
            for mode in modes:
                if mode == "haproxy":
                    lb = cl.front(count)
                    procs, url_of = {"origin": origin.pid, "haproxy": lb.pid, **edge_pids}, \
                        lambda c: proxy.url(f"/cameras/{c}/stream")
                else:
                    procs, url_of = {"origin": origin.pid, **edge_pids}, lambda c: f"{origin.url}/cameras/{c}/stream"
                earlier = results.get(("haproxy", count))
                guess = earlier.per_camera if earlier else int(count * per_edge * 0.85 / len(cameras))
                best, _ = search(cl, count, guess, args, procs, url_of, mode)
                if best is not None:
                    results[(mode, count)] = best
        if "redirect" in modes:
            status, body = bed.http(viewer, origin.url + "/metrics")
            redirects = sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                            if line.startswith("camhub_stream_redirects_total{")) if status == 200 else 0.0
        direct: Run | None = None
        one_edge = next((run for (_, count), run in results.items() if count == 1), None)
        if not args.no_direct and one_edge is not None:
            # served by the origin itself: a redirect's (expiring) token says "do not redirect this one"
            token = Auth(False, "admin", None, ClusterKey(SECRET, "o1").view_token_key)
            direct = cl.run(lambda c: f"{origin.url}/cameras/{c}/stream?token={token.expiring_token(c)}",
                            one_edge.per_camera, args.seconds, {"origin": origin.pid}, 0, args.max_age_ms)

        print()
        print("| front | edges | viewers at full rate | vs one edge | fps min / median | age ms p50 / worst p95 | "
              "origin streams, most for a camera | origin streams, all cameras | edges serving a camera, most | "
              "origin egress <= edges | viewers on each edge, most |")
        print("|---|---:|---:|---|---|---|---:|---:|---:|---|---|")
        for mode in modes:
            one = results[(mode, 1)].viewers if (mode, 1) in results else None
            for (m, count), run in results.items():
                if m == mode:
                    print(row(mode, count, run, one))
        print()
        print("CPU per delivered frame, µs (and cores) (the largest passing run of each point; the direct run: "
              "the origin serving the 1-edge viewer count itself, link uncapped). In redirect mode the origin "
              "is also the director (a 307 per viewer connection, none per frame)")
        print("| setup | viewers | frames/s delivered | edges (sum) | origin | HAProxy | viewer tool |")
        print("|---|---:|---:|---|---|---|---|")
        for (mode, count), run in results.items():
            print(cpu_row(f"{count} edge(s) + HAProxy" if mode == "haproxy" else
                          f"{count} edge(s), the origin redirects", run))
        if direct is not None:
            print(cpu_row(f"one hub directly ({'pass' if direct.ok else 'FAIL'})", direct))
        if "redirect" in modes:
            print(f"\nthe origin's redirects over every redirect run: {redirects:.0f} (camhub_stream_redirects_total)")
            cost, rate = redirect_cost(cl)
            print(f"a redirect costs the origin {cost:.0f} µs of CPU (2,000 in a row, a new connection each, "
                  f"{rate:.0f}/s from one client)")
        for mode in modes:
            one = results[(mode, 1)].viewers if (mode, 1) in results else None
            for (m, count), run in results.items():
                if one and m == mode and count > 1:
                    added = (run.viewers - one) / (count - 1) / one
                    print(f"{mode}, {count} edges: each added edge adds {added * 100:.0f} % of one edge's capacity "
                          f"(target >= 90 %): {'PASS' if added >= 0.9 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
