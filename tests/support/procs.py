"""Real processes for the tests: mosquitto on a free port, simulated nodes, free ports.

Each can also run inside a network namespace (``netns``: an ``ip netns`` name), at an address of that
namespace instead of loopback: the test bed in ``netbed.py`` builds hosts that way.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import entered

ROOT = Path(__file__).resolve().parents[2]


# The ports tests hand to the servers they start. Below the kernel's ephemeral range (32768-60999 by
# default), so no outgoing connection takes one between the pick and the server's bind; a block of its own
# for each pytest-xdist worker, taken in turn from a random start, so two workers never hand out the same
# port. (bind(0) gave two workers the same port moments apart: the loser's /healthz was answered by the
# other worker's hub, and its test saw another hub's cameras.)
PORTS_PER_WORKER = 1500
FIRST_PORT = 20000


class _Ports:
    def __init__(self) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...
        index = int(worker[2:]) if worker[2:].isdigit() else 0
        self.base = FIRST_PORT + (index % 8) * PORTS_PER_WORKER
        self.turn = random.randrange(PORTS_PER_WORKER)  # another test run on the machine starts elsewhere

    def free(self) -> int:
        for _ in range(PORTS_PER_WORKER):
            self.turn += 1
            port = self.base + self.turn % PORTS_PER_WORKER
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use, or a closed connection's TIME_WAIT
                return port
        raise RuntimeError(f"no free port in {self.base}-{self.base + PORTS_PER_WORKER - 1}")


_ports = _Ports()


def free_port() -> int:
    """A loopback port nothing listens on, for a server a test starts (never the same twice in a row)."""
    return _ports.free()


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None,
                  host: str = "127.0.0.1", netns: str | None = None) -> None:
    """Until ``host:port`` accepts a connection (made from inside ``netns``, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), entered(netns), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


