"""Home Assistant in-process (the ``hass`` fixture) with the repository's ``custom_components/camhub``, and
the real hub beside it: the project's venv runs it (``CAMHUB_PYTHON``), as in every other camhub test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import pytest_socket

import custom_components  # noqa: F401  (the repository's, imported first: the harness has a package of that name)
from tests.support.procs import ROOT, HubProcess, Mosquitto

os.environ.setdefault("CAMHUB_PYTHON", str(ROOT / ".venv" / "bin" / "python"))


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Home Assistant's loader finds custom_components/camhub (the repository root is on sys.path)."""


@pytest.fixture(autouse=True)
def loopback(socket_enabled: None) -> None:
    """Sockets to 127.0.0.1 (the harness allows no others) for every test: the hub is a real one."""


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    pytest_socket.enable_socket()  # set up during some test's setup, before that test allows loopback
    mosquitto = Mosquitto()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="session")
def open_hub(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub that asks for no credentials (loopback, CAMHUB_AUTH off)."""
    pytest_socket.enable_socket()  # set up during some test's setup, before that test allows loopback
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("open-hub")).wait_ready()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def other_hub(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """Another hub on the same broker, under another topic prefix: another Home Assistant device."""
    pytest_socket.enable_socket()
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("other-hub"), env={"CAMHUB_TOPIC_PREFIX": "site2"})
    yield hub.wait_ready()
    hub.stop()

