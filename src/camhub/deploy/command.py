"""``camhub deploy FLEET.toml``: the firmware, its libraries and each board's settings onto a fleet.

Boards are deployed concurrently; one failing board never stops the others. Progress shows files
and bytes per board (a live display on a terminal, plain lines otherwise), then a summary table.
Exit status: 0 when every board succeeded, 1 when any failed, 2 when the fleet file, the settings
template or the firmware cannot be used at all, or the boards' settings hold an unknown ``CAMHUB_*``
key (a dry run lists them, plans anyway and exits 2 too).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from camhub.deploy.bundle import BundleError, FirmwareBuilder, find_firmware
from camhub.deploy.engine import BoardResult, deploy_board, human_bytes
from camhub.deploy.fleet import Board, Fleet, FleetError, load_fleet
from camhub.deploy.manifest import MARKER_PATH, Plan
from camhub.deploy.render import RenderError, Template, known_keys, load_template, merged_settings, unknown_settings
from camhub.deploy.targets import open_target

PASSWORD_KEY = "CIRCUITPY_WEB_API_PASSWORD"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fleet", type=Path, metavar="FLEET.toml", help="the fleet file (see fleet.toml.example)")
    parser.add_argument(
        "--settings", type=Path, metavar="FILE",
        help="settings template every board's settings.toml starts from (default: settings.toml next to the "
        "fleet file, if there is one)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be written where; write nothing")
    parser.add_argument(
        "--only", action="append", metavar="ID", help="deploy only this board (repeat for several)"
    )
    parser.add_argument(
        "--bundle", type=Path, metavar="DIR",
        help="take libraries as .mpy from this CircuitPython library bundle (or circup's folder of bundles), "
        "matching each board's CircuitPython major version; default: .py from the installed packages",
    )
    parser.add_argument(
        "--firmware", type=Path, metavar="DIR",
        help="the firmware to deploy: a directory with code.py and camhub_node/ (default: the installed one)",
    )
    parser.add_argument("--jobs", type=int, default=8, metavar="N", help="boards deployed at once (default 8)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS",
        help="give up on a web-workflow board that does not answer for this long (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped or logged: wide enough that the summary table's rows never wrap.
        console = Console(highlight=False, width=max(console.width, 160))
    try:
        fleet = load_fleet(args.fleet)
        boards = fleet.select(args.only)
        template = _template(args.settings, fleet, console)
        builder = FirmwareBuilder(find_firmware(args.firmware), args.bundle)
    except (FleetError, RenderError, BundleError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    if args.jobs < 1 or args.timeout <= 0:
        console.print("[bold red]error:[/] --jobs and --timeout must be positive", markup=True)
        return 2
    # A misspelt key is never read (the node would only warn on its console): stop before any board
    # is touched, as for fleet-file mistakes and as the hub does with the same settings file.
    unknown = unknown_settings(template, fleet.defaults, boards, fleet.path.name, known_keys(builder.firmware.package))
    for line in unknown:
        console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    if unknown and not args.dry_run:
        console.print("nothing was written: fix or remove these settings (keys of your own: another prefix than "
                      "CAMHUB_), then deploy again", soft_wrap=True)
        return 2

    if args.dry_run:
        console.print(f"Dry run: nothing is written. Firmware from {builder.firmware}", soft_wrap=True)
    results = asyncio.run(_deploy_all(boards, fleet, template, builder, args, console))
    if args.dry_run:
        for result in results:
            _print_plan(console, result)
    _print_summary(console, results, args.dry_run)
    if unknown:
        console.print(f"[bold red]a deploy would stop before touching any board:[/] {len(unknown)} unknown "
                      "setting(s), listed at the top", soft_wrap=True)
        return 2
    return 0 if all(r.ok for r in results) else 1


def _template(path: Path | None, fleet: Fleet, console: Console) -> Template | None:
    if path is not None:
        return load_template(path)
    beside = fleet.path.parent / "settings.toml"
    if beside.is_file():
        return load_template(beside)
    console.print(
        f"note: no --settings and no settings.toml next to {fleet.path.name}: boards get only the fleet's "
        "[defaults] and their own settings (no Wi-Fi unless those set it)",
        soft_wrap=True,
    )
    return None


def _passwords(board: Board, fleet: Fleet, template: Template | None) -> tuple[str | None, str | None]:
    """(the password to use now, the one the rendered settings.toml sets): the fleet's ``password`` is
    the board's current one; without it the rendered CIRCUITPY_WEB_API_PASSWORD is both."""
    value = merged_settings(template, fleet.defaults, board.settings, board.id).get(PASSWORD_KEY)
    rendered = str(value) if value is not None else None
    return (board.password if board.password is not None else rendered), rendered


async def _deploy_all(
    boards: tuple[Board, ...], fleet: Fleet, template: Template | None, builder: FirmwareBuilder,
    args: argparse.Namespace, console: Console,
) -> list[BoardResult]:
    limit = asyncio.Semaphore(args.jobs)
    with ProgressReporter(console, boards) as reporter:

        async def one(board: Board) -> BoardResult:
            async with limit:
                password, next_password = _passwords(board, fleet, template)
                target = open_target(board.target, password, args.timeout, next_password)
                reporter.note(board.id, f"{'checking' if args.dry_run else 'deploying to'} {target.where}")
                result = await deploy_board(board, target, builder, template, fleet, reporter, args.dry_run)
                reporter.finished(result)
                return result

        return list(await asyncio.gather(*(one(b) for b in boards)))


