"""A stand-in for a CircuitPython board's web workflow (its HTTP file API), backed by a directory.

Follows CircuitPython's documentation, ``docs/workflows.md`` ("Web" → "File REST API" and "/cp/"):
- Every ``/fs/`` request uses HTTP Basic auth with an empty user name and the board's
  ``CIRCUITPY_WEB_API_PASSWORD``: no password configured → ``403 Forbidden``; wrong or missing
  password → ``401 Unauthorized``.
- ``/fs/<directory>/`` (directory paths end in ``/``): ``GET`` with ``Accept: application/json`` lists
  ``name``, ``directory``, ``modified_ns``, ``file_size`` (404 missing); ``PUT`` makes it (201 created,
  204 exists, 404 missing parent); ``MOVE`` renames; ``DELETE`` removes it and its contents (204).
- ``/fs/<file>``: ``PUT`` stores the body (201 created, 204 overwritten, 404 missing parent,
  413 too large without ``Expect``, 417 too large when ``Expect: 100-continue`` was sent; the server
  answers ``100 Continue`` when it fits); ``GET`` returns it (404 missing); ``MOVE`` with
  ``X-Destination: /fs/<new path>`` renames (201; 404 source or destination parent missing;
  412 destination exists); ``DELETE`` (204; 404 missing).
- Any modification while USB has the drive → ``409 Conflict``; ``/cp/diskinfo.json`` then says
  ``"writable": false``.
- ``/cp/version.json`` (no auth) → ``web_api_version``, ``version``, ``build_date``, ``board_name``,
  ``mcu_name``, ``board_id`` (the board id used in code and on circuitpython.org), ``creator_id``,
  ``creation_id``, ``hostname``, ``port``, ``ip``;
  ``/cp/diskinfo.json`` (no auth, a list since web API version 3) → ``root``, ``free``,
  ``block_size``, ``writable``, ``total``.

Switches for the tests: ``usb_mounted`` (the 409 case), ``password`` (None: the 403 case),
``capacity`` (free space), ``fail_when(method, path)``: the board resets mid-request — the
connection closes with no answer, as when a board loses power or Wi-Fi — and ``corrupt_when(path)``:
the file is stored with its first byte flipped (failing flash, a corrupted transfer); and
``reload_password``: once a new ``settings.toml`` is in place the board answers to the
``CIRCUITPY_WEB_API_PASSWORD`` it sets (its web workflow restarted with the autoreload).
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import threading
import tomllib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

BLOCK = 512


class WebWorkflowBoard:
    """One simulated board's web workflow on 127.0.0.1 (a free port), its drive a local directory."""

    def __init__(
        self,
        root: Path,
        password: str | None = "passw0rd",
        version: str = "9.2.1",
        board_name: str = "Adafruit Camera",
        capacity: int = 4 * 1024 * 1024,
        board_id: str = "adafruit_esp32s3_camera",
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.version = version
        self.board_name = board_name
        self.board_id = board_id
        self.capacity = capacity
        self.usb_mounted = False
        self.fail_when: Callable[[str, str], bool] | None = None
        self.corrupt_when: Callable[[str], bool] | None = None  # flash that stores a file wrongly
        # The board reloads after a write and its web workflow restarts with the password the new
        # settings.toml sets (a password rotation).
        self.reload_password = False
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status); status 0 = connection dropped
        self._lock = threading.Lock()
        board = self

        class Handler(_Handler):
            pass

        Handler.board = board
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webworkflow", daemon=True)

    def __enter__(self) -> WebWorkflowBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    # -- helpers for the tests --
    def used(self) -> int:
        return sum(-(-p.stat().st_size // BLOCK) * BLOCK for p in self.root.rglob("*") if p.is_file())

    def free(self) -> int:
        return max(0, self.capacity - self.used())

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def modifications(self) -> list[tuple[str, str, int]]:
        """The requests that changed (or tried to change) the drive."""
        with self._lock:
            return [r for r in self.requests if r[0] in ("PUT", "MOVE", "DELETE")]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client closing a kept-alive connection is normal; anything else is a stand-in bug worth seeing.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    board: WebWorkflowBoard
    protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as the board's server
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    # -- plumbing --
    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain", headers=None) -> None:
        self.board.record(self.command, urlsplit(self.path).path, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: object) -> None:
        self._reply(200, json.dumps(obj).encode(), "application/json")

    def _drop(self) -> None:
        """The board resets: no answer, the connection just closes."""
        self.board.record(self.command, urlsplit(self.path).path, 0)
        self.close_connection = True

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _authorized(self) -> bool:
        if self.board.password is None:
            self._discard_body()
            self._reply(403, b"Forbidden: no CIRCUITPY_WEB_API_PASSWORD")
            return False
        expected = "Basic " + base64.b64encode(f":{self.board.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._discard_body()
            self._reply(401, b"Unauthorized", headers={"WWW-Authenticate": 'Basic realm="CircuitPython"'})
            return False
        return True

    def _fs_path(self, url_path: str) -> tuple[Path, bool] | None:
        """The local path for ``/fs/...`` and whether a directory was named; None outside the drive."""
        rel = unquote(url_path[len("/fs/"):])
        is_dir = rel == "" or rel.endswith("/")
        target = (self.board.root / rel).resolve()
        root = self.board.root.resolve()
        if target != root and root not in target.parents:
            return None
        return target, is_dir

    def _route(self) -> tuple[Path, bool] | None:
        path = urlsplit(self.path).path
        if self.board.fail_when is not None and self.board.fail_when(self.command, path):
            self._discard_body()
            self._drop()
            return None
        if not path.startswith("/fs/"):
            self._discard_body()
            self._reply(404, b"Not Found")
            return None
        if not self._authorized():
            return None
        mapped = self._fs_path(path)
        if mapped is None:
            self._discard_body()
            self._reply(404, b"Not Found")
            return None
        if self.command in ("PUT", "MOVE", "DELETE") and self.board.usb_mounted:
            self._discard_body()
            self._reply(409, b"Conflict: USB is active")
            return None
        return mapped

    def handle_expect_100(self) -> bool:
        # Reject a file that cannot fit before its body is sent (417), as the board does.
        length = int(self.headers.get("Content-Length") or 0)
        path = urlsplit(self.path).path
        if (
            self.command == "PUT"
            and path.startswith("/fs/")
            and not path.endswith("/")
            and self.board.password is not None
            and length > self.board.free()
        ):
            self._reply(417, b"Expectation Failed: too large")
            self.close_connection = True
            return False
        return super().handle_expect_100()

    # -- /cp/ and /fs/ --
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/cp/version.json":
            if self.board.fail_when is not None and self.board.fail_when("GET", path):
                return self._drop()
            major = int(self.board.version.split(".")[0])
            return self._json({
                "web_api_version": 4, "version": self.board.version, "build_date": "2024-11-20",
                "board_name": self.board.board_name, "mcu_name": "ESP32S3", "board_id": self.board.board_id,
                "creator_id": 0x0000239A, "creation_id": 0x00815800 + major, "hostname": "cpy-f57ce8",
                "port": self.board.port, "ip": "127.0.0.1",
            })
        if path == "/cp/diskinfo.json":
            return self._json([{
                "root": "/", "free": self.board.free(), "block_size": BLOCK,
                "writable": not self.board.usb_mounted, "total": self.board.capacity,
            }])
        mapped = self._route()
        if mapped is None:
            return
        target, is_dir = mapped
        if is_dir:
            if not target.is_dir():
                return self._reply(404, b"Not Found")
            entries = [
                {
                    "name": child.name,
                    "directory": child.is_dir(),
                    "modified_ns": child.stat().st_mtime_ns,
                    "file_size": 0 if child.is_dir() else child.stat().st_size,
                }
                for child in sorted(target.iterdir())
            ]
            if "application/json" in (self.headers.get("Accept") or ""):
                return self._json(entries)
            return self._reply(200, b"<html>directory listing</html>", "text/html")
        if not target.is_file():
            return self._reply(404, b"Not Found")
        return self._reply(200, target.read_bytes(), "application/octet-stream")

    def do_PUT(self) -> None:
        mapped = self._route()
        if mapped is None:
            return
        target, is_dir = mapped
        if not target.parent.is_dir():
            self._discard_body()
            return self._reply(404, b"Not Found: missing parent")
        if is_dir:
            self._discard_body()
            if target.is_dir():
                return self._reply(204)
            target.mkdir()
            return self._reply(201)
        length = int(self.headers.get("Content-Length") or 0)
        existed = target.is_file()
        if length > self.board.free() + (target.stat().st_size if existed else 0):
            self._discard_body()
            return self._reply(413, b"Payload Too Large")
        data = self.rfile.read(length)
        if data and self.board.corrupt_when is not None and self.board.corrupt_when(urlsplit(self.path).path):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        target.write_bytes(data)
        return self._reply(204 if existed else 201)

    def do_MOVE(self) -> None:
        mapped = self._route()
        if mapped is None:
            return
        source, _ = mapped
        destination = self.headers.get("X-Destination") or ""
        dest_mapped = self._fs_path(urlsplit(destination).path) if destination.startswith("/fs/") else None
        if not source.exists() or dest_mapped is None or not dest_mapped[0].parent.is_dir():
            return self._reply(404, b"Not Found")
        dest = dest_mapped[0]
        if dest.exists():
            return self._reply(412, b"Precondition Failed: destination in use")
        source.rename(dest)
        if self.board.reload_password and dest == self.board.root.resolve() / "settings.toml":
            self.board.password = tomllib.loads(dest.read_text()).get("CIRCUITPY_WEB_API_PASSWORD")
        return self._reply(201)

    def do_DELETE(self) -> None:
        mapped = self._route()
        if mapped is None:
            return
        target, _ = mapped
        if not target.exists():
            return self._reply(404, b"Not Found")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
        return self._reply(204)
