"""Consent and content from the command line, against a real PostgreSQL (fresh database per
test): ``send`` with a legal basis, variants, spintax, variables checked against the list,
media by URL and the duplicate window; ``retry`` of the failed recipients as a follow-up; and
what ``status``, ``list`` and ``--json`` show of them. Bad input prints one line naming the
option and creates nothing. Sending itself (workers, the sandbox) is tested elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import Result

from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import as_json, cli_store, invoker, one_error_line

PACING = Pacing(batch_size=2, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Any:
    return invoker(stack_env)


@pytest.fixture
def store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, stack_env, "sales") as manager:
        yield manager


def created(result: Result) -> int:
    """The id `send` and `retry` print alone on stdout."""
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip())


def csv_file(tmp_path: Path, rows: list[tuple[str, str]], name: str = "list.csv") -> Path:
    path = tmp_path / name
    lines = ["phone,name", *(f"{phone},{value}" for phone, value in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def phones(count: int, start: int = 0) -> list[str]:
    return [f"+55119{10000000 + start + i}" for i in range(count)]


@pytest.fixture
def numbers_file(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join(phones(3)) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------- variants and variables


def test_send__variant_file_and_spintax_choose_a_text_per_recipient_in_the_ledger(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    names = csv_file(tmp_path, [(p, f"Ana{i}") for i, p in enumerate(phones(30))])
    variant = tmp_path / "variant.txt"
    variant.write_text("Boa tarde, {name|cliente}! Temos novidades.", encoding="utf-8")
    result = cli(
        "send", str(names), "-s", "sales", "-m", "{Olá|Oi|Bom dia} {name}!",
        "--variant-file", str(variant), "--legal-note", "opt-in at checkout, 2025-03",
    )  # fmt: skip
    cid = created(result)
    assert "legal basis consent" in result.stderr and "2 texts" in result.stderr
    labels = [r["variant"] for r in store.iter_recipients(cid)]
    assert len(labels) == 30 and all(labels)
    # variant 1 carries its spintax choice ("1:0", "1:1", "1:2"), variant 2 has none
    assert set(labels) <= {"1:0", "1:1", "1:2", "2"}
    assert "2" in labels and any(label.startswith("1:") for label in labels)
    data = as_json(cli("status", str(cid), "--json"))
    assert data["texts"] == 2 and data["columns"] == ["name"]
    assert data["legal_basis"] == "consent"
    assert data["legal_note"] == "opt-in at checkout, 2025-03"


def test_send__a_variable_the_list_lacks_is_refused_naming_it_and_nothing_created(
    cli: Any, store: CampaignStateManager, numbers_file: Path
) -> None:
    line = one_error_line(cli("send", str(numbers_file), "-s", "sales", "-m", "Olá {name}!"))
    assert "the message uses {name} but the list has no 'name' column" in line
    assert "nothing was created" in line
    assert store.list_campaigns() == []


def test_send__empty_values_are_refused_with_their_count_and_a_fallback_is_accepted(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    rows = list(zip(phones(4), ["Ana", "", "  ", "Bia"], strict=True))
    names = csv_file(tmp_path, rows)
    line = one_error_line(cli("send", str(names), "-s", "sales", "-m", "Olá {name}!"))
    assert "2 recipients have an empty 'name'" in line and "{name|cliente}" in line
    assert store.list_campaigns() == []
    cid = created(cli("send", str(names), "-s", "sales", "-m", "Olá {name|cliente}!"))
    assert store.get_campaign(cid).total_numbers == 4


def test_send__a_variant_with_a_syntax_error_is_refused_naming_the_variant(
    cli: Any, store: CampaignStateManager, numbers_file: Path
) -> None:
    line = one_error_line(
        cli("send", str(numbers_file), "-s", "sales", "-m", "Oi", "--variant", "Olá}")
    )
    assert line.startswith("error: variant 2 has a '}'")
    assert store.list_campaigns() == []


# ----------------------------------------------------------------------------- legal basis


def test_send__without_legal_basis_or_LEGAL_BASIS_is_refused(
    stack_env: dict[str, str], store: CampaignStateManager, numbers_file: Path
) -> None:
    env = {**os.environ, **stack_env}
    env.pop("LEGAL_BASIS", None)  # no deployment default: the campaign must say its basis
    command = [sys.executable, "-m", "campaigns.cli", "send", str(numbers_file), "-s", "sales",
               "-m", "Oi"]  # fmt: skip
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --legal-basis is required"), lines
    assert "LEGAL_BASIS" in lines[0] and "nothing was created" in lines[0]
    assert store.list_campaigns() == []
    given = [*command, "--legal-basis", "legitimate-interest", "--legal-note", "clientes ativos"]
    sent = subprocess.run(given, env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert "legal basis legitimate_interest" in sent.stderr
    campaign = store.get_campaign(int(sent.stdout.strip()))
    assert (campaign.legal_basis, campaign.legal_note) == ("legitimate_interest", "clientes ativos")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--legal-basis", "contract"],
            "--legal-basis must be one of consent, legitimate_interest",
        ),
        (["--legal-note", "x" * 2001], "--legal-note is 2001 characters; at most 2000"),
        (["--variant", "   "], "the --variant is empty"),
        (["--dedupe-days", "0"], "--dedupe-days must be a finite number of days above 0"),
        (["--dedupe-days", "nan"], "--dedupe-days must be a finite number of days"),
        (["--media-type", "gif"], "--media-type must be one of image, document, audio, video"),
        (["--media-filename", "a.pdf"], "--media-filename needs --media-url"),
        (["--media-url", "ftp://files.example/a.jpg"], "--media-url must be an http(s) URL"),
        (["--media-url", "https://files.example/render"], "give --media-type"),
        (
            ["--media-url", "https://files.example/a.gif", "--media-type", "image"],
            "give --media-mime",
        ),
        (
            ["--media-url", "https://files.example/a.jpg", "--media-filename", "a.jpg"],
            "--media-filename is for documents only, not image",
        ),
        (
            ["--media-url", "https://files.example/a.ogg"],
            "--media-url: gateway console sends audio without a caption",
        ),
    ],
)
def test_send__bad_consent_or_content_option_prints_one_line_naming_it(
    cli: Any, store: CampaignStateManager, numbers_file: Path, args: list[str], words: str
) -> None:
    assert words in one_error_line(cli("send", str(numbers_file), "-s", "sales", "-m", "Oi", *args))
    assert store.list_campaigns() == []


def test_send__a_variant_file_that_is_not_utf8_is_refused(
    cli: Any, store: CampaignStateManager, numbers_file: Path, tmp_path: Path
) -> None:
    latin = tmp_path / "v.txt"
    latin.write_bytes("Olá".encode("latin-1"))
    line = one_error_line(
        cli("send", str(numbers_file), "-s", "sales", "-m", "Oi", "--variant-file", str(latin))
    )
    assert "variant file" in line and "is not UTF-8" in line
    assert store.list_campaigns() == []


# ----------------------------------------------------------------------------------- media


class _Files(BaseHTTPRequestHandler):
    """``HEAD /<name>.<ext>``: 200 with a small Content-Length; ``/missing...`` 404."""

    def do_HEAD(self) -> None:
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Length", "2048")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_send__media_with_a_caption_and_without_one(
    cli: Any, store: CampaignStateManager, numbers_file: Path, files: str
) -> None:
    url = f"{files}/promo.jpg"
    captioned = cli(
        "send", str(numbers_file), "-s", "sales", "--media-url", url, "-m", "Veja a promoção",
    )  # fmt: skip
    cid = created(captioned)
    assert f"image {url}" in captioned.stderr
    data = as_json(cli("status", str(cid), "--json"))
    assert data["media"] == {"kind": "image", "url": url, "mime": "image/jpeg", "filename": None}
    assert data["message_length"] == len("Veja a promoção")

    document = f"{files}/tabela"
    bare = created(
        cli(
            "send", str(numbers_file), "-s", "sales", "--media-url", document,
            "--media-mime", "application/pdf", "--media-filename", "Tabela.pdf",
        )
    )  # fmt: skip
    campaign = store.get_campaign(bare)
    assert campaign.message == ""  # no caption
    assert campaign.media == {
        "kind": "document", "url": document, "mime": "application/pdf", "filename": "Tabela.pdf",
    }  # fmt: skip
    shown = cli("status", str(bare)).stdout
    assert "no caption" in shown and "'Tabela.pdf'" in shown


def test_send__media_whose_url_answers_an_error_is_refused(
    cli: Any, store: CampaignStateManager, numbers_file: Path, files: str
) -> None:
    line = one_error_line(
        cli("send", str(numbers_file), "-s", "sales", "--media-url", f"{files}/missing.jpg")
    )
    assert "answers HTTP 404" in line
    assert store.list_campaigns() == []


def test_send__without_message_or_media_is_a_usage_error(
    cli: Any, store: CampaignStateManager, numbers_file: Path
) -> None:
    result = cli("send", str(numbers_file), "-s", "sales")
    assert result.exit_code == 2
    assert "exactly one of --message and --message-file (or --media-url" in result.stderr


# ---------------------------------------------------------------------- duplicate window


def _mark(
    store: CampaignStateManager,
    cid: int,
    positions: list[int],
    status: str,
    code: str | None = None,
) -> None:
    """Give recipients an outcome by hand (a worker's record, without the worker)."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_recipients SET status = :status, error_code = :code, "
                "session_name = 'sales', finished_at = now() "
                "WHERE campaign_id = :cid AND position = ANY(:positions)"
            ),
            {"status": status, "code": code, "cid": cid, "positions": positions},
        )


