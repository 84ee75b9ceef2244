"""One id rule, everywhere: the node refuses at start an id the hub would refuse, and a legal id goes
all the way (node -> MQTT -> hub -> URL).

The rule lives once, in the firmware (``camhub_node.config.is_valid_id``): 1 to 32 of a-z 0-9 _ -,
starting with a letter or digit. Before it did, the node started with ``CAMHUB_NODE_ID = "_garage"``
and announced it, and the hub refused every announce (``bad_id``): a camera that never showed up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camhub.deploy.fleet import FleetError, parse_fleet
from camhub.hub.ingest.announce import parse_announce
from camhub.hub.ingest.sources import AllowedSources, AnnounceRejected, parse_static_sources
from camhub.settings import SettingsError
from camhub_node.config import Config, ConfigError
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import HubProcess, Mosquitto, SimNode, free_port, running
from tests.support.waiting import get_json, wait_until
from tests.test_node_cli import run_cli

LOOPBACK = AllowedSources.parse("loopback")
EDGE_ID = "0-garage_door" + "-x" * 9 + "_"  # 32 characters: a digit first, both '-' and '_', the longest


def node_takes(node_id: str) -> bool:
    try:
        Config(getenv={"CAMHUB_NODE_ID": node_id}.get)
    except ConfigError:
        return False
    return True


def hub_takes(node_id: str) -> bool:
    announce = json.dumps({"id": node_id, "stream_url": "http://127.0.0.1:8080/stream"}).encode()
    try:
        parse_announce(node_id, announce, LOOPBACK)
    except AnnounceRejected as exc:
        assert exc.reason == "bad_id", exc
        return False
    return True


def sources_take(node_id: str) -> bool:
    try:
        parse_static_sources(f"{node_id}=http://127.0.0.1:81/stream", LOOPBACK)
    except SettingsError:
        return False
    return True


def deploy_takes(node_id: str) -> bool:
    try:
        parse_fleet(f'[[board]]\nid = {json.dumps(node_id)}\ntarget = "http://cam.local"\n', Path("fleet.toml"))
    except FleetError:
        return False
    return True


@given(st.text(alphabet="abz09-_A./é", min_size=1, max_size=34))
def test_the_node_the_hub_the_sources_and_deploy_take_the_same_ids(node_id: str) -> None:
    takes = node_takes(node_id)
    assert hub_takes(node_id) == takes and sources_take(node_id) == takes and deploy_takes(node_id) == takes


@pytest.mark.parametrize("node_id", ["_garage", "-garage", "Garage", "a" * 33, "gar age", "garage/1"])
def test_ids_the_hub_refuses_are_refused_everywhere(node_id: str) -> None:
    assert not node_takes(node_id) and not hub_takes(node_id) and not sources_take(node_id)
    assert not deploy_takes(node_id)


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
@pytest.mark.parametrize("node_id", ["_garage", "-garage"])
def test_the_node_refuses_at_start_an_id_the_hub_would_refuse(node_id: str, runtime: str) -> None:
    result = run_cli("node", "--sim", f"--id={node_id}", "--http-port", str(free_port()), "--runtime", runtime)
    assert result.returncode == 2, result.stderr
    assert "CAMHUB_NODE_ID" in result.stderr and repr(node_id) in result.stderr
    assert "starting with a letter or digit" in result.stderr and "Traceback" not in result.stderr


def test_a_legal_id_goes_from_the_node_through_the_hub_to_its_url(mosquitto: Mosquitto, tmp_path: Path) -> None:
    assert len(EDGE_ID) == 32
    with running(SimNode(EDGE_ID, mosquitto.port, fps=5, frame_size="QQVGA")) as node, \
            running(HubProcess(mosquitto.port, tmp_path)) as hub:
        node.wait_ready()
        hub.wait_ready()
        camera = wait_until(lambda: next((c for c in get_json(hub.url + "/api/cameras")
                                          if c["id"] == EDGE_ID and c["state"] == "streaming"), None),
                            timeout=30, what="the camera streaming at the hub")
        assert camera["stream"] == f"/cameras/{EDGE_ID}/stream"
        assert get_json(hub.url + f"/api/cameras/{EDGE_ID}")["announce"]["id"] == EDGE_ID
        with StreamReader(hub.url + camera["stream"]) as reader:
            assert all(part.body[:2] == b"\xff\xd8" for part in reader.parts(2))
