"""docs/cluster/haproxy.cfg, the HAProxy config the cluster tests run, is valid for Debian's HAProxy 2.6
as shipped and as the test bed runs it (its own hubs in place of the file's `server` lines)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.netbed import HAPROXY_CONFIG, with_servers

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy_check(path: Path) -> str:
    done = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_the_shipped_config_is_valid_without_warnings() -> None:
    output = haproxy_check(HAPROXY_CONFIG)
    assert "WARNING" not in output and "ALERT" not in output, output


def test_the_bed_runs_the_same_config_with_its_own_hubs(tmp_path: Path) -> None:
    shipped = HAPROXY_CONFIG.read_text()
    servers = [("hub1", "198.18.0.4", 8000), ("hub2", "198.18.0.9", 8001)]
    config = with_servers(shipped, "hubs", servers)
    (tmp_path / "haproxy.cfg").write_text(config)
    output = haproxy_check(tmp_path / "haproxy.cfg")
    assert "WARNING" not in output, output
    assert [line.split() for line in config.splitlines() if line.split()[:1] == ["server"]] == [
        ["server", "hub1", "198.18.0.4:8000", "check"], ["server", "hub2", "198.18.0.9:8001", "check"]]
    assert not_servers(config) == not_servers(shipped)  # everything else is the shipped file, line for line


def not_servers(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.split()[:1] != ["server"]]
