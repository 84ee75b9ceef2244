"""Announces are untrusted: every malformed or hostile one is rejected with a countable reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camhub.hub.announce import AllowedSources, AnnounceRejected, check_url, parse_announce, parse_static_sources
from camhub.settings import SettingsError
from tests.support.mqtt import Observer
from tests.support.procs import Mosquitto, SimNode, running

DEFAULT = AllowedSources.parse("loopback,private")
GOOD = {
    "id": "door", "name": "Front door", "stream_url": "http://192.168.1.20:8080/stream",
    "snapshot_url": "http://192.168.1.20:8080/snapshot.jpg", "status_url": "http://192.168.1.20:8080/status",
    "board": "esp32s3_eye", "sensor": "OV5640", "frame_size": "VGA", "width": 640, "height": 480, "fps": 10,
    "jpeg_quality": 15, "firmware": "0.1.0", "ip": "192.168.1.20",
    "controls": {"fps": [1, 30], "jpeg_quality": [2, 63], "frame_size": ["QQVGA", "QVGA", "VGA"]},
}


def payload(**changes: object) -> bytes:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def reason(topic_id: str, raw: bytes, allowed: AllowedSources = DEFAULT) -> str:
    with pytest.raises(AnnounceRejected) as info:
        parse_announce(topic_id, raw, allowed)
    return info.value.reason


def test_a_good_announce_keeps_every_contract_field() -> None:
    announce = parse_announce("door", payload(), DEFAULT)
    assert announce.to_dict() == {**GOOD, "fps": 10.0}
    with pytest.raises(AttributeError):
        announce.id = "other"  # type: ignore[misc]  # frozen


def test_only_id_and_stream_url_are_required() -> None:
    announce = parse_announce("cam-2", b'{"id": "cam-2", "stream_url": "http://127.0.0.1:9/stream"}', DEFAULT)
    assert announce.name == "cam-2" and announce.width is None and announce.snapshot_url is None


@pytest.mark.parametrize("raw,expected", [
    (b"x" * 5000, "oversized"),
    (b"{not json", "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
    (b'{"id": "door", "fps": NaN, "stream_url": "http://10.0.0.1/"}', "bad_json"),
    (b"[" * 2000 + b"]" * 2000, "bad_json"),
    (b'["door"]', "not_object"),
    (b'{"stream_url": "http://10.0.0.1/"}', "missing_field:id"),
    (b'{"id": "door"}', "missing_field:stream_url"),
    (payload(stream_url=None), "missing_field:stream_url"),
    (payload(id="Door"), "bad_id"),
    (payload(id="../etc"), "bad_id"),
    (payload(id="a" * 33), "bad_id"),
    (payload(id=7), "bad_id"),
    (payload(id="door\n"), "bad_id"),
    (payload(id="yard"), "id_mismatch"),
    (payload(stream_url="ftp://10.0.0.1/stream"), "bad_url"),
    (payload(stream_url="file:///etc/passwd"), "bad_url"),
    (payload(stream_url="http://admin:secret@10.0.0.1/stream"), "bad_url"),
    (payload(stream_url="http://10.0.0.1:99999/"), "bad_url"),
    (payload(stream_url="http://10.0.0.1/a b"), "bad_url"),
    (payload(stream_url="http:///stream"), "bad_url"),
    (payload(stream_url="http://2130706433/"), "bad_url"),  # a decimal address in disguise
    (payload(stream_url="http://0x7f000001/"), "bad_url"),
    (payload(stream_url="http://bad_host.lan/"), "bad_url"),
    (payload(stream_url=["http://10.0.0.1/"]), "bad_url"),
    (payload(stream_url="http://8.8.8.8/stream"), "url_not_allowed"),
    (payload(stream_url="http://[2001:db8::1]/stream"), "url_not_allowed"),
    (payload(stream_url="http://[::ffff:8.8.8.8]/stream"), "url_not_allowed"),
    (payload(stream_url="http://0.0.0.0:8080/stream"), "url_not_allowed"),
    # link-local is not a default: the cloud metadata service lives there, however it is spelled
    (payload(stream_url="http://169.254.169.254/latest/meta-data/"), "url_not_allowed"),
    (payload(stream_url="http://[::ffff:169.254.169.254]/"), "url_not_allowed"),
    (payload(stream_url="http://[::ffff:a9fe:a9fe]/"), "url_not_allowed"),
    (payload(stream_url="http://[fe80::1%25eth0]:81/stream"), "url_not_allowed"),
    (payload(stream_url="http://[febf::1]/"), "url_not_allowed"),
    (payload(snapshot_url="javascript:alert(1)"), "bad_url:snapshot_url"),
    (payload(status_url="http://1.1.1.1/status"), "url_not_allowed:status_url"),
    (payload(width="640"), "bad_field:width"),
    (payload(width=True), "bad_field:width"),
    (payload(height=0), "bad_field:height"),
    (payload(fps=-1), "bad_field:fps"),
    (payload(fps="10"), "bad_field:fps"),
    (payload(jpeg_quality=101), "bad_field:jpeg_quality"),
    (payload(name={"x": 1}), "bad_field:name"),
    (payload(ip="not-an-ip"), "bad_field:ip"),
    (payload(controls=[1, 30]), "bad_field:controls"),
    (payload(controls={**GOOD["controls"], "fps": [30, 1]}), "bad_field:controls"),
    (payload(controls={**GOOD["controls"], "jpeg_quality": [2, 6300]}), "bad_field:controls"),
    (payload(controls={**GOOD["controls"], "frame_size": []}), "bad_field:controls"),
    (payload(controls={**GOOD["controls"], "frame_size": ["VGA<script>"]}), "bad_field:controls"),
    (payload(controls={**GOOD["controls"], "frame_size": ["VGA"] * 65}), "bad_field:controls"),
])
def test_rejections_carry_a_countable_reason(raw: bytes, expected: str) -> None:
    assert reason("door", raw) == expected


def test_strings_are_cleaned_and_clamped() -> None:
    announce = parse_announce("door", payload(name="\x1b[31mFront\u202e door" + "x" * 200, board=""), DEFAULT)
    assert announce.name.startswith("[31mFront door") and len(announce.name) == 64
    assert "\x1b" not in announce.name and announce.board is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/stream", "https://10.1.2.3/stream", "http://172.31.0.9/",
    "http://[::1]:8080/stream", "http://[fd00::7]/stream", "http://[::ffff:192.168.1.9]/",
    "http://camhub-door.local:8080/stream", "http://localhost:81/stream?fps=5",
    "HTTP://192.168.4.1:81/stream",
])
def test_default_allows_loopback_private_and_host_names(url: str) -> None:
    assert parse_announce("door", payload(stream_url=url), DEFAULT).stream_url == url


def test_allowed_sources_are_configurable() -> None:
    only_lab = AllowedSources.parse("10.20.0.0/16, 192.168.7.9")
    assert only_lab.allows("10.20.3.4") and only_lab.allows("192.168.7.9")
    assert not only_lab.allows("127.0.0.1") and not only_lab.allows("192.168.7.10")
    assert reason("door", payload(stream_url="http://127.0.0.1/"), only_lab) == "url_not_allowed"
    assert AllowedSources.parse("any").allows("8.8.8.8")
    assert not AllowedSources.parse("any").allows("0.0.0.0")
    assert AllowedSources.parse("") == DEFAULT
    boards_without_dhcp = AllowedSources.parse("private, link-local")
    assert boards_without_dhcp.allows("169.254.3.4") and boards_without_dhcp.allows("fe80::1")
    with pytest.raises(SettingsError, match="CAMHUB_ALLOWED_SOURCES"):
        AllowedSources.parse("loopback,intranet")


def test_static_sources() -> None:
    sources = parse_static_sources("door=http://10.0.0.7:81/stream, yard=http://cam-yard.local/mjpg\n", DEFAULT)
    assert sources == {"door": "http://10.0.0.7:81/stream", "yard": "http://cam-yard.local/mjpg"}
    assert parse_static_sources("", DEFAULT) == {}
    for bad, words in [("door", "expected id="), ("Door=http://10.0.0.7/", "id must"),
                       ("door=http://10.0.0.7/,door=http://10.0.0.8/", "twice"),
                       ("door=http://8.8.8.8/", "CAMHUB_ALLOWED_SOURCES"),
                       ("door=http://admin:hunter2@10.0.0.7/", "credentials")]:
        with pytest.raises(SettingsError, match=words) as info:
            parse_static_sources(bad, DEFAULT)
        assert "hunter2" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600), st.dictionaries(
    st.sampled_from([*GOOD, "extra"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
              st.sampled_from(["door", "http://10.0.0.1/s", "http://8.8.8.8/", "http://x.local/"])),
).map(lambda d: json.dumps(d).encode())))
def test_any_payload_is_accepted_cleanly_or_rejected_with_a_reason(raw: bytes) -> None:
    try:
        announce = parse_announce("door", raw, DEFAULT)
    except AnnounceRejected as exc:
        assert exc.reason and " " not in exc.reason
        return
    assert announce.id == "door"
    check_url(announce.stream_url, DEFAULT)
    json.dumps(announce.to_dict())


def test_the_real_node_announce_is_accepted(mosquitto: Mosquitto, observer: Observer) -> None:
    with running(SimNode("porch", mosquitto.port, fps=5)):
        message = observer.wait_for("camhub/nodes/porch/announce", timeout=20)
    announce = parse_announce("porch", message.payload, DEFAULT)
    assert announce.stream_url.startswith("http://127.0.0.1:") and announce.stream_url.endswith("/stream")
    assert announce.width and announce.height and announce.fps
