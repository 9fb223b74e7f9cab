"""``campaigns optouts``: the opt-out list, global and per sender session (add, remove, import
a number file, list, export). The claim reads the list, so a number added here while a
campaign runs is never sent (:mod:`campaigns.store.consent`).

Every entry keeps its source and time, the proof Brazil's LGPD asks for: ``add`` records the
operator, ``import`` the import, both with the ``--note`` given. Numbers are masked in every
output unless ``--full-numbers`` (``list``, ``export``), as everywhere in this command line.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer
from rich.text import Text

from campaigns import consent
from campaigns.cli import options
from campaigns.cli.app import app
from campaigns.cli.common import JSON_HELP, console, emit_json, new_table, open_store, when
from campaigns.cli.export import FORMAT_HELP, FULL_NUMBERS_HELP, pick_format, write_to
from campaigns.consent import GLOBAL_SCOPE, OptOutEntry
from campaigns.errors import CampaignError, EmptyNumberList, InvalidNumberFile, NoValidNumber
from campaigns.masking import mask_phone
from campaigns.numbers import normalize, read_number_file
from campaigns.rows import ExportFormat, iso
from campaigns.store import CampaignStateManager

COLUMNS = ("phone", "scope", "source", "detail", "via_session", "created_at")
"""Of ``list --json`` and ``export``. ``scope`` is ``global`` or the session's name."""

_PAGE = 5000
_CSV_DELIMITERS = ",;\t"
"""read_number_file's: a first line holding one of them makes the file a CSV with a header."""


class NotOnTheList(CampaignError):
    """The number is not on that opt-out list; nothing was removed."""


optouts_app = typer.Typer(
    help="The opt-out list: numbers no campaign sends to, globally or through one session.",
    no_args_is_help=True,
)


def _note(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """``--note``, checked as the store checks an entry's detail, naming the option."""
    if value is None or ctx.resilient_parsing:
        return value
    return consent.legal_note(value, options.option_name(param))


PHONE = Annotated[
    str,
    typer.Argument(
        metavar="PHONE",
        help="The number: E.164 (+5511999991234) or national in DEFAULT_REGION.",
        show_default=False,
    ),
]
SESSION = Annotated[
    str | None,
    typer.Option(
        "--session",
        "-s",
        help="Only for this sender session (default: global, every session).",
        callback=options.name,
    ),
]
NOTE = Annotated[
    str | None,
    typer.Option(
        "--note",
        help="Why, or how the person asked (kept with the entry as its proof).",
        callback=_note,
    ),
]
SCOPE_SESSION = Annotated[
    str | None,
    typer.Option("--session", "-s", help="Only this session's entries.", callback=options.name),
]
SCOPE_GLOBAL = Annotated[
    bool, typer.Option("--global", help="Only the global entries (default: every entry).")
]
FULL_NUMBERS = Annotated[bool, typer.Option("--full-numbers", help="Do not mask the numbers.")]
AS_JSON = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def list_name(session: str | None) -> str:
    return f"the opt-out list of session {session}" if session else "the global opt-out list"


class Scope(NamedTuple):
    """Which entries: one session's, the global ones, or (neither) every entry."""

    session: str | None
    only_global: bool

    @property
    def everything(self) -> bool:
        return self.session is None and not self.only_global


def _scope(session: str | None, only_global: bool) -> Scope:
    if session is not None and only_global:
        raise typer.BadParameter("give --session or --global, not both", param_hint="--global")
    return Scope(session, only_global)


def _entries(store: CampaignStateManager, scope: Scope, page: int) -> Iterator[OptOutEntry]:
    """The entries of ``scope`` in the order they were added. A session with no entry that
    is not a session either says so (a removed session's entries stay listed by its name)."""
    entries = store.iter_optouts(scope.session, only_global=scope.only_global, page=page)
    first = next(entries, None)
    if first is None:
        if scope.session is not None:
            store.get_session(scope.session)  # raises UnknownSession for a name nobody knows
        return iter(())
    return itertools.chain((first,), entries)


def _values(entry: OptOutEntry, full_numbers: bool) -> tuple[Any, ...]:
    """An entry as :data:`COLUMNS` values."""
    return (
        entry.phone if full_numbers else mask_phone(entry.phone),
        entry.scope,
        entry.source,
        entry.detail,
        entry.via_session,
        iso(entry.created_at),
    )


def entry_lines(path: Path, positions: Sequence[int]) -> list[int]:
    """The file line of each entry position (1-based, as :class:`ImportResult` counts
    entries), by read_number_file's rules: entries are the non-blank lines, after the
    header line of a CSV. Read again only when the import named invalid entries, and only
    up to the last of them."""
    wanted = set(positions)
    found: dict[int, int] = {}
    is_csv: bool | None = None
    entry = 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if is_csv is None:
                is_csv = any(d in line for d in _CSV_DELIMITERS)
                if is_csv:
                    continue  # the header
            entry += 1
            if entry in wanted:
                found[entry] = number
                if len(found) == len(wanted):
                    break
    return [found.get(p, p) for p in positions]


@optouts_app.command("add")
def add(phone: PHONE, session: SESSION = None, note: NOTE = None, as_json: AS_JSON = False) -> None:
    """Put a number on the list (source: operator). From then on no campaign sends to it,
    including campaigns already running; a number already listed keeps its first entry."""
    with open_store() as store:
        added = store.add_optout(phone, session=session, detail=note)
        number = normalize(phone, store.settings.default_region) or phone
    shown = mask_phone(number)
    if as_json:
        emit_json({"phone": shown, "scope": session or GLOBAL_SCOPE, "added": added})
    elif added:
        console.print(f"{shown} added to {list_name(session)}", markup=False)
    else:
        console.print(
            f"{shown} is already on {list_name(session)} (its first entry stays)", markup=False
        )


@optouts_app.command("remove")
def remove(phone: PHONE, session: SESSION = None, as_json: AS_JSON = False) -> None:
    """Take a number off the list: its global entry, or with --session that session's
    entry. The number can be sent to again by new claims."""
    with open_store() as store:
        removed = store.remove_optout(phone, session=session)
        number = normalize(phone, store.settings.default_region) or phone
        if not removed:
            if session is not None:
                store.get_session(session)  # an unknown name says so, not "not listed"
            hint = "" if session else " (without --session only the global entry goes)"
            raise NotOnTheList(
                f"{mask_phone(number)} is not on {list_name(session)}{hint}; nothing was removed"
            )
    shown = mask_phone(number)
    if as_json:
        emit_json({"phone": shown, "scope": session or GLOBAL_SCOPE, "removed": removed})
    else:
        console.print(f"{shown} removed from {list_name(session)}", markup=False)


@optouts_app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            help="Numbers: one per line, or a CSV with a phone column (as `campaigns send` "
            "reads them; national numbers in DEFAULT_REGION).",
            dir_okay=False,
            show_default=False,
        ),
    ],
    session: SESSION = None,
    note: NOTE = None,
    as_json: AS_JSON = False,
) -> None:
    """Add every valid number of a file (source: import), in one transaction: a file that
    cannot be read whole (not UTF-8, no phone column) leaves the list as it was."""
    if not file.is_file():
        said = "is not a file" if file.exists() else "does not exist"
        raise InvalidNumberFile(f"number file {str(file)!r} {said}; nothing was imported")
    with open_store() as store:
        try:
            result = store.import_optouts(read_number_file(file), session=session, detail=note)
        except InvalidNumberFile as exc:
            raise InvalidNumberFile(f"{exc}; nothing was imported") from None
    lines = entry_lines(file, result.invalid_examples) if result.invalid_examples else []
    where = f" (first on lines {', '.join(map(str, lines))})" if lines else ""
    if result.read == 0:
        raise EmptyNumberList(f"number file {str(file)!r} holds no number; nothing was imported")
    if result.added + result.already == 0:
        raise NoValidNumber(
            f"number file {str(file)!r} holds no valid number: {result.invalid:,} entries"
            f"{where}; nothing was imported"
        )
    if as_json:
        emit_json(
            {
                "file": str(file),
                "scope": session or GLOBAL_SCOPE,
                "read": result.read,
                "added": result.added,
                "already": result.already,
                "invalid": result.invalid,
                "invalid_lines": lines,
            }
        )
        return
    console.print(
        f"{result.read:,} entries read from {file}: {result.added:,} added to "
        f"{list_name(session)}, {result.already:,} already on it, {result.invalid:,} "
        f"invalid{where}",
        markup=False,
    )