def test_send__dedupe_days_skips_numbers_messaged_recently_and_says_how_many(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    earlier = store.create_campaign(phones(3), "Oi", "sales", pacing=PACING).id
    _mark(store, earlier, [1, 2], "sent")
    later = tmp_path / "later.txt"
    later.write_text("\n".join(phones(5)) + "\n", encoding="utf-8")
    result = cli("send", str(later), "-s", "sales", "-m", "Oi de novo", "--dedupe-days", "7")
    cid = created(result)
    assert "2 duplicates (2 messaged in the last 7 days)" in result.stderr
    data = as_json(cli("status", str(cid), "--json"))
    assert data["dedupe_days"] == 7.0
    assert data["duplicate_reasons"] == {"recently_messaged": 2}
    assert data["ledger"]["pending"] == 3
    assert "2: 2 messaged recently" in cli("status", str(cid)).stdout


# ----------------------------------------------------------------------------------- retry


def test_retry__creates_a_follow_up_with_exactly_the_failed_recipients_once(
    cli: Any, store: CampaignStateManager
) -> None:
    numbers = phones(6)
    cid = store.create_campaign(numbers, "Oi", "sales", pacing=PACING).id
    _mark(store, cid, [1, 3, 5], "failed", "131026")
    _mark(store, cid, [2], "failed", "131000")
    _mark(store, cid, [4], "unknown", "timeout")
    _mark(store, cid, [6], "sent")
    store.add_optout(numbers[4])  # position 5: failed, then opted out

    result = cli("retry", str(cid), "--error", "131026")
    follow_up = created(result)
    assert result.stdout.strip() == str(follow_up)  # the id alone, like send
    assert (
        f"campaign {follow_up} retries 2 recipients of campaign {cid} (failed with error "
        "131026); left out 1 opted out and 0 already retried"
    ) in result.stderr
    retried = store.recipients(follow_up)
    assert [r["phone"] for r in retried] == [numbers[0], numbers[2]]
    assert {r["status"] for r in retried} == {"pending"}

    # again: the numbers a follow-up holds are not retried twice; the other failure is
    second = as_json(cli("retry", str(cid), "--json"))
    assert second["retry_of"] == cid and second["recipients"] == 1
    assert second["left_out"] == {"opted_out": 1, "already_retried": 2}
    assert [r["phone"] for r in store.recipients(second["id"])] == [numbers[1]]
    line = one_error_line(cli("retry", str(cid)))
    assert f"nothing to retry in campaign {cid}" in line and "3 already in a follow-up" in line

    unknown = created(cli("retry", str(cid), "--status", "unknown", "--status", "failed"))
    assert [r["phone"] for r in store.recipients(unknown)] == [numbers[3]]
    assert store.get_campaign(unknown).retry_of == cid
    listed = cli("list").stdout
    assert f"{follow_up}←{cid}" in listed and "follow-up" in listed
    assert "follow-up" in cli("status", str(follow_up)).stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--status", "sent"], "--status must be failed or unknown"),
        (["--error", "a\nb"], "--error has a control character"),
        (["0"], "ID must be a whole number"),
    ],
)
def test_retry__bad_option_prints_one_line_naming_it(
    cli: Any, store: CampaignStateManager, args: list[str], words: str
) -> None:
    cid = store.create_campaign(phones(2), "Oi", "sales", pacing=PACING).id
    call = ["retry", *args] if args == ["0"] else ["retry", str(cid), *args]
    assert words in one_error_line(cli(*call))
    assert len(store.list_campaigns()) == 1


