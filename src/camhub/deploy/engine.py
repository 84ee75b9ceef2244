"""Deploy one board: probe it, plan by content hash, check the space, write in a safe order.

The order is the marker ``/camhub-deploying`` first, then libraries, the node package,
``settings.toml`` and ``code.py``; files camhub put there earlier that are no longer part of the
firmware are removed after ``code.py``, then the manifest is written and the marker removed. The old
``code.py`` imports the node package from ``lib/``, so on a board that reboots part-way (every
web-workflow write triggers an autoreload) or loses power, ``code.py`` sees the marker and waits
instead of running a half-new package; it boots once the marker is gone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from camhub.deploy.boards import camera_warning
from camhub.deploy.bundle import BoardFile, BundleError, FirmwareBuilder
from camhub.deploy.fleet import Board, Fleet
from camhub.deploy.manifest import (
    MANIFEST_PATH,
    MARKER_PATH,
    MAX_MANIFEST_BYTES,
    Manifest,
    Plan,
    make_plan,
    marker_bytes,
)
from camhub.deploy.render import RenderError, Template, merged_settings, render_settings
from camhub.deploy.targets import BoardInfo, Target, TargetError

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Receives progress events; the command turns them into a progress display."""

    def note(self, board_id: str, message: str) -> None: ...

    def planned(self, board_id: str, plan: Plan) -> None: ...

    def written(self, board_id: str, path: str, size: int) -> None: ...


@dataclass
class BoardResult:
    """The outcome for one board."""

    board: Board
    where: str
    ok: bool = False
    outcome: str = "failed"  # deployed, up to date, dry run, failed
    info: BoardInfo | None = None
    plan: Plan | None = None
    libraries: str = ""
    written: list[str] = field(default_factory=list)
    written_bytes: int = 0
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # things that will go wrong on the board
    error: str | None = None
    seconds: float = 0.0


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def space_needed(plan: Plan, present: dict[str, int], block: int) -> int:
    """Bytes the drive must have free: growth of every file, the largest temporary copy, the manifest."""

    def blocks(n: int) -> int:
        return -(-n // block) * block if n else 0

    growth = sum(max(0, blocks(f.size) - blocks(present.get(f.path, 0))) for f in plan.write)
    largest_tmp = max((blocks(f.size) for f in plan.write), default=0)
    manifest_room = 2 * blocks(16 * 1024)  # it and its temporary copy, generously (the marker fits too)
    return growth + largest_tmp + manifest_room


@contextlib.asynccontextmanager
async def _outcome(result: BoardResult, target: Target) -> AsyncIterator[None]:
    """Record the block's failure in ``result`` instead of raising it, then its duration; close ``target``."""
    started = time.monotonic()
    try:
        yield
    except (TargetError, BundleError, RenderError) as exc:
        result.error = str(exc)
    except Exception as exc:  # one board's surprise must not stop the others
        log.debug("board %s failed", result.board.id, exc_info=True)
        result.error = f"unexpected {exc.__class__.__name__}: {exc}"
    finally:
        await target.aclose()
        result.seconds = time.monotonic() - started
    result.ok = result.error is None
    if not result.ok:
        result.outcome = "failed"


async def deploy_board(
    board: Board,
    target: Target,
    builder: FirmwareBuilder,
    template: Template | None,
    fleet: Fleet,
    reporter: Reporter,
    dry_run: bool = False,
) -> BoardResult:
    """Deploy (or with ``dry_run`` only plan) one board; every failure ends up in the result, never raised."""
    result = BoardResult(board=board, where=target.where)
    async with _outcome(result, target):  # also on the early returns below: ok, outcome, seconds
        settings = BoardFile(
            "settings.toml", render_settings(template, fleet.defaults, board.settings, board.id, fleet.path.name)
        )
        try:
            info = await target.probe()
        except TargetError:
            if dry_run and builder.bundles is None:
                # Still show what a full deploy would write once the board is reachable.
                result.plan = make_plan(builder.for_major(None).files_with(settings), Manifest(), {})
            raise
        result.info = info
        free = "unknown free space" if info.free is None else f"{human_bytes(info.free)} free"
        reporter.note(board.id, f"CircuitPython {info.version} ({info.board_name}), {free}")
        warning = camera_warning(info, merged_settings(template, fleet.defaults, board.settings, board.id))
        if warning:
            result.warnings.append(warning)
            reporter.note(board.id, f"warning: {warning}")

        firmware = builder.for_major(info.major)
        result.libraries = firmware.source
        desired = firmware.files_with(settings)

        manifest, warning = Manifest.parse(await target.read(MANIFEST_PATH, MAX_MANIFEST_BYTES))
        if warning:
            reporter.note(board.id, warning)
        present = await target.sizes(sorted({f.path for f in desired} | set(manifest.files) | {MARKER_PATH}))
        plan = make_plan(desired, manifest, present)
        result.plan = plan

        needed = space_needed(plan, present, info.block_size)
        if plan.write and info.free is not None and needed > info.free:
            raise TargetError(
                f"not enough free space on {target.where}: this deploy needs {human_bytes(needed)}, the drive has "
                f"{human_bytes(info.free)} free (nothing was written; remove unused files from its lib/)"
            )
        reporter.planned(board.id, plan)
        final = Manifest({}, board.id, firmware.source).with_files(desired)
        if dry_run:
            result.outcome = "dry run"
            return result
        if not plan.changes and final.files == manifest.files and manifest.board == board.id:
            if plan.marker_left:  # an earlier deploy stopped after its last file: let the node boot
                await target.delete(MARKER_PATH)
                result.removed.append(MARKER_PATH)
                reporter.note(board.id, "removed the marker an interrupted deploy left")
            result.outcome = "up to date"
            return result

        # Before any other write: while the marker exists the node's code.py waits instead of importing a
        # half-new lib/ (and a deploy that stops part-way leaves it there).
        started = datetime.now(UTC).isoformat(timespec="seconds")
        await target.write(MARKER_PATH, marker_bytes(desired, started))

        # Forget the files about to change first: if the deploy stops half-way, the manifest on the
        # board claims only files whose content it really describes.
        changing = [f.path for f in plan.write] + plan.stale
        pending = manifest.without(changing)
        pending.board, pending.libraries = board.id, firmware.source
        if pending.files != manifest.files:
            await target.write(MANIFEST_PATH, pending.to_bytes())

        done: list[BoardFile] = []
        try:
            for file in plan.write:
                await target.write(file.path, file.data)
                done.append(file)
                result.written.append(file.path)
                result.written_bytes += file.size
                reporter.written(board.id, file.path, file.size)
        except TargetError:
            if done:
                # Keep what was verified so the next run does not send it again; best effort.
                try:
                    await target.write(MANIFEST_PATH, pending.with_files(done).to_bytes())
                except TargetError:
                    pass
            raise
        for path in plan.stale:
            await target.delete(path)
            result.removed.append(path)
        await target.write(MANIFEST_PATH, final.to_bytes())
        await target.delete(MARKER_PATH)
        result.outcome = "deployed"
    return result
