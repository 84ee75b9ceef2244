"""Announces are untrusted: every malformed or hostile one is rejected with a countable reason."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camhub.hub.ingest.announce import parse_announce
from camhub.hub.ingest.sources import (
    AllowedSources,
    AnnounceRejected,
    HubAddresses,
    check_url,
    parse_static_sources,
)
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


def test_url_edges_that_real_cameras_use_pass_and_near_misses_do_not() -> None:
    for url in ("http://192.168.1.9/~cam/stream!", "http://camera.lan./stream",  # FQDN with its root dot
                "http://192.168.1.9/" + "a" * (1024 - len("http://192.168.1.9/")),  # exactly the 1024 limit
                "http://" + ".".join(["a" * 63] * 3 + ["b" * 61]) + "/s",  # a 253-character host name
                "http://cam.x/", "http://cam.x./"):  # one-letter labels, with and without the root dot
        assert check_url(url, DEFAULT) == url
    for url, detail in [("http://192.168.1.9/" + "a" * 1006, "1-1024 characters"),
                        ("http://192.168.1.9/\x7f", "control or non-ASCII"), ("http://192.168.1.9:0/", "port 0"),
                        ("http://camera..lan/", "valid host name"), ("ftp://192.168.1.9/", "not http"),
                        ("http://" + "a" * 63 + "." * 191 + "/", "valid host name"),
                        ("http://ok.-bad./", "valid host name"),  # the root dot does not hide a bad label
                        ("http://" + ".".join(["a" * 63] * 3 + ["b" * 62]) + "/", "valid host name")]:  # 254
        with pytest.raises(AnnounceRejected, match=detail):
            check_url(url, DEFAULT)
    with pytest.raises(AnnounceRejected) as info:
        check_url("http://8.8.8.8/", AllowedSources.parse("10.0.0.0/8,192.168.0.0/16"))
    assert str(info.value) == ("url_not_allowed: 8.8.8.8 is outside CAMHUB_ALLOWED_SOURCES "
                               "(10.0.0.0/8,192.168.0.0/16)")
    assert str(AnnounceRejected("bad_json")) == "bad_json"


def test_announce_limits_are_inclusive_and_absent_fields_skip_only_themselves() -> None:
    edge = parse_announce("door", payload(jpeg_quality=0, width=16384, height=1, fps=1000), DEFAULT)
    assert (edge.jpeg_quality, edge.width, edge.height, edge.fps) == (0, 16384, 1, 1000.0)
    assert parse_announce("door", payload(jpeg_quality=100, fps=0), DEFAULT).jpeg_quality == 100
    assert parse_announce("door", payload(width=640.0), DEFAULT).width == 640  # JSON numbers may be floats
    sparse = parse_announce("door", payload(name=..., sensor=..., width=..., fps=..., snapshot_url=...), DEFAULT)
    assert (sparse.board, sparse.height, sparse.jpeg_quality, sparse.status_url) == (
        GOOD["board"], 480, 15, GOOD["status_url"])  # the fields after an absent one are still read
    exact = payload()
    assert parse_announce("door", exact, DEFAULT, max_bytes=len(exact)).id == "door"
    assert reason("door", payload(width=0)) == reason("door", payload(width=16385)) == "bad_field:width"
    assert reason("door", payload(fps=1000.5)) == "bad_field:fps"


def test_allowed_networks_take_host_bits_and_scoped_addresses() -> None:
    lab = AllowedSources.parse("192.168.1.5/24, link-local")  # host bits set: the network is meant
    assert lab.allows("192.168.1.77") and not lab.allows("192.168.2.1")
    assert lab.allows("fe80::1%eth0")  # a link-local address as the resolver returns it, with its zone
    assert not lab.allows("not-an-address")
    assert str(AllowedSources.parse("10.0.0.0/8")) == "10.0.0.0/8"


def test_static_source_errors_name_the_entry_and_the_fix() -> None:
    assert parse_static_sources("door=http://10.0.0.7/cgi?res=hi&x=1", DEFAULT) == {
        "door": "http://10.0.0.7/cgi?res=hi&x=1"}  # only the first "=" separates the id
    for bad, message in [("yard=http://10.0.0.8/ Bad=http://10.0.0.9/", "CAMHUB_SOURCES: entry 2: the id must"),
                         ("door=", "CAMHUB_SOURCES: door: expected id="),
                         ("door=http://8.8.8.8/", "CAMHUB_SOURCES: door: url_not_allowed: 8.8.8.8 is outside "
                          "CAMHUB_ALLOWED_SOURCES (127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,"
                          "fc00::/7) (add its network to CAMHUB_ALLOWED_SOURCES)"),
                         ("door=ftp://10.0.0.7/", "CAMHUB_SOURCES: door: bad_url: not http or https")]:
        with pytest.raises(SettingsError) as info:
            parse_static_sources(bad, DEFAULT)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(SettingsError) as info:
        parse_static_sources("door=ftp://10.0.0.7/", DEFAULT)
    assert "add its network" not in str(info.value)  # the hint only where the network is the problem


def test_a_source_that_is_the_hub_itself_is_recognised() -> None:
    hub = HubAddresses("0.0.0.0", 8000)
    for url in ("http://127.0.0.1:8000/cameras/x/stream", "http://localhost:8000/", "http://[::1]:8000/",
                "http://[::ffff:127.0.0.1]:8000/", "http://cam.localhost:8000/", "http://LOCALHOST.:8000/"):
        assert hub.url_is_self(url), url
    assert not hub.url_is_self("http://127.0.0.1:8001/")  # another port: another service
    assert not hub.url_is_self("http://192.0.2.7:8000/")  # TEST-NET: not an address of this machine
    assert not hub.url_is_self("http://camera.lan:8000/")  # names are checked when they are resolved
    assert HubAddresses("", 80).url_is_self("http://127.0.0.1/") and HubAddresses("::", 443).url_is_self(
        "https://127.0.0.1/")
    lan = HubAddresses("192.0.2.50", 8000)  # bound to one address: only it (and loopback) is the hub
    assert lan.url_is_self("http://192.0.2.50:8000/") and lan.is_self("127.0.0.1", 8000)
    assert not lan.is_self("192.0.2.51", 8000) and not lan.is_self("0.0.0.0", 8001)
    assert hub.is_self("0.0.0.0", 8000)  # "every address" includes this machine
    assert hub.is_self(ipaddress.ip_address("::1"), 8000)  # as the resolver hands addresses over
