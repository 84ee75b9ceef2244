"""Which Host names the hub answers (DNS rebinding), as a table: Host header -> answered or refused.

In process: the hub's own ``HostCheck``, built as ``HttpServer`` builds it (the listen address and
``CAMHUB_ALLOWED_HOSTS``). The machine's name is the one part of the answer that comes from outside;
the table runs on a machine named ``Cams-Box.lan`` (a name with a domain, as a Debian box with one
has), so that its short name and ``<name>.local`` are told apart from its full name. The end-to-end
test (the real hub's 421 answers) is test_hub_hardening.py; the guard's counting, test_hub_http.py.
"""

from __future__ import annotations

import socket

import pytest

from camhub.hub.http import hostcheck
from camhub.hub.http.hostcheck import HostCheck

ALLOWED = "cams.example.org, *.home.arpa\tKitchen.Example.NET.  *.lan.example"

# (Host header, the address the request arrived on, answered?)
TABLE = [
    # no Host at all (HTTP/1.0): no browser sends such a request, so there is nothing to rebind
    (None, None, True),
    ("", None, True),
    # the allow list: exact names, any case, with a port, with a trailing dot; entries split by , space or tab
    ("cams.example.org", None, True),
    ("CAMS.Example.ORG:8000", None, True),
    ("cams.example.org.", None, True),
    (" cams.example.org ", None, True),
    ("kitchen.example.net", None, True),  # listed in capitals with a trailing dot
    ("door.lan.example", None, True),  # the last entry, after two spaces
    ("www.cams.example.org", None, False),  # a listed name is not a domain
    ("example.org", None, False),
    ("cams.example.org.evil.example", None, False),
    # *.home.arpa: the domain's hosts, at any depth; never the bare domain, never a name that merely ends alike
    ("door.home.arpa", None, True),
    ("door.home.arpa:8000", None, True),
    ("a.b.home.arpa", None, True),
    ("evilhome.arpa", None, False),
    ("home.arpa", None, False),
    ("home.arpa.evil.example", None, False),
    ("door.home.arpa.evil.example", None, False),
    # this machine: its full name, its short name, and the short name's mDNS name; nothing that merely contains them
    ("cams-box.lan", None, True),
    ("CAMS-BOX.LAN:8000", None, True),
    ("cams-box", None, True),
    ("cams-box:8000", None, True),
    ("cams-box.local", None, True),
    ("cams-box.local.:8000", None, True),
    ("cams-box.lan.local", None, False),
    ("cams-box.evil.example", None, False),
    ("evil-cams-box", None, False),
    ("lan", None, False),
    # loopback names (RFC 6761: every name under .localhost is loopback)
    ("localhost", None, True),
    ("LOCALHOST.:8000", None, True),
    ("localhost.localdomain", None, True),
    ("ip6-localhost", None, True),
    ("ip6-loopback", None, True),
    ("cam.localhost", None, True),
    ("evillocalhost", None, False),
    ("localhost.evil.example", None, False),
    # addresses: loopback always; the address the hub listens on; the one the request arrived on
    ("127.0.0.1", None, True),
    ("127.0.0.1:8000", None, True),
    ("127.9.9.9", None, True),
    ("[::1]", None, True),
    ("[::1]:8000", None, True),
    ("::1", None, True),
    ("192.0.2.10:8000", None, True),  # the listen address
    ("192.0.2.10", None, True),
    ("192.0.2.7", None, False),  # another address: not this hub's
    ("192.0.2.7", "192.0.2.7", True),  # ... unless the request arrived on it (listening on every address)
    ("192.0.2.7:8000", "::ffff:192.0.2.7", True),  # an IPv4 client on a dual-stack socket
    ("[::ffff:192.0.2.7]", "192.0.2.7", True),
    ("192.0.2.7", "192.0.2.8", False),
    ("192.0.2.7", "not-an-address", False),
    ("[fe80::1%25eth0]", "fe80::1%eth0", True),  # a scope in the Host header, as in a URL
    ("[fe80::1]", "fe80::1%eth0", True),  # the local address's scope is ignored
    ("[fe80::2]", "fe80::1%eth0", False),
    ("[::1", None, False),  # no closing bracket: not a name of this hub
    ("[::12", None, False),
]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostcheck.socket, "gethostname", lambda: "Cams-Box.lan.")


@pytest.mark.usefixtures("machine")
def test_host_names_answered_and_refused() -> None:
    check = HostCheck("192.0.2.10", ALLOWED)
    wrong = [(host, local, expected) for host, local, expected in TABLE if check.allowed(host, local) is not expected]
    assert not wrong, "\n".join(f"Host {h!r} (arrived on {a}): expected {'answered' if e else 'refused'}"
                                for h, a, e in wrong)


@pytest.mark.usefixtures("machine")
def test_every_refusal_is_counted_once_and_nothing_else() -> None:
    check = HostCheck("127.0.0.1", ALLOWED)
    for host in ("evilhome.arpa", "192.0.2.99", "cams.example.org", "127.0.0.1", None, "[::1"):
        check.allowed(host, "127.0.0.1")
    assert check.refused == 3  # a name, an address and a malformed Host; the rest were answered


@pytest.mark.usefixtures("machine")
def test_a_star_switches_the_check_off() -> None:
    check = HostCheck("127.0.0.1", "cams.example.org *")
    assert check.any and check.allowed("rebind.attacker.example") and check.allowed("192.0.2.99", "127.0.0.1")
    assert check.refused == 0
    assert not HostCheck("127.0.0.1", "*.home.arpa").any  # a wildcard entry is not "everything"


@pytest.mark.usefixtures("machine")
def test_without_an_allow_list_only_the_hubs_own_names_pass() -> None:
    check = HostCheck("0.0.0.0", "")
    assert not check.any
    assert [check.allowed(h) for h in ("cams-box", "cams-box.local", "localhost", "door.home.arpa", "example.org")] \
        == [True, True, True, False, False]
    assert check.allowed("0.0.0.0:8000")  # the listen address, however unusual a Host it is


def test_a_machine_without_a_name_adds_no_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostcheck.socket, "gethostname", lambda: "")
    check = HostCheck("127.0.0.1")
    assert not check.allowed(".local") and not check.allowed("local") and check.allowed("localhost")


def test_this_machines_real_name_is_answered() -> None:
    name = socket.gethostname().rstrip(".")
    short = name.split(".")[0]
    check = HostCheck("127.0.0.1")
    assert check.allowed(name) and check.allowed(short) and check.allowed(f"{short}.local:8000")
