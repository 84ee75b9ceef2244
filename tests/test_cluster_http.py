"""The cluster's credentials and the client behind a proxy, in this process (the HTTP server as the hub
builds it, over real sockets; see test_hub_http.py), and the settings a cluster role refuses.

- another hub's request carries a credential derived from the cluster secret, meant for this hub:
  it passes where auth is on; one made for another hub, or with another secret, does not;
- view tokens are keyed by the secret: one hub's token opens that camera on any other;
- X-Forwarded-For is believed from a trusted proxy only: the login throttle and the viewer list
  then see the real client; from anyone else it changes nothing (and is counted);
- a cluster role without a secret (or with a short one, or without a broker of its own) does not start.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.config import config_from
from camhub.hub.http import auth as auth_module
from camhub.hub.http.auth import FAILURE_LIMIT, REDIRECT_TOKEN_S, Auth
from camhub.hub.mqtt.topics import Topics
from camhub.settings import SettingsError
from tests.support import scenes
from tests.support.clock import Clock
from tests.support.cluster import SECRET
from tests.support.mjpeg_client import StreamReader
from tests.test_hub_http import World, make_world

WRONG = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}


@pytest.fixture
async def hub_b(tmp_path: Path):  # noqa: ANN201
    """A hub "b" with auth on, in a cluster, behind a trusted proxy at 127.0.0.1."""
    key = ClusterKey(SECRET, "b")
    made = await make_world(tmp_path, auth_required=True, password="pw", token_key=key.view_token_key,
                            cluster=key, trusted_proxies="127.0.0.1")
    made.services.cameras.add("porch", "Porch", "static", "http://127.0.0.1:9/").available = True
    yield made
    await made.client.close()


async def test_another_hub_passes_with_a_credential_made_for_this_one_only(hub_b: World) -> None:
    assert (await hub_b.json("/api/cameras"))[0] == 401
    from_a = ClusterKey(SECRET, "a")
    assert (await hub_b.json("/api/cameras", headers=from_a.headers("b")))[0] == 200
    for headers in (from_a.headers("c"),  # made for another hub (sent to a false member, say)
                    ClusterKey("another-secret-0123456789", "a").headers("b"),
                    {"Authorization": "Bearer a.b." + "0" * 40}, {"Authorization": "Bearer a.b"}):
        assert (await hub_b.json("/api/cameras", headers=headers))[0] == 401


async def test_a_view_token_from_one_hub_opens_the_camera_on_another(hub_b: World) -> None:
    token_from_a = Auth(True, "admin", "pw", ClusterKey(SECRET, "a").view_token_key).view_token("porch")
    camera = hub_b.services.cameras.get("porch")
    assert camera is not None
    camera.feed.publish(scenes.still(count=1, size=(160, 120))[0], 0.0)
    async with hub_b.client.get(f"/cameras/porch/snapshot.jpg?token={token_from_a}") as response:
        assert response.status == 200
    other = Auth(True, "admin", "pw", ClusterKey("another-secret-0123456789", "a").view_token_key)
    async with hub_b.client.get(f"/cameras/porch/snapshot.jpg?token={other.view_token('porch')}") as response:
        assert response.status == 401


def test_a_redirect_s_expiring_view_token_opens_its_camera_on_any_hub_until_it_expires() -> None:
    """The token a redirecting hub puts in the Location (docs/cluster.md, redirect mode)."""
    issuer, edge = (Auth(True, "admin", "pw", ClusterKey(SECRET, hub).view_token_key) for hub in ("a", "b"))
    token = issuer.expiring_token("porch")
    assert edge.token_ok("porch", token) and Auth.is_expiring(token)
    assert not edge.token_ok("garage", token), "that camera only"
    assert not edge.token_ok("porch", issuer.expiring_token("porch", lifetime_s=-1)), "expired"
    assert not edge.token_ok("porch", issuer.expiring_token("porch", lifetime_s=3600)), "longer than a redirect's"
    assert not Auth.is_expiring(issuer.view_token("porch")), "the lasting token is not a redirect's"


def test_an_expiring_view_token_holds_until_its_second_and_no_longer_than_a_redirects_lifetime(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Exactly at the boundaries, on a clock the test holds (a token is valid while now < its expiry, and
    # its expiry may be at most REDIRECT_TOKEN_S + 60 s ahead: the issuing hub's clock may run a minute fast).
    clock = Clock(1_800_000_000.0)
    monkeypatch.setattr(auth_module, "time", clock)
    issuer, edge = (Auth(True, "admin", "pw", ClusterKey(SECRET, hub).view_token_key) for hub in ("a", "b"))
    now = int(clock.now)
    assert edge.token_ok("porch", issuer.view_token("porch", now + 1))
    assert not edge.token_ok("porch", issuer.view_token("porch", now)), "expired at its second"
    most = now + REDIRECT_TOKEN_S + 60
    assert edge.token_ok("porch", issuer.view_token("porch", most))
    assert not edge.token_ok("porch", issuer.view_token("porch", most + 1)), "longer than a redirect's"
    clock.now += 0.5
    assert edge.token_ok("porch", issuer.view_token("porch", now + 1)), "half a second before its expiry"
    assert not edge.token_ok("porch", issuer.view_token("porch", most + 1)), "still too far ahead"


async def test_the_client_behind_a_trusted_proxy_is_the_one_it_names(hub_b: World) -> None:
    """From 127.0.0.1 (trusted): each forwarded client has its own throttle, and a viewer shows as itself."""
    for _ in range(FAILURE_LIMIT):
        await hub_b.json("/api/cameras", headers={**WRONG, "X-Forwarded-For": "203.0.113.7"})
    assert (await hub_b.json("/api/cameras", headers={**WRONG, "X-Forwarded-For": "203.0.113.7"}))[0] == 429
    # another client behind the same proxy is not held up; a made-up hop left of it changes nothing
    assert (await hub_b.json("/api/cameras", headers={**WRONG, "X-Forwarded-For": "1.2.3.4, 203.0.113.8"}))[0] == 401
    camera = hub_b.services.cameras.get("porch")
    assert camera is not None
    camera.feed.publish(scenes.still(count=1, size=(160, 120))[0], 0.0)
    url = f"http://127.0.0.1:{hub_b.client.port}/cameras/porch/stream"
    viewer = await asyncio.to_thread(StreamReader, url, headers={
        "Authorization": "Basic " + base64.b64encode(b"admin:pw").decode(), "X-Forwarded-For": "203.0.113.9"})
    try:
        await asyncio.to_thread(viewer.read_part)
        assert [v["peer"] for v in camera.feed.viewer_infos()] == ["203.0.113.9"]
    finally:
        viewer.close()


async def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(tmp_path: Path) -> None:
    made = await make_world(tmp_path, auth_required=True, password="pw", trusted_proxies="10.9.9.9")
    try:
        for number in range(FAILURE_LIMIT):  # a new made-up client each time: still one address, ours
            await made.json("/api/cameras", headers={**WRONG, "X-Forwarded-For": f"203.0.113.{number}"})
        status, _, _ = await made.json("/api/cameras", headers={**WRONG, "X-Forwarded-For": "203.0.113.200"})
        assert status == 429
        ignored = {f.name: f.values for f in made.server.counters()}["camhub_http_forwarded_ignored"]
        assert ignored == {"": FAILURE_LIMIT + 1}
    finally:
        await made.client.close()


@pytest.mark.parametrize(("values", "message"), [
    ({"CAMHUB_ROLE": "origin", "CAMHUB_MQTT_HOST": "10.0.0.2"}, "CAMHUB_CLUSTER_SECRET"),
    ({"CAMHUB_ROLE": "edge", "CAMHUB_MQTT_HOST": "10.0.0.2", "CAMHUB_CLUSTER_SECRET": "short"}, "at least 16"),
    ({"CAMHUB_ROLE": "origin", "CAMHUB_CLUSTER_SECRET": SECRET}, "CAMHUB_MQTT_HOST"),
    ({"CAMHUB_ROLE": "origin", "CAMHUB_CLUSTER_SECRET": SECRET, "CAMHUB_MQTT_HOST": "10.0.0.2",
      "CAMHUB_HUB_HOST": "0.0.0.0", "CAMHUB_HUB_PASSWORD": "pw"}, "CAMHUB_HUB_URL"),
    ({"CAMHUB_ROLE": "leader"}, "role must be one of hub, origin, edge"),
    ({"CAMHUB_HUB_ID": "Hub 1"}, "CAMHUB_HUB_ID must be"),
    ({"CAMHUB_CLUSTER_REBALANCE_S": "-1"}, "CAMHUB_CLUSTER_REBALANCE_S"),
    ({"CAMHUB_STREAM_REDIRECT": "edges"}, "needs CAMHUB_ROLE = origin or edge"),
    ({"CAMHUB_STREAM_REDIRECT": "proxy"}, "stream_redirect must be one of off, edges"),
    ({"CAMHUB_STREAM_REDIRECT_BALANCE": "99"}, "CAMHUB_STREAM_REDIRECT_BALANCE must be 100 to 1000"),
])
def test_a_cluster_role_refuses_settings_it_cannot_work_with(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        config_from(values)


def test_the_secret_may_come_from_a_file_and_a_single_hub_keeps_its_topics(tmp_path: Path) -> None:
    key_file = tmp_path / "cluster.key"
    key_file.write_text(SECRET + "\n")
    config = config_from({"CAMHUB_ROLE": "edge", "CAMHUB_MQTT_HOST": "10.0.0.2", "CAMHUB_HUB_ID": "e1",
                          "CAMHUB_CLUSTER_SECRET_FILE": str(key_file)})
    assert config.clustered and config.hub_id == "e1"
    with pytest.raises(SettingsError, match="cannot read"):
        config_from({"CAMHUB_ROLE": "edge", "CAMHUB_MQTT_HOST": "10.0.0.2",
                     "CAMHUB_CLUSTER_SECRET_FILE": str(tmp_path / "missing")})
    single = config_from({})
    assert single.role == "hub" and not single.clustered
    assert Topics().hub_availability == "camhub/hub/availability" and Topics().hub_state == "camhub/hub/state"
    assert Topics(hub_id="e1").hub_availability == "camhub/hubs/e1/availability"
