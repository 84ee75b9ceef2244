"""A test bed of separate machines on this one: Linux network namespaces joined by a bridge.

What it builds (root only): one namespace holding a Linux bridge (the switch), and one namespace per host
(a broker, board simulators, hubs, HAProxy, viewers), each with ``lo`` up and one veth ``eth0`` whose
other end is a port of the bridge. Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking; never
routed anywhere), no namespace has a default route, and both ends of every veth are created straight
inside namespaces: nothing is added to the root namespace, and nothing in the bed can reach a real
network. IPv6 is off in the bed's namespaces (no link-local addresses, no router solicitations), and
``bridge-nf-call-iptables`` is 0 in the switch, so bridged frames skip iptables.

    with NetBed() as bed:
        broker_host, board, hub_host, proxy, viewer = bed.hosts("broker", "board1", "hub1", "proxy", "viewer")
        broker = bed.mosquitto(broker_host)
        node = bed.node(board, "cam1", broker)            # the real firmware: camhub node --sim
        hub = bed.hub(hub_host, broker, proxies=[proxy])  # camhub hub, answering the proxy's Host
        lb = bed.haproxy(proxy, [hub])                    # docs/cluster/haproxy.cfg, these servers
        report = bed.watch(viewer, [proxy.url("/cameras/cam1/stream")], viewers=50, seconds=10)
        bed.link_down(hub_host)                           # a silent machine death
In pytest: the ``netbed`` fixture (tests/conftest.py) and the ``cluster`` marker; ``make test-cluster``
runs those tests. Without root or ``ip netns`` they are skipped, saying why (``unavailable()``).

Each service runs with ``ip netns exec`` (``run()``); the test process itself reaches into a host with
``inside(host)`` (``netns.entered``: sockets made in the block live in that host). Faults: ``crash``
(SIGKILL everything in a host: ``ip netns pids``), ``link_down``/``link_up`` (silent death: peers see
only silence), ``freeze``/``thaw`` (SIGSTOP/SIGCONT), ``limit`` (a NIC limited by ``tbf``; this kernel
has no ``netem``) and ``drop``/``partition``/``heal`` (nftables rules in the switch: frames between
two hosts vanish, all of them or a random share).

Names and cleanup. A bed's namespaces are ``chb-<pid>-<n>-<host>`` (and ``chb-<pid>-<n>-switch``):
the test process's pid, then a count within it. ``close()`` (the context manager's exit, the fixture's
finalizer, and an atexit/SIGTERM/SIGHUP safety net) stops the bed's processes, SIGKILLs whatever is
left in its namespaces and deletes them; a process killed before it could (SIGKILL, a pytest-timeout
thread exit) leaves them, and the next bed to start removes every ``chb-<pid>-…`` namespace whose pid
is no longer alive, after killing the processes in it. By hand, as root::

    ip netns list | grep '^chb-'                        # what is there
    for ns in $(ip netns list | awk '/^chb-/ {print $1}'); do
        ip netns pids "$ns" | xargs -r kill -9; ip netns del "$ns"
    done

(that removes live beds of other runs too: check the pid in the name first). Keep the load low: the
machine is shared; QQVGA or QVGA at a few frames per second is plenty for failover tests.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import functools
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.homeassistant import HomeAssistant
from tests.support.netns import NETNS_DIR, entered
from tests.support.procs import ROOT, HubProcess, Mosquitto, Process, SimNode, in_netns, wait_for_port

NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
HAPROXY_CONFIG = ROOT / "docs" / "cluster" / "haproxy.cfg"
VIEWER_TOOL = ROOT / "benchmarks" / "viewers.py"
FAMILY = "chb"  # camhub bed: every bed's namespace names start with "chb-<pid>-"
_BED_NAME = re.compile(rf"^{FAMILY}-(\d+)-\d+-")
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
SWITCH = "switch"
MQTT_PORT, HUB_PORT, NODE_PORT, PROXY_PORT = 1883, 8000, 8080, 80

_runs = itertools.count(1)


class BedError(RuntimeError):
    """The bed could not be built or torn down completely (the message says what is left)."""


# -- plumbing ------------------------------------------------------------------------------------------


def _run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, input=input, timeout=30)
    if check and done.returncode != 0:
        raise BedError(f"{' '.join(args)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done


def _in(netns: str, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return _run(*in_netns(netns), *args, check=check, input=input)


def pids_in(netns: str) -> list[int]:
    """The processes inside namespace ``netns`` (``ip netns pids``); none when it is gone."""
    done = _run("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def namespaces() -> list[str]:
    """Every named network namespace on this machine (``ip netns list``)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    return True


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        if pid != os.getpid():  # never this process (its threads may sit in a namespace)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def processes_in(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes`` (also one already deleted by name)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.append(int(entry))
    return found


