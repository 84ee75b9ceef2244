"""Shared fixtures: a real mosquitto per test (retained topics never leak between tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mqtt import Observer
from tests.support.procs import Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = Mosquitto()
    yield broker
    broker.stop()


@pytest.fixture
def observer(mosquitto: Mosquitto) -> Iterator[Observer]:
    obs = Observer(mosquitto.port, ["camhub/#"])
    yield obs
    obs.close()
