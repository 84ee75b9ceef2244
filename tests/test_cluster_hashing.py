"""Rendezvous hashing and bounded load (cluster/hashing.py), in process: which origin a camera goes to and
which edge takes a camera's next viewer. Every hub computes these alone, from the same member list, and
must get the same answer as every other hub (docs/cluster.md, "Rendezvous hashing").
The cluster's end-to-end behaviour is test_cluster*.py; the ownership rules over a real broker are
test_cluster_ownership.py.
"""

from __future__ import annotations

from collections import Counter

import pytest

from camhub.hub.cluster.hashing import bound, bounded, preferred, ranked

CAMERAS = [f"cam{i}" for i in range(200)]
ORIGINS = ["o1", "o2", "o3", "o4"]


def test_the_order_is_the_same_on_every_hub_of_every_version() -> None:
    """Part of the cluster's protocol: hubs of two versions in one cluster (a rolling upgrade) must agree
    on each camera's owner and edge, or they would claim the same camera in turn. These answers never
    change; whatever order or repeats the member list comes in."""
    assert ranked("cam1", ["o1", "o2", "o3"]) == ["o2", "o1", "o3"]
    assert ranked("cam2", ["o3", "o1", "o2"]) == ["o3", "o2", "o1"]
    assert ranked("garage", ("o1", "o2", "o3")) == ["o2", "o3", "o1"]
    assert ranked("yard", iter(["o3", "o2", "o1", "o1", "o2"])) == ["o1", "o2", "o3"]
    assert preferred("cam1", ["o3", "o1", "o2"]) == "o2" and preferred("yard", {"o2", "o1"}) == "o1"


def test_no_hub_no_preference() -> None:
    assert preferred("cam1", []) is None and ranked("cam1", []) == []
    assert bounded("cam1", {}, 150) is None


def test_the_cameras_spread_over_the_origins_and_only_a_gone_origin_s_cameras_move() -> None:
    owners = {camera: preferred(camera, ORIGINS) for camera in CAMERAS}
    assert all(40 <= n <= 60 for n in Counter(owners.values()).values()), Counter(owners.values())
    for gone in ORIGINS:
        left = [o for o in ORIGINS if o != gone]
        moved = {camera for camera in CAMERAS if preferred(camera, left) != owners[camera]}
        assert moved == {camera for camera, owner in owners.items() if owner == gone}
        # each to its next choice: the origin it ranked second among all four
        assert all(preferred(c, left) == next(o for o in ranked(c, ORIGINS) if o != gone) for c in moved)


@pytest.mark.parametrize(("total", "hubs", "percent", "limit"), [
    (0, 1, 100, 1),  # the first connection on one hub
    (0, 3, 150, 1),  # ceil(1.5 × 1 / 3)
    (5, 2, 100, 3),  # ceil(6 / 2)
    (5, 3, 150, 3),  # ceil(1.5 × 6 / 3)
    (8, 3, 100, 3),  # exactly the mean: 9 / 3
    (9, 3, 100, 4),  # ceil(10 / 3)
    (7, 4, 125, 3),  # ceil(1.25 × 8 / 4) = ceil(2.5)
    (4, 0, 100, 5),  # no hub: as if one (never divided by zero)
    (100, 1, 100, 101),  # one hub takes every connection (the mean is all of them)
])
def test_the_bound_counts_the_new_connection_and_rounds_up(total: int, hubs: int, percent: int, limit: int) -> None:
    assert bound(total, hubs, percent) == limit


def test_a_camera_s_viewers_go_to_its_first_edge_until_the_bound_then_spill_in_its_order() -> None:
    edges = ["e1", "e2", "e3"]
    order = ranked("cam1", edges)
    loads = dict.fromkeys(edges, 0)
    taken = []
    for _ in range(9):  # 150 %: an edge takes one more while below ceil(1.5 × (viewers + 1) / 3)
        edge = bounded("cam1", loads, 150)
        assert edge is not None
        loads[edge] += 1
        taken.append(edge)
    assert taken[:2] == [order[0], order[1]], "the second viewer is over the first edge's bound of 1"
    assert max(loads.values()) <= bound(8, 3, 150) and sum(loads.values()) == 9
    assert bounded("cam1", {order[0]: 2, order[1]: 0, order[2]: 0}, 150) == order[1]  # 2 = ceil(1.5 × 3 / 3)
    assert bounded("cam1", {order[0]: 1, order[1]: 0, order[2]: 0}, 200) == order[0]  # 1 < ceil(2 × 2 / 3)
    assert bounded("cam1", {order[0]: 3, order[1]: 3, order[2]: 2}, 100) == order[2]  # only it is below 3