class ProgressReporter:
    """Files and bytes per board: a live rich display on a terminal, plain lines otherwise."""

    def __init__(self, console: Console, boards: tuple[Board, ...]) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.counts: dict[str, list[int]] = {}
        if self.live:
            for board in boards:
                self.tasks[board.id] = self.progress.add_task(board.id, total=None, files="", status="waiting")

    def __enter__(self) -> ProgressReporter:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def _line(self, board_id: str, message: str) -> None:
        self.console.print(f"[{board_id}] {message}", markup=False, soft_wrap=True)

    def note(self, board_id: str, message: str) -> None:
        if self.live:
            self.progress.update(self.tasks[board_id], status=message)
        else:
            self._line(board_id, message)

    def planned(self, board_id: str, plan: Plan) -> None:
        self.counts[board_id] = [0, len(plan.write)]
        summary = (
            f"{len(plan.write)} file(s) to write ({human_bytes(plan.bytes_to_write)}), {len(plan.unchanged)} unchanged"
            + (f", {len(plan.stale)} to remove" if plan.stale else "")
        )
        if self.live:
            self.progress.update(
                self.tasks[board_id], total=max(plan.bytes_to_write, 1), completed=0 if plan.write else 1,
                files=f"0/{len(plan.write)} files", status=summary,
            )
        else:
            self._line(board_id, summary)

    def written(self, board_id: str, path: str, size: int) -> None:
        count = self.counts.setdefault(board_id, [0, 0])
        count[0] += 1
        if self.live:
            self.progress.update(
                self.tasks[board_id], advance=size, files=f"{count[0]}/{count[1]} files", status=path
            )
        else:
            self._line(board_id, f"wrote {path} ({human_bytes(size)}) [{count[0]}/{count[1]}]")

    def finished(self, result: BoardResult) -> None:
        text = result.outcome if result.ok else "FAILED"
        if self.live:
            task = self.tasks[result.board.id]
            if self.progress.tasks[task].total is None:  # never planned: stop the bar pulsing
                self.progress.update(task, total=1, completed=1 if result.ok else 0)
            self.progress.update(task, status=text)
        else:
            self._line(result.board.id, text if result.ok else f"FAILED: {result.error}")


def _print_plan(console: Console, result: BoardResult) -> None:
    board = result.board.id
    console.print(f"\n{board} → {result.where}", soft_wrap=True)
    if result.error:
        console.print(f"  cannot plan: {result.error}", soft_wrap=True)
        if result.plan is None:
            return
        console.print("  a full deploy would write:")
    plan = result.plan
    assert plan is not None
    target = open_target(result.where, None, 1.0)
    if plan.write or plan.stale:
        console.print(
            f"  write  {MARKER_PATH:<48} first: the node waits while it exists → {target.location(MARKER_PATH)}",
            soft_wrap=True,
        )
    for file in plan.write:
        console.print(
            f"  write  {file.path:<48} {human_bytes(file.size):>9}  sha256 {file.sha256[:12]}  → "
            f"{target.location(file.path)}",
            soft_wrap=True,
        )
    for path in plan.stale:
        console.print(f"  remove {path:<48} (deployed earlier, no longer part of the firmware)", soft_wrap=True)
    if plan.write or plan.stale:
        console.print("  write  camhub-manifest.json (content hashes of the files above)", soft_wrap=True)
        console.print(f"  remove {MARKER_PATH:<48} last: the node boots the new firmware", soft_wrap=True)
    elif plan.marker_left:
        console.print(f"  remove {MARKER_PATH:<48} (left by a deploy that stopped part-way)", soft_wrap=True)
    console.print(
        f"  {len(plan.write)} to write ({human_bytes(plan.bytes_to_write)}), {len(plan.unchanged)} unchanged",
        soft_wrap=True,
    )


def _print_summary(console: Console, results: list[BoardResult], dry_run: bool) -> None:
    table = Table(title="camhub deploy" + (" (dry run)" if dry_run else ""), title_justify="left")
    columns = ("board", "target", "CircuitPython", "result", "to write" if dry_run else "written", "unchanged", "time")
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index >= 4 else "left")
    for r in results:
        plan = r.plan
        if dry_run and plan is not None:
            written = f"{len(plan.write)} ({human_bytes(plan.bytes_to_write)})"
        else:
            written = f"{len(r.written)} ({human_bytes(r.written_bytes)})"
        table.add_row(
            r.board.id,
            r.where,
            r.info.version if r.info else "-",
            r.outcome if r.ok else "[bold red]FAILED[/]",
            written,
            str(len(plan.unchanged)) if plan else "-",
            f"{r.seconds:.1f} s",
        )
    console.print()
    console.print(table)
    sources: dict[str, list[str]] = {}
    for r in results:
        if r.libraries:
            sources.setdefault(r.libraries, []).append(r.board.id)
    for source, ids in sources.items():
        console.print(f"libraries ({', '.join(ids)}): {source}", soft_wrap=True, markup=False)
    for r in results:
        for warning in r.warnings:
            console.print(f"[bold yellow]{escape(r.board.id)} warning:[/] {escape(warning)}", soft_wrap=True)
    failed = [r for r in results if not r.ok]
    for r in failed:
        console.print(f"[bold red]{escape(r.board.id)} failed:[/] {escape(r.error or '')}", soft_wrap=True)
    ok = len(results) - len(failed)
    console.print(f"{ok} of {len(results)} board(s) {'checked' if dry_run else 'deployed'}", soft_wrap=True)