# Never through a proxy from the environment: the tests' addresses are loopback or a test bed's own.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None,
                  netns: str | None = None) -> None:
    """Until ``url`` answers (asked from inside ``netns``, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with entered(netns), _direct.open(url, timeout=1) as resp:
                resp.read()
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Mosquitto:
    """Debian's mosquitto, on a free loopback port (or ``port``, e.g. to restart it), anonymous access
    unless ``users`` ({name: password}) and an ``acl`` (mosquitto's acl_file text) are given; ``log=True``
    keeps its full protocol log (every packet received and sent) for ``log_text()``. ``host`` and
    ``netns``: listen on that address inside that network namespace instead (give the port too)."""

    def __init__(self, port: int | None = None, users: dict[str, str] | None = None, acl: str | None = None,
                 log: bool = False, host: str = "127.0.0.1", netns: str | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = port or free_port()
        self.host = host
        self._dir = tempfile.TemporaryDirectory(prefix="camhub-mosquitto-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        text = f"listener {self.port} {host}\npersistence false\n"
        if users is None:
            text += "allow_anonymous true\n"
        else:
            passwd = Path(self._dir.name) / "passwd"
            passwd.touch()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                               capture_output=True)
            passwd.chmod(0o644)  # run as root, mosquitto reads it after dropping to its own user
            os.chmod(self._dir.name, 0o755)
            text += f"allow_anonymous false\npassword_file {passwd}\n"
        if acl is not None:
            (Path(self._dir.name) / "acl").write_text(acl)
            (Path(self._dir.name) / "acl").chmod(0o644)
            os.chmod(self._dir.name, 0o755)
            text += f"acl_file {Path(self._dir.name) / 'acl'}\n"
        self._log = Path(self._dir.name) / "mosquitto.log"
        if log:
            self._log.touch()
            self._log.chmod(0o666)  # mosquitto drops to its own user before it opens the file
            os.chmod(self._dir.name, 0o755)
            text += f"log_dest file {self._log}\nlog_type all\n"
        conf.write_text(text)
        self.proc = subprocess.Popen([*in_netns(netns), binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc, host=host, netns=netns)

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._dir.cleanup()


def in_netns(netns: str | None) -> list[str]:
    """The command prefix that runs a program inside the network namespace ``netns`` (none: here)."""
    return ["ip", "netns", "exec", netns] if netns else []


class Process:
    """A child process whose output goes to a log file, shown when a test fails; ``netns``: run it
    inside that network namespace (``ip netns exec``, which execs the program: ``pid`` is the program's)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, name: str = "proc",
                 cwd: Path = ROOT, netns: str | None = None) -> None:
        self.name = name
        self.netns = netns
        self.log = tempfile.NamedTemporaryFile(prefix=f"camhub-{name}-", suffix=".log", delete=False)  # noqa: SIM115 (lives as long as the process)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([*in_netns(netns), *args], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        return stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Stop ``proc`` with ``sig`` if it still runs, SIGKILL after ``timeout`` s; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def camhub_cmd(*args: str) -> list[str]:
    """``python -m camhub ...``: this interpreter's, or CAMHUB_PYTHON's (tests run in Home Assistant's venv,
    where camhub is not installed, start the hub with the project's)."""
    return [os.environ.get("CAMHUB_PYTHON", sys.executable), "-m", "camhub", *args]


_EMBEDDED_BROKER = """
import asyncio, logging, signal, sys
from camhub.hub.mqtt.embedded import EmbeddedBroker

async def main(port):
    broker = EmbeddedBroker("127.0.0.1", port)
    await broker.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.stop()

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
asyncio.run(main(int(sys.argv[1])))
"""


class EmbeddedBroker(Process):
    """The hub's embedded MQTT broker alone (the class ``camhub hub`` runs), in its own process on a free
    loopback port: as the hub runs it, and without sharing the tests' interpreter."""

    def __init__(self) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        super().__init__([sys.executable, "-c", _EMBEDDED_BROKER, str(self.port)], name="embedded-broker")
        wait_for_port(self.port, proc=self.proc)


def circuitpython_vm() -> str | None:
    """CircuitPython's Unix-port VM as ``camhub node --runtime circuitpython`` finds it, or None."""
    try:
        from camhub.sim.vm import find_circuitpython
    except ModuleNotFoundError as error:  # Home Assistant's venv (tests/ha/unit): camhub runs by CAMHUB_PYTHON
        if error.name != "camhub":
            raise
        return None

    return find_circuitpython(os.environ)


NO_CIRCUITPYTHON_VM = ("no CircuitPython VM: set CAMHUB_CIRCUITPY_VM, or put ../shared/circuitpython-unix/"
                       "circuitpython-10.3.0-f32 beside the checkout (docs/runtimes.md)")
# Skips, with the reason, what needs CircuitPython's VM where it is absent (CI has it).
needs_circuitpython_vm = pytest.mark.skipif(circuitpython_vm() is None, reason=NO_CIRCUITPYTHON_VM)

# The interpreters the node tests run the firmware on (``camhub node --sim --runtime``): CPython, the
# MicroPython Unix port, and CircuitPython's own VM (single-precision floats, as on a board).
RUNTIMES = ("cpython", "micropython", pytest.param("circuitpython", marks=needs_circuitpython_vm))
VM_RUNTIMES = RUNTIMES[1:]


def runtime_args(runtime: str) -> list[str]:
    """The ``camhub node`` flags for ``runtime`` (a VM: the default 1 MB heap)."""
    return [] if runtime == "cpython" else ["--runtime", runtime]


class SimNode(Process):
    """The real node firmware on this PC (``camhub node --sim``), on CPython or a VM (``runtime``)."""

    def __init__(self, node_id: str, mqtt_port: int | None, fps: int = 10, frame_size: str = "QVGA",
                 http_port: int | None = None, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, runtime: str = "cpython", host: str = "127.0.0.1",
                 mqtt_host: str = "127.0.0.1", netns: str | None = None) -> None:
        self.node_id = node_id
        self.http_port = http_port or free_port()
        self.fps = fps
        self.runtime = runtime
        mqtt = ["--mqtt-host", mqtt_host, "--mqtt-port", str(mqtt_port)] if mqtt_port is not None else []
        # A node advertised on another address than loopback listens on all of them (pc.py).
        advertise = [] if host == "127.0.0.1" else ["--advertise-host", host]
        args = camhub_cmd("node", "--sim", "--id", node_id, "--http-port", str(self.http_port), *mqtt, *advertise,
                          "--fps", str(fps), "--frame-size", frame_size, *runtime_args(runtime), *(extra or []))
        super().__init__(args, env=env, name=f"node-{node_id}", netns=netns)
        self.url = f"http://{host}:{self.http_port}"

    def wait_ready(self, timeout: float = 20.0) -> SimNode:
        wait_for_http(self.url + "/status", timeout=timeout, proc=self.proc, netns=self.netns)
        return self


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()


class HubProcess(Process):
    """The real hub (``camhub hub``) on a free port, with its own state directory."""

    def __init__(self, mqtt_port: int | None, state_dir: Path, port: int | None = None,
                 env: dict[str, str] | None = None, extra: list[str] | None = None, host: str = "127.0.0.1",
                 mqtt_host: str = "127.0.0.1", netns: str | None = None) -> None:
        self.port = port or free_port()
        self.state_dir = state_dir
        args = camhub_cmd("hub", "--host", host, "--port", str(self.port), "--state-dir", str(state_dir))
        if mqtt_port is not None:
            args += ["--mqtt-host", mqtt_host, "--mqtt-port", str(mqtt_port)]
        env = {"CAMHUB_AUTH": "off", "CAMHUB_STATE_INTERVAL_S": "2", **(env or {})}
        super().__init__([*args, *(extra or [])], env=env, name="hub", netns=netns)
        self.url = f"http://{host}:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> HubProcess:
        wait_for_http(self.url + "/healthz", timeout=timeout, proc=self.proc, netns=self.netns)
        return self