def remove_namespaces(names: Iterable[str], timeout: float = 10.0) -> list[str]:
    """SIGKILL every process in ``names``, wait for them to go, delete the namespaces; what failed."""
    names = list(names)
    deadline = time.monotonic() + timeout
    left: dict[str, list[int]] = {}
    while True:
        left = {name: pids for name in names if (pids := pids_in(name))}
        if not left or time.monotonic() > deadline:
            break
        for pids in left.values():
            _signal(pids, signal.SIGKILL)
        time.sleep(0.05)
    problems = [f"{name}: processes {pids} would not die" for name, pids in left.items()]
    for name in names:
        done = _run("ip", "netns", "del", name, check=False)
        if done.returncode != 0 and name in namespaces():
            problems.append(f"{name}: ip netns del: {done.stderr.strip()}")
    return problems


def remove_leftovers() -> list[str]:
    """Remove the namespaces of beds whose process is gone (a crashed run); the names removed."""
    stale = [n for n in namespaces() if (m := _BED_NAME.match(n)) and not _alive(int(m[1]))]
    problems = remove_namespaces(stale)
    if problems:
        raise BedError("could not remove a crashed run's namespaces: " + "; ".join(problems))
    return stale


@functools.cache
def unavailable() -> str | None:
    """Why the bed cannot run here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "the network-namespace test bed needs root (ip netns add, veth, bridge): run `sudo make test-cluster`"
    if shutil.which("ip") is None:
        return "the network-namespace test bed needs iproute2's `ip` (apt-get install iproute2)"
    probe = f"{FAMILY}-{os.getpid()}-0-probe"
    done = _run("ip", "netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns` is unavailable here ({done.stderr.strip() or 'exit ' + str(done.returncode)})"
    _run("ip", "netns", "del", probe, check=False)
    return None


# -- the safety net: beds still open when the process ends are torn down -----------------------------

_open_beds: set[NetBed] = set()  # the only module state: what atexit and the signal handler must close
_net_lock = threading.Lock()
_net_installed = False


def _close_all() -> None:
    for bed in list(_open_beds):
        try:
            bed.close()
        except Exception as exc:  # keep closing the others
            print(f"netbed: {exc}", file=sys.stderr)


def _on_signal(signum: int, frame: object) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_safety_net() -> None:
    global _net_installed
    with _net_lock:
        if _net_installed:
            return
        _net_installed = True
        atexit.register(_close_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) == signal.SIG_DFL:  # never replace someone else's handler
                    signal.signal(sig, _on_signal)


# -- the bed ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """One machine of the bed: its namespace, its address and its port on the switch."""

    name: str
    netns: str
    address: str
    port: str  # the switch's interface towards this host

    def url(self, path: str = "/", port: int = PROXY_PORT) -> str:
        return f"http://{self.address}{'' if port == 80 else f':{port}'}{path}"


class HAProxy(Process):
    """Debian's HAProxy in a host, running ``config`` (docs/cluster/haproxy.cfg) with ``servers``
    ([(name, address, port)]) in place of the file's own in ``backend hubs``, and a stats socket."""

    BACKEND = "hubs"

    def __init__(self, host: Host, servers: list[tuple[str, str, int]], workdir: Path,
                 config: Path = HAPROXY_CONFIG) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            raise BedError("HAProxy is not installed (apt-get install haproxy)")
        self.host = host
        self.socket_path = workdir / f"haproxy-{host.name}.sock"
        self.config = workdir / f"haproxy-{host.name}.cfg"
        self.config.write_text(with_servers(config.read_text(), self.BACKEND, servers))
        extra = workdir / f"haproxy-{host.name}-bed.cfg"
        extra.write_text(f"global\n    stats socket {self.socket_path} mode 600 level admin\n")
        files = ["-f", str(self.config), "-f", str(extra)]
        checked = _run(binary, "-c", *files, check=False)
        if checked.returncode != 0:
            raise BedError(f"haproxy -c {self.config}: {checked.stdout}{checked.stderr}")
        super().__init__([binary, "-db", *files], name=f"haproxy-{host.name}", netns=host.netns)
        self.url = host.url()

    def command(self, line: str) -> str:
        """One command on HAProxy's stats socket (e.g. ``show stat``); its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend's servers: name -> row (``status`` UP/DOWN/…, ``check_status``…)."""
        text = self.command("show stat").lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(text.splitlines())
                if row.get("pxname") == self.BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_ready(self, timeout: float = 20.0) -> HAProxy:
        """Listening, and every server's health check has passed."""
        wait_for_port(PROXY_PORT, timeout=timeout, proc=self.proc, host=self.host.address, netns=self.netns)
        deadline = time.monotonic() + timeout
        rows: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                rows = self.servers()
                if rows and all(r["status"] == "UP" and r["check_status"].startswith("L7OK") for r in rows.values()):
                    return self
            time.sleep(0.1)
        states = {name: (r["status"], r["check_status"]) for name, r in rows.items()}
        raise TimeoutError(f"HAProxy's servers not all UP after {timeout}s: {states}")


