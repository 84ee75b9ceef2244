"""Shared fixtures: a real mosquitto per test (retained topics never leak between tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import Phase, settings

from tests.support import netbed as bed
from tests.support.mqtt import Observer
from tests.support.procs import Mosquitto

# `make mutate` (tools/mutate.py) runs with this profile: one failing example kills a mutant, and
# shrinking it would cost seconds for each of hundreds of mutants.
settings.register_profile("mutate", phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None)


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


@pytest.fixture
def netbed(request: pytest.FixtureRequest) -> bed.NetBed:
    """Separate machines on this one (tests/support/netbed.py), torn down even when the test fails;
    skipped, saying why, without root or ``ip netns``. Mark such tests ``cluster`` (``make test-cluster``)."""
    reason = bed.unavailable()
    if reason:
        pytest.skip(reason)
    testbed = bed.NetBed()
    request.addfinalizer(testbed.close)  # before start(): a half-built bed is torn down too
    return testbed.start()
