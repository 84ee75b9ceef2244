"""Hub settings: file + environment + flags, and the errors a user sees."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from camhub.hub.config import config_from
from camhub.hub.http.auth import FAILURE_LIMIT, Auth, load_key
from camhub.settings import SettingsError, load_settings


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('CAMHUB_HUB_PORT = 8100\nCAMHUB_PULL = "on_demand"\nCAMHUB_STALL_S = 7\n')
    values = load_settings(settings, {"CAMHUB_HUB_PORT": "8200", "HOME": "/x"})
    assert values["CAMHUB_HUB_PORT"] == "8200" and "HOME" not in values
    config = config_from(values, port=8300)
    assert (config.port, config.pull, config.stall_s) == (8300, "on_demand", 7.0)
    assert config.embedded_broker and not config.auth_required


@pytest.mark.parametrize("values,message", [
    ({"CAMHUB_HUB_PORT": "eighty"}, "CAMHUB_HUB_PORT"),
    ({"CAMHUB_PULL": "sometimes"}, "pull must be one of"),
    ({"CAMHUB_HUB_HOST": "0.0.0.0"}, "CAMHUB_HUB_PASSWORD"),
    ({"CAMHUB_HUB_BROKER": "external"}, "CAMHUB_MQTT_HOST"),
    ({"CAMHUB_HA_DISCOVERY": "maybe"}, "ha_discovery must be one of"),
    ({"CAMHUB_HA_SNAPSHOT_S": "-1"}, "CAMHUB_HA_SNAPSHOT_S"),
    ({"CAMHUB_HA_DISCOVERY_PREFIX": "home/#"}, "CAMHUB_HA_DISCOVERY_PREFIX"),
    ({"CAMHUB_HA_DISCOVERY_PREFIX": "/ha"}, "CAMHUB_HA_DISCOVERY_PREFIX"),
    ({"CAMHUB_HUB_URL": "javascript:alert(1)"}, "CAMHUB_HUB_URL"),
])
def test_bad_settings_say_what_is_wrong(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        config_from(values)


def test_nested_tables_are_refused_like_circuitpython_would(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[section]\nKEY = 1\n")
    with pytest.raises(SettingsError, match="flat"):
        load_settings(settings, {})
    with pytest.raises(SettingsError, match="no such settings file"):
        load_settings(tmp_path / "missing.toml", {})


def test_open_beyond_loopback_only_when_asked() -> None:
    config = config_from({"CAMHUB_HUB_HOST": "0.0.0.0", "CAMHUB_AUTH": "off"})
    assert not config.auth_required
    config = config_from({"CAMHUB_HUB_HOST": "0.0.0.0", "CAMHUB_HUB_PASSWORD": "pw"})
    assert config.auth_required


def test_view_tokens_open_one_camera_only(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    assert load_key(tmp_path) == key and (tmp_path / "token.key").stat().st_mode & 0o777 == 0o600
    auth = Auth(True, "admin", "pw", key)
    assert auth.check("Basic YWRtaW46cHc=") is None  # admin:pw
    assert auth.check("Basic YWRtaW46cHg=") == "bad_credentials"
    assert auth.check("Basic !!notbase64") == "bad_credentials"
    token = auth.view_token("door")
    assert auth.check(None, "door", token) is None
    assert auth.check(None, "yard", token) == "bad_token"
    assert auth.check(None, None, token) == "bad_token"


@pytest.mark.parametrize("host", ["hub.lan", "camhub", "::", "0.0.0.0", "192.168.1.20", "10.0.0.5", "fe80::1",
                                  "2001:db8::7", "localhost.example.com"])
def test_every_address_beyond_loopback_demands_a_password(host: str) -> None:
    with pytest.raises(SettingsError, match="CAMHUB_HUB_PASSWORD"):
        config_from({"CAMHUB_HUB_HOST": host})
    assert config_from({"CAMHUB_HUB_HOST": host, "CAMHUB_HUB_PASSWORD": "pw"}).auth_required


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_runs_open_by_default(host: str) -> None:
    assert not config_from({"CAMHUB_HUB_HOST": host}).auth_required


def test_refusals_are_counted_by_reason_and_guessing_is_throttled_per_address(tmp_path: Path) -> None:
    key = load_key(tmp_path / "state" / "camhub")  # a fresh machine: the parents do not exist yet
    auth = Auth(True, "admin", "pa:ss", key)
    good = "Basic " + base64.b64encode(b"admin:pa:ss").decode()  # the password itself holds a colon
    assert auth.check(good, client="10.0.0.1") is None
    assert auth.check("basic  " + good[6:], client="10.0.0.1") is None  # any-case scheme, any spaces (RFC 7235)
    assert auth.check(None, client="10.0.0.1") == "no_credentials"  # a browser's first request
    assert auth.check(None, "door", "\udcff", client="10.0.0.1") == "bad_token"  # undecodable: a 401, no crash
    assert auth.check("Basic " + base64.b64encode(b"admin:pa").decode(), client="10.0.0.1") == "bad_credentials"
    assert auth.failures == {"no_credentials": 1, "bad_token": 1, "bad_credentials": 1}
    for _ in range(FAILURE_LIMIT - 2):  # two failures so far from this address
        assert auth.check("Basic " + base64.b64encode(b"admin:guess").decode(), client="10.0.0.1")
    assert auth.check(good, client="10.0.0.1") == "throttled"  # even the right password, for a while
    assert auth.check(None, client="10.0.0.1") == "throttled"
    assert auth.check(good, client="10.0.0.2") is None  # other addresses are not held up
    for _ in range(FAILURE_LIMIT + 5):  # asking without credentials is no guess: never throttled
        assert auth.check(None, client="10.0.0.3") == "no_credentials"
    assert auth.check(good, client="10.0.0.3") is None
    assert auth.check(good, client="10.0.0.1") == "throttled"  # still, for the same address
    assert auth.failures["bad_credentials"] == FAILURE_LIMIT - 1 and auth.failures["throttled"] == 3


def test_settings_files_read_like_the_board_and_errors_name_the_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('CIRCUITPY_WIFI_SSID = "Café"\nCAMHUB_MOTION = true\nCAMHUB_HA_DISCOVERY = false\n'
                        'CAMHUB_FPS = 7\n', encoding="utf-8")
    monkeypatch.setenv("CAMHUB_FPS", "9")
    monkeypatch.setenv("HOME_NOT_OURS", "x")
    # the process environment overrides the file
    assert load_settings(settings) == {"CIRCUITPY_WIFI_SSID": "Café", "CAMHUB_MOTION": "1",
                                       "CAMHUB_HA_DISCOVERY": "0", "CAMHUB_FPS": "9"}
    assert load_settings(None)["CAMHUB_FPS"] == "9" and "CIRCUITPY_WIFI_SSID" not in load_settings(None)
    for text, words in [("KEY = = 1\n", "not valid TOML"), ("[wifi]\nSSID = 1\n", "wifi must be a string or a "
                                                                                 "number .* not dict")]:
        settings.write_text(text)
        with pytest.raises(SettingsError, match=f"^{settings}: {words}"):
            load_settings(settings, {})
    settings.write_bytes(b"CAMHUB_NODE_NAME = \"\xff\"\n")
    with pytest.raises(SettingsError, match=f"^{settings}: not UTF-8 text"):
        load_settings(settings, {})


def test_the_hub_url_handed_to_home_assistant() -> None:
    assert config_from({}).hub_url == "http://127.0.0.1:8000"
    assert config_from({"CAMHUB_HUB_URL": "https://cams.example.org/"}).hub_url == "https://cams.example.org"
    wildcard = config_from({"CAMHUB_HUB_HOST": "0.0.0.0", "CAMHUB_AUTH": "off", "CAMHUB_HUB_PORT": "8100"})
    assert wildcard.hub_url == f"http://{socket.gethostname()}:8100"  # never 0.0.0.0, which reaches nothing
    assert config_from({"CAMHUB_HUB_HOST": "::1"}).hub_url == "http://[::1]:8000"
