"""Where a board's files go: its CIRCUITPY drive over USB, or CircuitPython's web workflow over HTTP.

Both targets write a file the same safe way: to a temporary name next to it, read it back and compare
its SHA-256, then rename it over the old file. A board that loses power or the network mid-deploy
keeps the old file, never half of the new one.

USB drive: a mounted CIRCUITPY directory. CircuitPython writes ``boot_out.txt`` there at every boot
(first line ``Adafruit CircuitPython 9.2.1 on 2024-11-20; <board> with <mcu>``, then
``Board ID:<board_id>``), so a directory without it is not a board's drive.

Web workflow (CircuitPython docs, ``docs/workflows.md``, "File REST API"): HTTP Basic auth with an
empty user name and ``CIRCUITPY_WEB_API_PASSWORD``; ``PUT /fs/<path>`` stores a file (201 created,
204 replaced), a path ending in ``/`` makes a directory (parents must exist: 404); ``GET /fs/<dir>/``
with ``Accept: application/json`` lists a directory; ``MOVE`` with ``X-Destination`` renames (412 if
the destination exists); ``DELETE`` removes. 401 wrong password, 403 no password set on the board,
409 the drive is mounted over USB (read-only to the web), 413/417 too large. ``/cp/version.json``
(no auth) names the CircuitPython version, ``board_name`` and ``board_id``; ``/cp/diskinfo.json``
(web API v2+; a list since v3) gives ``free``, ``block_size`` and ``writable`` (false while USB holds
the drive).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import quote, urlsplit

import aiohttp

TMP_SUFFIX = ".camhub-tmp"
VERSION = re.compile(r"CircuitPython (\d+)\.(\d+)\.(\d+)(\S*)")
MAX_JSON_BYTES = 256 * 1024
MIN_MAJOR = 9


class TargetError(Exception):
    """A board that cannot be deployed to, with a message that says why and what to do."""


@dataclass(frozen=True)
class BoardInfo:
    """What a target says about the board behind it."""

    version: str
    major: int
    board_name: str
    free: int | None  # bytes; None when the board cannot tell
    block_size: int
    board_id: str | None = None  # CircuitPython's board id (``board.board_id``), when the board says


def safe_path(path: str) -> str:
    """``path`` if it is a plain relative path on the drive; raise otherwise (paths may come from a board)."""
    p = PurePosixPath(path)
    if not path or "\\" in path or "\x00" in path or p.is_absolute() or ".." in p.parts or str(p) != path:
        raise TargetError(f"refusing unsafe path {path!r}")
    return path


def parse_version(text: str, where: str) -> tuple[str, int]:
    """The CircuitPython version and major number in ``text``; the board must run 9 or newer."""
    match = VERSION.search(text)
    if match is None:
        raise TargetError(f"{where} does not name a CircuitPython version: {text[:100]!r}")
    version = ".".join(match.group(1, 2, 3)) + match.group(4)
    major = int(match.group(1))
    if major < MIN_MAJOR:
        raise TargetError(
            f"the board runs CircuitPython {version}; camhub's firmware needs {MIN_MAJOR} or newer "
            "(update it from circuitpython.org first)"
        )
    return version, major


class Target(Protocol):
    """A board's file system."""

    where: str

    async def probe(self) -> BoardInfo: ...

    async def read(self, path: str, limit: int) -> bytes | None: ...

    async def sizes(self, paths: list[str]) -> dict[str, int]: ...

    async def write(self, path: str, data: bytes) -> None: ...

    async def delete(self, path: str) -> None: ...

    def location(self, path: str) -> str: ...

    async def aclose(self) -> None: ...


# ---- USB drive ---------------------------------------------------------------------------------