def with_servers(config: str, backend: str, servers: list[tuple[str, str, int]]) -> str:
    """``config`` with the ``server`` lines of ``backend`` replaced by ``servers`` ([(name, address, port)])."""
    new = [f"    server {name} {address}:{port} check" for name, address, port in servers]
    out: list[str] = []
    section: str | None = None
    found = False
    for line in config.splitlines():
        words = line.split()
        if words and not line[0].isspace() and not words[0].startswith("#"):  # a section's first line
            if section == backend:
                out += new
            section = words[1] if words[0] in ("backend", "listen") and len(words) > 1 else None
            found = found or section == backend
        if section == backend and words[:1] == ["server"]:
            continue
        out.append(line)
    if section == backend:
        out += new
    if not found:
        raise BedError(f"no backend {backend!r} in the HAProxy config")
    return "\n".join(out) + "\n"


class NetBed:
    """Hosts in network namespaces on one bridge; see the module's docstring. ``close()`` is idempotent.
    ``show_logs``: at ``close()``, print the end of each process's output (pytest shows it for a failed test)."""

    def __init__(self, show_logs: bool = True) -> None:
        self.prefix = f"{FAMILY}-{os.getpid()}-{next(_runs)}-"
        self.switch = self.prefix + SWITCH
        self.show_logs = show_logs
        self._hosts: dict[str, Host] = {}
        self.procs: list[Process] = []
        self.brokers: list[Mosquitto] = []
        self.made: list[str] = []  # every namespace made, in order
        self.inodes: set[int] = set()  # and their inodes, to check that no process is left in one
        self.workdir: Path | None = None
        self.started = False
        self.closed = False
        self._ports: dict[str, int] = {}  # next HTTP port per host for simulated nodes

    # -- life ---------------------------------------------------------------------------------------

    def start(self) -> NetBed:
        """The switch, after removing what crashed runs left; torn down again if any step fails."""
        reason = unavailable()
        if reason:
            raise BedError(reason)
        remove_leftovers()
        _install_safety_net()
        _open_beds.add(self)
        self.started = True
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix))
            self._namespace(self.switch)
            _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.switch, "link", "set", "br0", "up")
            _in(self.switch, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
            _in(self.switch, "nft", "-f", "-", input=(
                "table bridge netbed {\n"
                "  chain forward { type filter hook forward priority 0; policy accept; }\n"
                "}\n"))
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> NetBed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process, kill what is left in the bed's namespaces, delete them; raises BedError
        (after doing all it can) when something is left."""
        if self.closed or not self.started:
            self.closed = True
            return
        self.closed = True
        try:
            for proc in self.procs:  # politely first (a frozen process needs SIGCONT to see SIGTERM)
                if proc.alive():
                    _signal([proc.pid], signal.SIGCONT)
                    _signal([proc.pid], signal.SIGTERM)
            deadline = time.monotonic() + 3
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.proc.wait(max(0.01, deadline - time.monotonic()))
            problems = remove_namespaces(self.made)
            for proc in self.procs:
                proc.proc.kill()  # a no-op for those already gone
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.proc.wait(5)
                self._show_log(proc)
            for broker in self.brokers:
                broker.stop()
            if left := processes_in(self.inodes):
                problems.append(f"processes {left} still in the bed's namespaces")
            if problems:
                raise BedError("netbed teardown: " + "; ".join(problems))
        finally:
            _open_beds.discard(self)
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _show_log(self, proc: Process) -> None:
        """The end of a process's output on stdout (pytest shows it when a test fails); the file goes."""
        if self.show_logs:
            lines = proc.output().splitlines()[-25:]
            print(f"---- {proc.name} (exit {proc.proc.returncode}), last lines of its output:", *lines, sep="\n")
        with contextlib.suppress(OSError):
            os.unlink(proc.log.name)

    def _namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.made.append(name)
        self.inodes.add(os.stat(os.path.join(NETNS_DIR, name)).st_ino)
        # IPv4 only: no IPv6 link-local addresses or router solicitations in the bed.
        _in(name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")

    # -- hosts ----------------------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        """A new machine on the switch, at the next address of 198.18.0.0/15."""
        if not self.started or self.closed:
            raise BedError("start the bed first (with NetBed() as bed: …)")
        if not _HOST_NAME.match(name) or name == SWITCH or name in self._hosts:
            raise ValueError(f"bad or duplicate host name {name!r} (a-z, 0-9, '-'; not {SWITCH!r})")
        index = len(self._hosts) + 1
        host = Host(name, self.prefix + name, str(NETWORK[index]), f"port{index}")
        self._hosts[name] = host
        self._namespace(host.netns)
        _run("ip", "link", "add", "eth0", "netns", host.netns, "type", "veth",
             "peer", "name", host.port, "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/{NETWORK.prefixlen}", "dev", "eth0")
        _run("ip", "-n", host.netns, "link", "set", "lo", "up")
        _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        return host

    def hosts(self, *names: str) -> list[Host]:
        """Several new machines (``host()`` each), in order."""
        return [self.host(n) for n in names]

    @contextlib.contextmanager
    def inside(self, host: Host) -> Iterator[None]:
        """This thread inside ``host`` for the block: sockets made here belong to that machine."""
        with entered(host.netns):
            yield

    def http(self, host: Host, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET ``url`` from ``host``: (status, body); an HTTP error status is returned, not raised."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with self.inside(host):
            try:
                with opener.open(url, timeout=timeout) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

    def get_json(self, host: Host, url: str) -> Any:
        status, body = self.http(host, url)
        if status != 200:
            raise OSError(f"GET {url}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    # -- processes and services ---------------------------------------------------------------------------

    def run(self, host: Host, args: list[str], env: dict[str, str] | None = None, name: str | None = None) -> Process:
        """``args`` running inside ``host`` (``ip netns exec``), stopped at ``close()``."""
        return self._track(Process(args, env=env, name=name or host.name, netns=host.netns))

    def _track(self, proc: Any) -> Any:
        self.procs.append(proc)
        return proc

    def mosquitto(self, host: Host, port: int = MQTT_PORT, **options: Any) -> Mosquitto:
        """Debian's mosquitto listening on ``host``'s address (``options``: users, acl, log)."""
        broker = Mosquitto(port=port, host=host.address, netns=host.netns, **options)
        self.brokers.append(broker)
        return broker

    def node(self, host: Host, node_id: str, broker: Mosquitto, fps: int = 3, frame_size: str = "QQVGA",
             env: dict[str, str] | None = None, runtime: str = "cpython", wait: bool = True) -> SimNode:
        """The real firmware (``camhub node --sim``) on a board host, announcing ``host``'s address;
        several on one host get ports 8080, 8081, …"""
        port = self._ports.get(host.name, NODE_PORT)
        self._ports[host.name] = port + 1
        node = self._track(SimNode(node_id, broker.port, fps=fps, frame_size=frame_size, http_port=port, env=env,
                                   runtime=runtime, host=host.address, mqtt_host=broker.host, netns=host.netns))
        return node.wait_ready() if wait else node

    def hub(self, host: Host, broker: Mosquitto, proxies: Iterable[Host] = (), port: int = HUB_PORT,
            env: dict[str, str] | None = None, wait: bool = True) -> HubProcess:
        """The real hub (``camhub hub``) on ``host``'s address. It pulls sources in the bed
        (``CAMHUB_ALLOWED_SOURCES``) and answers the Host names viewers use to reach it through
        ``proxies``: their addresses (``CAMHUB_ALLOWED_HOSTS``; HAProxy passes ``Host`` on as it is)."""
        assert self.workdir is not None
        env = {"CAMHUB_ALLOWED_SOURCES": str(NETWORK), "CAMHUB_ALLOWED_HOSTS": " ".join(p.address for p in proxies),
               **(env or {})}
        hub = self._track(HubProcess(broker.port, self.workdir / f"state-{host.name}", port=port, env=env,
                                     host=host.address, mqtt_host=broker.host, netns=host.netns))
        hub.name = f"hub-{host.name}"
        return hub.wait_ready() if wait else hub

    def haproxy(self, host: Host, hubs: Iterable[HubProcess], config: Path = HAPROXY_CONFIG,
                wait: bool = True) -> HAProxy:
        """HAProxy on ``host`` (port 80) in front of ``hubs``, each server named after its host."""
        assert self.workdir is not None
        by_address = {h.address: h.name for h in self._hosts.values()}
        servers = []
        for hub in hubs:
            where = urlsplit(hub.url)
            servers.append((by_address[where.hostname or ""], where.hostname or "", where.port or 80))
        proxy = self._track(HAProxy(host, servers, self.workdir, config))
        return proxy.wait_ready() if wait else proxy

    def homeassistant(self, host: Host, broker: Mosquitto, timeout: float = 120.0) -> HomeAssistant:
        """A real Home Assistant core on ``host`` (tests/ha/install.sh; the test skips without it), its MQTT
        integration on ``broker``; ready. Its API is on ``host``'s loopback: talk to it ``inside(host)``."""
        assert self.workdir is not None
        ha = self._track(HomeAssistant(self.workdir / f"ha-{host.name}", broker.port, mqtt_host=broker.host,
                                       netns=host.netns))
        with self.inside(host):
            return ha.wait_ready(timeout)

    def watch(self, host: Host, urls: list[str], viewers: int = 1, seconds: float = 5.0,
              extra: Iterable[str] = ()) -> dict[str, Any]:
        """Run the viewer tool (benchmarks/viewers.py) on ``host``: ``viewers`` per URL for ``seconds``;
        its summary (per viewer: frames, fps, frame age from X-Timestamp, gaps, reconnects, errors)."""
        args = [*in_netns(host.netns), *viewer_tool(urls, viewers, seconds, *extra)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise BedError(f"viewer tool exit {done.returncode}: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # -- faults ---------------------------------------------------------------------------------------

    def pids(self, host: Host) -> list[int]:
        return pids_in(host.netns)

    def crash(self, host: Host) -> None:
        """Every process of ``host`` killed at once (SIGKILL): its sockets close, peers notice."""
        _signal(self.pids(host), signal.SIGKILL)

    def freeze(self, host: Host) -> None:
        """Every process of ``host`` stopped (SIGSTOP): connections stay open, nothing answers."""
        _signal(self.pids(host), signal.SIGSTOP)

    def thaw(self, host: Host) -> None:
        _signal(self.pids(host), signal.SIGCONT)

    def link_down(self, host: Host) -> None:
        """Silent machine death: ``host``'s link goes down; peers see only silence (no FIN, no RST)."""
        _run("ip", "-n", host.netns, "link", "set", "eth0", "down")

    def link_up(self, host: Host) -> None:
        _run("ip", "-n", host.netns, "link", "set", "eth0", "up")

    def limit(self, host: Host, rate: str = "50mbit", direction: str = "egress") -> None:
        """``host``'s NIC limited to ``rate`` (tc syntax) by a token bucket (``tbf``): what it sends
        (``egress``) or what it receives (``ingress``: the switch port towards it)."""
        netns, dev = {"egress": (host.netns, "eth0"), "ingress": (self.switch, host.port)}[direction]
        # A burst of at least a 64 KB segment (veth passes GSO segments), and ~10 ms at the rate.
        bits = _tc_rate(rate)
        burst = max(65536, bits // 8 // 100)
        _in(netns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", str(burst),
            "latency", "50ms")

    def unlimit(self, host: Host) -> None:
        for netns, dev in ((host.netns, "eth0"), (self.switch, host.port)):
            _in(netns, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    def drop(self, a: Host, b: Host, percent: int = 100, both_ways: bool = True) -> None:
        """Frames from ``a`` to ``b`` (and back, with ``both_ways``) vanish in the switch: all of them,
        or ``percent`` of them at random."""
        if not 0 < percent <= 100:
            raise ValueError("percent: 1..100")
        share = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        pairs = [(a, b), (b, a)] if both_ways else [(a, b)]
        rules = "".join(f'add rule bridge netbed forward iifname "{x.port}" oifname "{y.port}" {share}drop\n'
                        for x, y in pairs)
        _in(self.switch, "nft", "-f", "-", input=rules)

    def partition(self, side: Iterable[Host], other: Iterable[Host]) -> None:
        """No frame crosses between the two groups of hosts."""
        other = list(other)
        for a in side:
            for b in other:
                self.drop(a, b)

    def heal(self) -> None:
        """Every drop and partition undone."""
        _in(self.switch, "nft", "flush", "chain", "bridge", "netbed", "forward")


def _tc_rate(rate: str) -> int:
    """bits per second of a tc rate such as ``50mbit``, ``800kbit``, ``1gbit`` or ``1000000`` (bit)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)(bit)?", rate.strip().lower())
    if not m:
        raise ValueError(f"rate {rate!r}: use e.g. 50mbit, 800kbit, 1gbit")
    return int(float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]])


def viewer_tool(urls: list[str], viewers: int, seconds: float, *extra: str) -> list[str]:
    """The command line of the viewer tool: ``viewers`` MJPEG viewers per URL for ``seconds``."""
    return [sys.executable, str(VIEWER_TOOL), *(a for u in urls for a in ("--url", u)),
            "--viewers", str(viewers), "--seconds", str(seconds), *extra]