@optouts_app.command("list")
def list_optouts(
    session: SCOPE_SESSION = None,
    only_global: SCOPE_GLOBAL = False,
    limit: Annotated[
        int, typer.Option(help="At most this many, oldest first.", callback=options.count())
    ] = 100,
    full_numbers: FULL_NUMBERS = False,
    as_json: AS_JSON = False,
) -> None:
    """List entries with their scope, source, note, the session a message came through, and
    when they were added (oldest first; `export` writes them all)."""
    scope = _scope(session, only_global)
    with open_store() as store:
        entries = list(itertools.islice(_entries(store, scope, min(limit + 1, _PAGE)), limit + 1))
    more = len(entries) > limit
    entries = entries[:limit]
    if as_json:
        emit_json([dict(zip(COLUMNS, _values(e, full_numbers), strict=True)) for e in entries])
        return
    if not entries:
        shown = (
            "the opt-out list" if scope.everything else list_name(scope.session)
        )
        console.print(f"no number on {shown}", markup=False)
        return
    table = new_table("phone", "scope", "source", "note", "via session", "added")
    table.columns[0].no_wrap = True  # six columns fold at 80: keep the number whole
    for entry in entries:
        table.add_row(
            entry.phone if full_numbers else mask_phone(entry.phone),
            entry.scope,
            entry.source,
            Text(entry.detail or "-"),  # Text: a note may hold [brackets]
            entry.via_session or "-",
            when(entry.created_at),
        )
    console.print(table)
    if more:
        console.print(f"the first {limit:,} shown; more with --limit, or all with `export`")


@optouts_app.command("export")
def export(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write to this file (default: standard output).", dir_okay=False
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat | None, typer.Option("--format", help=FORMAT_HELP + " [default: csv]")
    ] = None,
    session: SCOPE_SESSION = None,
    only_global: SCOPE_GLOBAL = False,
    full_numbers: Annotated[bool, typer.Option("--full-numbers", help=FULL_NUMBERS_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format jsonl.")] = False,
) -> None:
    """Export the list (number, scope, source, note, via session, time: the proof of each
    opt-out), streamed in flat memory."""
    chosen = pick_format(fmt, as_json)
    scope = _scope(session, only_global)
    with open_store() as store:
        entries = _entries(store, scope, _PAGE)  # an unknown session says so before any file
        rows = (_values(entry, full_numbers) for entry in entries)
        count = write_to(out, COLUMNS, rows, chosen)
    if out is not None:
        typer.echo(f"{count} opt-out entries written to {out}", err=True)


app.add_typer(optouts_app, name="optouts")
