"""``campaigns optouts add|remove|import|list|export``, in process against a real PostgreSQL:
entries global and per session with their source, note and time, masked numbers unless
``--full-numbers``, ``--json``, and bad input (an invalid number, an unknown session, a missing
file, a file that is not UTF-8, ``--session`` with ``--global``) printing one line and leaving
the list as it was."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli.optouts import COLUMNS
from campaigns.consent import SOURCE_KEYWORD
from campaigns.masking import mask_phone
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import as_json, cli_store, invoker, one_error_line

NUMBERS = [f"+5511{980000000 + i}" for i in range(6)]


@pytest.fixture
def env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**stack_env, "DEFAULT_REGION": "BR"}


@pytest.fixture
def cli(env: dict[str, str]) -> Any:
    return invoker(env)


@pytest.fixture
def store(database_url: str, env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, env, "sales") as manager:
        yield manager


def listed(store: CampaignStateManager) -> list[tuple[str, str, str, str | None]]:
    return [(e.phone, e.scope, e.source, e.detail) for e in store.iter_optouts()]


# ---------------------------------------------------------------------------------- add


def test_add__global_and_per_session_with_note_masked_in_the_answer(
    cli: Any, store: CampaignStateManager
) -> None:
    added = cli("optouts", "add", "(11) 98000-0000", "--note", "asked by phone on 2026-12-01")
    per_session = as_json(cli("optouts", "add", NUMBERS[1], "--session", "sales", "--json"))
    again = cli("optouts", "add", NUMBERS[0])

    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == f"{mask_phone(NUMBERS[0])} added to the global opt-out list"
    assert NUMBERS[0] not in added.stdout
    assert per_session == {"phone": mask_phone(NUMBERS[1]), "scope": "sales", "added": True}
    assert again.exit_code == 0 and "already on the global opt-out list" in again.stdout
    assert listed(store) == [
        (NUMBERS[0], "global", "operator", "asked by phone on 2026-12-01"),
        (NUMBERS[1], "sales", "operator", None),
    ]
    assert store.is_opted_out(NUMBERS[1], "sales") and not store.is_opted_out(NUMBERS[1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["12345"], "phone '12345' is not a valid phone number"),
        ([NUMBERS[0], "--session", "nobody"], "No sender session has that name"),
        ([NUMBERS[0], "--session", ""], "--session must be a non-empty name"),
        ([NUMBERS[0], "--note", "x" * 2001], "--note is 2001 characters; at most 2000"),
    ],
)
def test_add__bad_input_prints_one_line_and_stores_nothing(
    cli: Any, store: CampaignStateManager, args: list[str], words: str
) -> None:
    line = one_error_line(cli("optouts", "add", *args))

    assert words in line
    assert store.count_optouts() == 0


# ---------------------------------------------------------------------------------- remove


def test_remove__the_global_entry_or_one_sessions(cli: Any, store: CampaignStateManager) -> None:
    store.add_optout(NUMBERS[0])
    store.add_optout(NUMBERS[0], session="sales")

    removed = cli("optouts", "remove", NUMBERS[0])
    by_session = as_json(cli("optouts", "remove", NUMBERS[0], "--session", "sales", "--json"))

    assert removed.exit_code == 0, removed.output
    assert f"{mask_phone(NUMBERS[0])} removed from the global opt-out list" in removed.stdout
    assert by_session == {"phone": mask_phone(NUMBERS[0]), "scope": "sales", "removed": 1}
    assert store.count_optouts() == 0


def test_remove__a_number_not_listed_an_unknown_session_or_a_bad_number(
    cli: Any, store: CampaignStateManager
) -> None:
    store.add_optout(NUMBERS[0], session="sales")

    not_global = one_error_line(cli("optouts", "remove", NUMBERS[0]))
    unknown = one_error_line(cli("optouts", "remove", NUMBERS[0], "--session", "nobody"))
    invalid = one_error_line(cli("optouts", "remove", "abc"))

    assert f"{mask_phone(NUMBERS[0])} is not on the global opt-out list" in not_global
    assert "without --session only the global entry goes" in not_global
    assert NUMBERS[0] not in not_global
    assert "No sender session has that name" in unknown
    assert "phone 'abc' is not a valid phone number" in invalid
    assert store.count_optouts() == 1


# ---------------------------------------------------------------------------------- import


def test_import__counts_what_it_added_and_names_the_lines_of_invalid_entries(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    store.add_optout(NUMBERS[0], source="import")  # from an earlier import
    path = tmp_path / "stop.csv"
    # line 1 the header, line 4 blank, lines 5 and 7 invalid, line 6 a repeat
    path.write_text(
        "name,phone\n"
        f"a,{NUMBERS[0]}\n"
        f"b,{NUMBERS[1]}\n"
        "\n"
        "c,not a number\n"
        f"d,{NUMBERS[1]}\n"
        "e,123\n"
        f"f,(11) 98000-0002\n"
    )

    result = cli("optouts", "import", str(path), "--note", "shop's paper list")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"6 entries read from {path}: 2 added to the global opt-out list, 2 already on it, "
        "2 invalid (first on lines 5, 7)"
    )
    assert listed(store) == [
        (NUMBERS[0], "global", "import", None),
        (NUMBERS[1], "global", "import", "shop's paper list"),
        (NUMBERS[2], "global", "import", "shop's paper list"),
    ]


def test_import__per_session_with_json_from_a_plain_list(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    path = tmp_path / "stop.txt"
    path.write_text(f"{NUMBERS[3]}\nnope\n{NUMBERS[4]}\n")

    data = as_json(cli("optouts", "import", str(path), "--session", "sales", "--json"))

    assert data == {
        "file": str(path),
        "scope": "sales",
        "read": 3,
        "added": 2,
        "already": 0,
        "invalid": 1,
        "invalid_lines": [2],
    }
    assert [(e.phone, e.scope) for e in store.iter_optouts("sales")] == [
        (NUMBERS[3], "sales"),
        (NUMBERS[4], "sales"),
    ]


def test_import__a_file_that_is_not_utf8_leaves_the_list_unchanged(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    store.add_optout(NUMBERS[0])
    path = tmp_path / "latin1.txt"
    # 6,000 valid entries first: the import has streamed a chunk of them into PostgreSQL
    # before the decoder meets the Latin-1 byte
    valid = "".join(f"+5511{990000000 + i}\n" for i in range(6000))
    path.write_bytes(valid.encode() + "José\n".encode("latin-1"))

    line = one_error_line(cli("optouts", "import", str(path)))

    assert "is not UTF-8" in line and "nothing was imported" in line
    assert listed(store) == [(NUMBERS[0], "global", "operator", None)]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist; nothing was imported"),
        ("", "holds no number; nothing was imported"),
        ("abc\n12\n", "holds no valid number: 2 entries (first on lines 1, 2)"),
        ("name,city\nAna,Recife\n", "has no phone column"),
    ],
)
def test_import__a_missing_empty_or_numberless_file_prints_one_line(
    cli: Any, store: CampaignStateManager, tmp_path: Path, content: str | None, words: str
) -> None:
    path = tmp_path / "stop.txt"
    if content is not None:
        path.write_text(content)

    line = one_error_line(cli("optouts", "import", str(path)))

    assert words in line
    assert store.count_optouts() == 0


def test_import__an_unknown_session_imports_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    path = tmp_path / "stop.txt"
    path.write_text(f"{NUMBERS[0]}\n")

    line = one_error_line(cli("optouts", "import", str(path), "--session", "nobody"))

    assert "No sender session has that name" in line
    assert store.count_optouts() == 0


# ---------------------------------------------------------------------------------- list


def filled(store: CampaignStateManager) -> None:
    store.add_optout(NUMBERS[0], detail="[asked] by phone")
    store.add_optout(NUMBERS[1], session="sales")
    store.add_optout(NUMBERS[2], source=SOURCE_KEYWORD, detail="SAIR", via_session="sales")


def test_list__masked_with_scope_source_note_via_session_and_time(
    cli: Any, store: CampaignStateManager
) -> None:
    filled(store)

    shown = cli("optouts", "list")
    data = as_json(cli("optouts", "list", "--json"))
    full = as_json(cli("optouts", "list", "--json", "--full-numbers"))

    assert shown.exit_code == 0, shown.output
    assert not any(n in shown.stdout for n in NUMBERS)
    for number in NUMBERS[:3]:
        assert mask_phone(number) in shown.stdout
    assert "[asked]" in shown.stdout and "SAIR" in shown.stdout  # Text: brackets kept
    assert [tuple(entry) for entry in data] == [COLUMNS] * 3
    assert [e["phone"] for e in data] == [mask_phone(n) for n in NUMBERS[:3]]
    assert [e["phone"] for e in full] == NUMBERS[:3]
    assert (data[2]["source"], data[2]["detail"], data[2]["via_session"]) == (
        SOURCE_KEYWORD,
        "SAIR",
        "sales",
    )
    assert all(e["created_at"] for e in data)


def test_list__filters_by_scope_and_limits(cli: Any, store: CampaignStateManager) -> None:
    filled(store)

    only_global = as_json(cli("optouts", "list", "--global", "--json"))
    only_sales = as_json(cli("optouts", "list", "--session", "sales", "--json", "--full-numbers"))
    limited = cli("optouts", "list", "--limit", "2")

    assert [e["scope"] for e in only_global] == ["global", "global"]
    assert [e["phone"] for e in only_sales] == [NUMBERS[1]]
    assert "the first 2 shown" in limited.stdout
    assert mask_phone(NUMBERS[2]) not in limited.stdout


def test_list__empty_unknown_session_and_bad_options(cli: Any, store: CampaignStateManager) -> None:
    assert "no number on the opt-out list" in cli("optouts", "list").stdout
    assert (
        "no number on the opt-out list of session sales"
        in cli("optouts", "list", "--session", "sales").stdout
    )
    assert "No sender session has that name" in one_error_line(
        cli("optouts", "list", "--session", "nobody")
    )
    assert "--limit must be" in one_error_line(cli("optouts", "list", "--limit", "0"))
    both = cli("optouts", "list", "--session", "sales", "--global")
    assert both.exit_code == 2, both.output
    assert "give --session or --global, not both" in both.stderr


# ---------------------------------------------------------------------------------- export


def test_export__csv_to_a_file_masked_unless_full_numbers(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    filled(store)
    out = tmp_path / "optouts.csv"

    written = cli("optouts", "export", "--out", str(out), "--full-numbers")
    masked = cli("optouts", "export", "--global")

    assert written.exit_code == 0, written.output
    assert f"3 opt-out entries written to {out}" in written.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["phone"], r["scope"], r["source"]) for r in rows] == [
        (NUMBERS[0], "global", "operator"),
        (NUMBERS[1], "sales", "operator"),
        (NUMBERS[2], "global", SOURCE_KEYWORD),
    ]
    assert rows[1]["detail"] == "" and rows[2]["via_session"] == "sales"
    assert masked.exit_code == 0, masked.output
    lines = list(csv.DictReader(io.StringIO(masked.stdout)))
    assert [r["phone"] for r in lines] == [mask_phone(NUMBERS[0]), mask_phone(NUMBERS[2])]


def test_export__jsonl_by_format_or_json_for_one_session(
    cli: Any, store: CampaignStateManager
) -> None:
    filled(store)

    by_format = cli("optouts", "export", "--format", "jsonl", "--session", "sales")
    by_flag = cli("optouts", "export", "--json", "--session", "sales")

    assert by_format.exit_code == 0, by_format.output
    assert by_format.stdout == by_flag.stdout
    [entry] = [json.loads(line) for line in by_format.stdout.splitlines()]
    assert entry["phone"] == mask_phone(NUMBERS[1]) and entry["scope"] == "sales"
    assert entry["detail"] is None and entry["created_at"]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--session", "nobody"], 1, "No sender session has that name"),
        (["--session", "sales", "--global"], 2, "give --session or --global, not both"),
        (["--format", "xml"], 2, "'xml' is not one of"),
        (["--format", "csv", "--json"], 2, "--json means --format jsonl"),
    ],
)
def test_export__bad_options_write_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path, args: list[str], code: int, words: str
) -> None:
    filled(store)
    out = tmp_path / "none.csv"

    result = cli("optouts", "export", "--out", str(out), *args)

    assert result.exit_code == code, result.output
    assert words in result.stderr and "Traceback" not in result.output
    assert not out.exists()