def test_retry__a_campaign_without_failures_has_nothing_to_retry(
    cli: Any, store: CampaignStateManager
) -> None:
    cid = store.create_campaign(phones(2), "Oi", "sales", pacing=PACING).id
    line = one_error_line(cli("retry", str(cid)))
    assert f"nothing to retry in campaign {cid}: 0 recipients failed" in line
    assert one_error_line(cli("retry", "424242")).startswith("error: No campaign has that id")


# ----------------------------------------------------------------------------------- status


def test_status__shows_consent_content_and_skipped_by_reason(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    names = csv_file(tmp_path, [(p, "Ana") for p in phones(4)])
    cid = created(
        cli(
            "send", str(names), "-s", "sales", "-m", "Oi {name}", "--variant", "Olá {name}",
            "--variant", "{Bom dia|Boa tarde|Boa noite}, {name}", "--dedupe-days", "30",
            "--legal-basis", "consent", "--legal-note", "form on site",
        )
    )  # fmt: skip
    _mark(store, cid, [1], "skipped", "opted_out")
    _mark(store, cid, [2, 3], "skipped", "131050")
    data = as_json(cli("status", str(cid), "--json"))
    expected = {
        "legal_basis": "consent", "legal_note": "form on site", "texts": 3,
        "columns": ["name"], "media": None, "dedupe_days": 30.0, "retry_of": None,
        "skipped_reasons": {"opted_out": 1, "131050": 2}, "duplicate_reasons": {},
    }  # fmt: skip
    assert {k: data[k] for k in expected} == expected
    assert data["ledger"]["skipped"] == 3
    shown = cli("status", str(cid)).stdout
    assert "consent — form on site" in shown
    assert "3 (the message and 2 variants)" in shown
    assert "3: 2 stopped marketing (131050), 1 on the opt-out list" in shown
    assert "last 30 days" in shown
    listed = as_json(cli("list", "--json"))[0]
    assert listed["legal_basis"] == "consent" and listed["texts"] == 3