class UsbDrive:
    """A CIRCUITPY drive mounted on this PC. Blocking file calls run in a worker thread."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.where = str(self.root)

    def location(self, path: str) -> str:
        return str(self.root / safe_path(path))

    async def probe(self) -> BoardInfo:
        return await asyncio.to_thread(self._probe)

    def _probe(self) -> BoardInfo:
        root = self.root
        if not root.exists():
            raise TargetError(f"{root} does not exist: is the board plugged in and its CIRCUITPY drive mounted?")
        if not root.is_dir():
            raise TargetError(f"{root} is not a directory (a board's CIRCUITPY drive is)")
        boot_out = root / "boot_out.txt"
        if not boot_out.is_file():
            raise TargetError(
                f"{root} is not a CircuitPython drive: it has no boot_out.txt (CircuitPython writes one at every boot)"
            )
        try:
            lines = boot_out.read_text(encoding="utf-8", errors="replace").splitlines()[:10]
        except OSError as exc:
            raise TargetError(f"{boot_out}: cannot read it: {exc.strerror or exc}") from None
        line = lines[0] if lines else ""
        board_id = next((x.split(":", 1)[1].strip() for x in lines[1:] if x.startswith("Board ID:")), None)
        version, major = parse_version(line, str(boot_out))
        board_name = line.split(";", 1)[1].strip() if ";" in line else "unknown board"
        stat = os.statvfs(root)
        if stat.f_flag & os.ST_RDONLY:
            raise TargetError(f"{root} is mounted read-only (a boot.py may have given the drive to CircuitPython)")
        return BoardInfo(version, major, board_name, shutil.disk_usage(root).free, stat.f_frsize or 512,
                         board_id or None)

    async def read(self, path: str, limit: int) -> bytes | None:
        return await asyncio.to_thread(self._read, path, limit)

    def _read(self, path: str, limit: int) -> bytes | None:
        file = self.root / safe_path(path)
        try:
            with file.open("rb") as fh:
                data = fh.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"reading {file}: {exc.strerror or exc}") from None
        if len(data) > limit:
            raise TargetError(f"{file} is larger than {limit} bytes")
        return data

    async def sizes(self, paths: list[str]) -> dict[str, int]:
        return await asyncio.to_thread(self._sizes, paths)

    def _sizes(self, paths: list[str]) -> dict[str, int]:
        found = {}
        for path in paths:
            with contextlib.suppress(OSError):
                st = (self.root / safe_path(path)).stat()
                if not os.path.isdir(self.root / path):
                    found[path] = st.st_size
        return found

    async def write(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, path, data)

    def _write(self, path: str, data: bytes) -> None:
        final = self.root / safe_path(path)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # Read back what the drive holds, not what we meant to write.
            if hashlib.sha256(tmp.read_bytes()).digest() != hashlib.sha256(data).digest():
                tmp.unlink(missing_ok=True)
                raise TargetError(f"{final}: the file read back differs from what was written (failing drive?)")
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if exc.errno == 28:  # ENOSPC
                raise TargetError(f"{final}: the drive is full") from None
            raise TargetError(f"writing {final}: {exc.strerror or exc}") from None

    async def delete(self, path: str) -> None:
        await asyncio.to_thread(self._delete, path)

    def _delete(self, path: str) -> None:
        file = self.root / safe_path(path)
        try:
            file.unlink(missing_ok=True)
        except OSError as exc:
            raise TargetError(f"removing {file}: {exc.strerror or exc}") from None

    async def aclose(self) -> None:
        return None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every file system lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- web workflow ------------------------------------------------------------------------------


class WebWorkflow:
    """A board's web workflow file API over HTTP."""

    def __init__(
        self, url: str, password: str | None, timeout: float = 10.0, next_password: str | None = None
    ) -> None:
        self.base = url.rstrip("/")
        self.where = self.base
        self._password = password
        # The password the deployed settings.toml sets: the board may switch to it when it reloads
        # after that file is written, before code.py is.
        self._next_password = next_password if next_password != password else None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._dirs: set[str] = {""}  # directories known to exist ("" is the root)
        self._listings: dict[str, list[dict]] = {}  # read while planning, before anything is written

    def location(self, path: str) -> str:
        return f"{self.base}/fs/{safe_path(path)}"

    def _url(self, path: str, directory: bool = False) -> str:
        quoted = quote(path)
        return f"{self.base}/fs/{quoted}/" if directory and path else f"{self.base}/fs/{quoted}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_read=self._timeout),
            )
        return self._session

    def _auth(self) -> dict[str, str]:
        return {"Authorization": aiohttp.encode_basic_auth("", self._password or "")}

    async def _request(
        self, method: str, url: str, action: str, auth: bool = False, **kwargs
    ) -> tuple[int, bytes, str]:
        """One request: (status, body up to the JSON limit, content type). Network trouble → TargetError."""
        if not auth:
            return await self._send(method, url, action, **kwargs)
        headers = kwargs.pop("headers", {})
        answer = await self._send(method, url, action, headers={**headers, **self._auth()}, **kwargs)
        if answer[0] == 401 and self._next_password is not None:
            self._password, self._next_password = self._next_password, None
            answer = await self._send(method, url, action, headers={**headers, **self._auth()}, **kwargs)
        return answer

    async def _send(self, method: str, url: str, action: str, **kwargs) -> tuple[int, bytes, str]:
        limit = kwargs.pop("limit", MAX_JSON_BYTES)
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                body = await resp.content.read(limit + 1)
                if len(body) > limit:
                    raise TargetError(f"{action}: the board's answer is larger than {limit} bytes")
                return resp.status, body, resp.content_type
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise TargetError(
                f"web workflow at {self.base} did not answer within {self._timeout:g}s while {action} "
                "(is the board powered and on this network?)"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc.os_error or exc)
            raise TargetError(f"web workflow at {self.base} is unreachable ({reason}) while {action}") from None
        except aiohttp.ClientError as exc:
            raise TargetError(f"lost the connection to {self.base} while {action}: {exc.__class__.__name__}") from None

    def _fail(self, status: int, action: str) -> TargetError:
        if status == 401:
            return TargetError(
                f"wrong web-workflow password for {self.base} (HTTP 401): set password = \"...\" for this board "
                "in the fleet file, or the CIRCUITPY_WEB_API_PASSWORD its settings.toml has now"
            )
        if status == 403:
            return TargetError(
                f"{self.base} has no CIRCUITPY_WEB_API_PASSWORD set (HTTP 403), so its web workflow refuses file "
                "access: deploy to it once over USB"
            )
        if status == 409:
            return TargetError(
                f"{self.base}: the CIRCUITPY drive is mounted over USB, so the web workflow is read-only "
                "(HTTP 409): eject the drive on the computer it is plugged into, or deploy to that drive path"
            )
        if status in (413, 417):
            return TargetError(f"{action}: the board has no room for it (HTTP {status})")
        return TargetError(f"{action}: HTTP {status} from {self.base}")

    async def probe(self) -> BoardInfo:
        status, body, _ = await self._request("GET", f"{self.base}/cp/version.json", "reading /cp/version.json")
        if status != 200:
            raise TargetError(f"{self.base}/cp/version.json answered HTTP {status}: is this a CircuitPython board?")
        info = _json(body, f"{self.base}/cp/version.json")
        if not isinstance(info, dict):
            raise TargetError(f"{self.base}/cp/version.json is not a JSON object")
        version, major = parse_version(f"CircuitPython {info.get('version', '')}", f"{self.base}/cp/version.json")
        board_name = str(info.get("board_name") or info.get("board_id") or "unknown board")
        board_id = str(info["board_id"]) if info.get("board_id") else None

        free, block_size = None, 512
        status, body, _ = await self._request("GET", f"{self.base}/cp/diskinfo.json", "reading /cp/diskinfo.json")
        if status == 200:
            disks = _json(body, f"{self.base}/cp/diskinfo.json")
            disks = disks if isinstance(disks, list) else [disks]  # web API v2 answered one object
            root = next((d for d in disks if isinstance(d, dict) and d.get("root", "/") == "/"), None)
            if root is not None:
                if root.get("writable") is False:
                    raise self._fail(409, "checking the drive")
                free = _int(root.get("free"))
                block_size = _int(root.get("block_size")) or 512
        # Check the password before planning anything (the file API answers 401/403 for every path).
        await self._listing("")
        return BoardInfo(version, major, board_name, free, block_size, board_id)

    async def read(self, path: str, limit: int) -> bytes | None:
        status, body, _ = await self._request(
            "GET", self._url(safe_path(path)), f"reading {path}", auth=True, limit=limit
        )
        if status == 404:
            return None
        if status != 200:
            raise self._fail(status, f"reading {path}")
        return body

    async def _listing(self, directory: str) -> list[dict] | None:
        if directory in self._listings:
            return self._listings[directory]
        status, body, _ = await self._request(
            "GET", self._url(directory, directory=True), f"listing /{directory}",
            auth=True, headers={"Accept": "application/json"},
        )
        if status == 404:
            return None
        if status != 200:
            raise self._fail(status, f"listing /{directory}")
        entries = _json(body, f"listing of /{directory}")
        if not isinstance(entries, list):
            raise TargetError(f"{self.base}: listing of /{directory} is not a JSON list")
        self._listings[directory] = [e for e in entries if isinstance(e, dict)]
        return self._listings[directory]

    async def sizes(self, paths: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        by_dir: dict[str, list[str]] = {}
        for path in paths:
            by_dir.setdefault(_parent(safe_path(path)), []).append(path)
        for directory in sorted(by_dir):
            entries = await self._listing(directory)
            if entries is None:
                continue
            self._dirs.add(directory)
            files = {e.get("name"): e for e in entries}
            for path in by_dir[directory]:
                entry = files.get(PurePosixPath(path).name)
                if entry is not None and not entry.get("directory"):
                    found[path] = _int(entry.get("file_size")) or 0
        return found

    async def _ensure_dir(self, directory: str) -> None:
        if directory in self._dirs:
            return
        parent = _parent(directory)
        await self._ensure_dir(parent)
        status, _, _ = await self._request(
            "PUT", self._url(directory, directory=True), f"making /{directory}/", auth=True
        )
        if status not in (201, 204):
            raise self._fail(status, f"making /{directory}/")
        self._dirs.add(directory)

    async def write(self, path: str, data: bytes) -> None:
        safe_path(path)
        tmp = path + TMP_SUFFIX
        await self._ensure_dir(_parent(path))
        status, _, _ = await self._request(
            "PUT", self._url(tmp), f"writing {path}", data=data, expect100=True,
            auth=True, headers={"Content-Type": "application/octet-stream"},
        )
        if status not in (201, 204):
            raise self._fail(status, f"writing {path}")
        back = await self.read(tmp, len(data) + 1)
        if back is None or hashlib.sha256(back).digest() != hashlib.sha256(data).digest():
            with contextlib.suppress(TargetError):
                await self.delete(tmp)
            raise TargetError(f"{self.location(path)}: the file read back differs from what was sent")
        move = {"X-Destination": f"/fs/{quote(path)}"}
        status, _, _ = await self._request("MOVE", self._url(tmp), f"renaming {path}", auth=True, headers=move)
        if status == 412:  # the destination exists: MOVE never overwrites
            await self.delete(path)
            status, _, _ = await self._request("MOVE", self._url(tmp), f"renaming {path}", auth=True, headers=move)
        if status not in (201, 204):
            raise self._fail(status, f"renaming {path}")

    async def delete(self, path: str) -> None:
        url = self._url(safe_path(path))
        status, _, _ = await self._request("DELETE", url, f"removing {path}", auth=True)
        if status not in (204, 200, 404):
            raise self._fail(status, f"removing {path}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _parent(path: str) -> str:
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else parent


def _json(body: bytes, where: str) -> object:
    try:
        return json.loads(body)
    except ValueError:
        raise TargetError(f"{where} is not valid JSON") from None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def open_target(target: str, password: str | None, timeout: float, next_password: str | None = None) -> Target:
    """The target for a fleet entry: an http(s):// address is a web workflow, anything else a drive."""
    if urlsplit(target).scheme in ("http", "https"):
        return WebWorkflow(target, password, timeout, next_password)
    return UsbDrive(target)
