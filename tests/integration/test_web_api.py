"""The operators' HTTP API over real loopback HTTP, on a real PostgreSQL test database: tokens
(missing, wrong, revoked: 401; read on an operator route: 403), every route's happy path and
its bad input (a JSON error with a code and a message, nothing created), keyset paging over a
few thousand rows, the CSV export streamed and parsed. Batches are recorded, not sent: the app
is given a recording enqueue (the workers are tested elsewhere)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from campaigns.state import CampaignStateManager
from campaigns.store.tokens import token_hash
from campaigns.web.app import create_app
from campaigns.web.server import running

Queued = list[tuple[int, int, str, float]]


@pytest.fixture
def queued() -> Queued:
    return []


@pytest.fixture
def api(store: CampaignStateManager, console_session: str, queued: Queued) -> Iterator[str]:
    def enqueue(campaign_id: int, batch: int, token: str, countdown: float) -> None:
        queued.append((campaign_id, batch, token, countdown))

    app = create_app(store, resume=lambda s, r: None, env={}, enqueue=enqueue)
    with running(app) as url:
        yield f"{url}/api/v1"


@pytest.fixture
def operator(store: CampaignStateManager) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.create_token('ops', 'operator')}"}


@pytest.fixture
def reader(store: CampaignStateManager) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.create_token('dashboard', 'read')}"}


def error_of(answer: requests.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


def numbers(count: int) -> list[str]:
    return [f"+5511{900000000 + i}" for i in range(count)]


def upload(api: str, headers: dict[str, str], text: str, **fields: Any) -> requests.Response:
    form = {"session": "sales", "message": "Oi", **fields}
    files = {"file": ("numbers.csv", text.encode(), "text/csv")}
    return requests.post(f"{api}/campaigns", headers=headers, data=form, files=files, timeout=30)


def create(api: str, headers: dict[str, str], count: int = 3, **body: Any) -> dict[str, Any]:
    answer = requests.post(
        f"{api}/campaigns", headers=headers, timeout=30,
        json={"session": "sales", "message": "Oi", "numbers": numbers(count), **body},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()
    return data


# ---- authentication ----


def test_requests_without_a_valid_token__get_401_with_a_json_error(
    api: str, store: CampaignStateManager, reader: dict[str, str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer cc_wrong"}, {"Authorization": "Basic eDp5"}):
        answer = requests.get(f"{api}/campaigns", headers=headers, timeout=5)
        error_of(answer, 401, "unauthorized")
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(f"{api}/campaigns", headers=reader, timeout=5).status_code == 200
    assert store.revoke_token("dashboard") is True
    error_of(requests.get(f"{api}/campaigns", headers=reader, timeout=5), 401, "unauthorized")


def test_a_read_token__reads_but_gets_403_on_operator_routes(
    api: str, reader: dict[str, str], operator: dict[str, str]
) -> None:
    campaign = create(api, operator)
    cid = campaign["id"]
    for path in (f"/campaigns/{cid}", f"/campaigns/{cid}/recipients", "/sessions"):
        assert requests.get(f"{api}{path}", headers=reader, timeout=5).status_code == 200, path
    for path in (
        "/campaigns",
        f"/campaigns/{cid}/pause",
        f"/campaigns/{cid}/cancel",
        f"/campaigns/{cid}/resume",
        f"/campaigns/{cid}/retry",
        "/sessions/sales/check",
    ):
        answer = requests.post(f"{api}{path}", headers=reader, json={}, timeout=5)
        error_of(answer, 403, "forbidden")  # fmt: skip
    for path in (f"/campaigns/{cid}/recipients", f"/campaigns/{cid}/export"):
        answer = requests.get(f"{api}{path}?full_numbers=true", headers=reader, timeout=5)
        error_of(answer, 403, "forbidden")


def test_webhooks_and_health__stay_outside_the_tokens(api: str) -> None:
    base = api.removesuffix("/api/v1")
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    assert requests.post(f"{base}/webhooks/evolution", data=b"{}", timeout=5).status_code == 200


def test_tokens_are_stored_hashed__the_raw_token_is_nowhere_in_the_database(
    store: CampaignStateManager, database_url: str
) -> None:
    token = store.create_token("crm", "operator")
    assert token.startswith("cc_") and len(token) > 40
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    finally:
        engine.dispose()
    assert rows and not any(token in cell for row in rows for cell in row)
    assert any(token_hash(token) in row for row in rows)
    assert store.token_scope(token) == "operator"
    assert "token_hash" not in store.list_tokens()[0]


# ---- campaigns ----


def test_create_by_json__is_201_with_the_status_view_and_its_first_batch_queued(
    api: str, operator: dict[str, str], store: CampaignStateManager, queued: Queued
) -> None:
    data = create(api, operator, 25, numbers=[*numbers(24), "not a number"], batch_size=10,
                  legal_note="signup form")  # fmt: skip
    assert data["status"] == "running" and data["total_numbers"] == 25
    assert data["ledger"]["invalid"] == 1 and data["total_batches"] == 3
    assert data["legal_basis"] == "consent" and data["legal_note"] == "signup form"
    assert [(c, b) for c, b, _, _ in queued] == [(data["id"], 1)]
    assert store.get_campaign(data["id"]).batch_size == 10


def test_create_by_upload__a_csv_with_variables(
    api: str, operator: dict[str, str], store: CampaignStateManager, queued: Queued
) -> None:
    rows = "\n".join(f"{n},Ana{i}" for i, n in enumerate(numbers(500)))
    answer = upload(api, operator, f"phone,name\n{rows}\n", message="Oi {name}",
                    variants=["Olá {name}"], dedupe_days="30")  # fmt: skip
    assert answer.status_code == 201, answer.text
    data = answer.json()
    assert data["total_numbers"] == 500 and data["columns"] == ["name"] and data["texts"] == 2
    assert data["duplicate_reasons"] == {}
    assert len(queued) == 1
    first = store.recipients(data["id"], limit=1)[0]
    assert first["variables"] == {"name": "Ana0"}


def test_bad_creations__are_json_errors_naming_the_field_and_create_nothing(
    api: str, operator: dict[str, str], store: CampaignStateManager, queued: Queued
) -> None:
    post = f"{api}/campaigns"
    cases: list[tuple[requests.Response, int, str, str]] = [
        (upload(api, operator, ""), 422, "invalid_number_file", "empty"),
        (upload(api, operator, "hello\nworld\n"), 422, "no_valid_number", "valid"),
        (upload(api, operator, "phone\n+5511900000001\n", message="Oi {name}"), 422,
         "invalid_message", "name"),
        (upload(api, operator, "+5511900000001\n", session="nobody"), 422, "unknown_session",
         "nobody"),
        (upload(api, operator, "+5511900000001\n", batch_size="many"), 422, "invalid_input",
         "batch_size"),
        (upload(api, operator, "+5511900000001\n", window_days="mon-fri"), 422,
         "invalid_argument", "window_hours"),
        (requests.post(post, headers=operator, data={"session": "sales"}, timeout=5), 422,
         "invalid_input", "file"),
        (requests.post(post, headers=operator, json={"session": "sales", "numbers": []},
                       timeout=5), 422, "invalid_argument", "message"),
        (requests.post(post, headers=operator, json={"session": "sales", "message": "Oi",
                       "numbers": []}, timeout=5), 422, "empty_number_list", "empty"),
        (requests.post(post, headers=operator, json={"session": "sales", "message": "Oi",
                       "numbers": [5511]}, timeout=5), 422, "invalid_input", "numbers[0]"),
        (requests.post(post, headers=operator, json={"message": "Oi", "numbers": ["1"]},
                       timeout=5), 422, "invalid_input", "session"),
        (requests.post(post, headers=operator, json={"session": "sales", "message": "Oi",
                       "numbers": ["+5511900000001"], "colour": "red"}, timeout=5), 422,
         "invalid_input", "colour"),
        (requests.post(post, headers=operator, json={"session": "sales", "message": "Oi",
                       "numbers": ["+5511900000001"], "legal_basis": "vibes"}, timeout=5), 422,
         "invalid_argument", "legal_basis"),
        (requests.post(post, headers={**operator, "Content-Type": "application/json"},
                       data=b"{not json", timeout=5), 422, "invalid_input", "JSON"),
        (requests.post(post, headers=operator, data=b"x", timeout=5), 415,
         "unsupported_media_type", "multipart"),
    ]  # fmt: skip
    for answer, status, code, named in cases:
        assert named in error_of(answer, status, code), (code, answer.text)
    assert store.list_campaigns() == [] and queued == []


def test_list_status_and_bad_ids(api: str, operator: dict[str, str]) -> None:
    first, second = create(api, operator), create(api, operator)
    listed = requests.get(f"{api}/campaigns", headers=operator, timeout=5).json()
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    one = requests.get(f"{api}/campaigns?limit=1&status=running&session=sales",
                       headers=operator, timeout=5).json()  # fmt: skip
    assert [c["id"] for c in one] == [second["id"]]
    status = requests.get(f"{api}/campaigns/{first['id']}", headers=operator, timeout=5).json()
    assert status["ledger"]["pending"] == 3 and status["eta_seconds"] >= 0
    assert [lane["session"] for lane in status["lanes"]] == ["sales"]
    assert "skipped_reasons" in status
    # nothing sent yet: no receipt, no rate (the figures of `campaigns status --json`)
    assert (status["delivery"]["sent"], status["delivery"]["delivered"]) == (0, 0)
    get = requests.get
    error_of(get(f"{api}/campaigns/999999", headers=operator, timeout=5), 404,
             "campaign_not_found")  # fmt: skip
    error_of(get(f"{api}/campaigns/abc", headers=operator, timeout=5), 422, "invalid_input")
    error_of(get(f"{api}/campaigns/0", headers=operator, timeout=5), 422, "invalid_argument")
    error_of(get(f"{api}/campaigns?status=bogus", headers=operator, timeout=5), 422,
             "invalid_argument")  # fmt: skip
    error_of(get(f"{api}/campaigns?limit=0", headers=operator, timeout=5), 422, "invalid_input")
    error_of(get(f"{api}/nothing", headers=operator, timeout=5), 404, "not_found")


def test_pause_resume_cancel__and_invalid_transitions(
    api: str, operator: dict[str, str], store: CampaignStateManager, queued: Queued
) -> None:
    cid = create(api, operator)["id"]
    url = f"{api}/campaigns/{cid}"
    paused = requests.post(f"{url}/pause", headers=operator, json={"reason": "lunch"}, timeout=5)
    assert paused.json() == {"id": cid, "status": "paused", "batch": None, "position": None}
    assert store.get_campaign(cid).interrupt_reason == "lunch"
    error_of(requests.post(f"{url}/pause", headers=operator, timeout=5), 409,
             "invalid_transition")  # fmt: skip
    resumed = requests.post(f"{url}/resume", headers=operator, timeout=5).json()
    assert resumed["status"] == "running" and resumed["batch"] == 1 and resumed["position"] == 1
    assert len(queued) == 2 and queued[-1][0] == cid
    assert requests.post(f"{url}/cancel", headers=operator, timeout=5).json()["status"] == (
        "cancelled"
    )
    assert str(store.get_campaign(cid).status) == "cancelled"
    error_of(requests.post(f"{url}/resume", headers=operator, timeout=5), 409,
             "invalid_transition")  # fmt: skip
    error_of(requests.post(f"{api}/campaigns/424242/pause", headers=operator, timeout=5), 404,
             "campaign_not_found")  # fmt: skip
    error_of(requests.post(f"{url}/pause", headers=operator, json={"why": 1}, timeout=5), 422,
             "invalid_input")  # fmt: skip


def test_retry__creates_the_follow_up_or_says_why_not(
    api: str, operator: dict[str, str], store: CampaignStateManager
) -> None:
    cid = create(api, operator, 4)["id"]
    url = f"{api}/campaigns/{cid}/retry"
    message = error_of(requests.post(url, headers=operator, timeout=5), 422, "invalid_argument")
    assert "nothing to retry" in message
    error_of(requests.post(url, headers=operator, json={"statuses": ["sent"]}, timeout=5), 422,
             "invalid_input")  # fmt: skip
    from sqlalchemy import text

    with store.engine.begin() as conn:  # two recipients failed, one with a code
        conn.execute(text("UPDATE campaign_recipients SET status = 'failed', error_code = "
                          "CASE position WHEN 1 THEN '131026' ELSE 'timeout' END "
                          "WHERE campaign_id = :c AND position <= 2"), {"c": cid})  # fmt: skip
    answer = requests.post(url, headers=operator, json={"error_code": "131026"}, timeout=5)
    assert answer.status_code == 201, answer.text
    follow_up = answer.json()
    assert follow_up["retry_of"] == cid and follow_up["recipients"] == 1
    assert follow_up["left_out"] == {"opted_out": 0, "already_retried": 0}


# ---- recipients and export ----


def test_recipients__keyset_pages_over_thousands_masked_by_default(
    api: str, operator: dict[str, str]
) -> None:
    cid = create(api, operator, 2500)["id"]
    url = f"{api}/campaigns/{cid}/recipients"
    seen: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = requests.get(url, headers=operator, params={"after": after, "limit": 1000},
                            timeout=10).json()  # fmt: skip
        seen += page["recipients"]
        after = page["next_after"]
    assert [r["position"] for r in seen] == list(range(1, 2501))
    assert "*" in seen[0]["phone"] and seen[0]["status"] == "pending"
    full = requests.get(url, headers=operator, params={"limit": 1, "full_numbers": "true"},
                        timeout=5).json()  # fmt: skip
    assert full["recipients"][0]["phone"] == numbers(1)[0]
    assert requests.get(url, headers=operator, params={"status": "sent"}, timeout=5).json() == {
        "recipients": [], "next_after": None,
    }  # fmt: skip
    bad: list[tuple[dict[str, Any], str]] = [
        ({"status": "bogus"}, "invalid_argument"), ({"after": -1}, "invalid_argument"),
        ({"limit": 0}, "invalid_argument"), ({"limit": 5000}, "invalid_argument"),
        ({"after": "x"}, "invalid_input"),
    ]  # fmt: skip
    for params, code in bad:
        answer = requests.get(url, headers=operator, params=params, timeout=5)
        error_of(answer, 422, code)
    error_of(requests.get(f"{api}/campaigns/99999/recipients", headers=operator, timeout=5),
             404, "campaign_not_found")  # fmt: skip


def test_recipients__by_number_full_or_last_digits_paged(
    api: str, operator: dict[str, str]
) -> None:
    ending = [f"+551198{k:03d}1234" for k in range(5)]  # five numbers ending with 1234
    answer = requests.post(
        f"{api}/campaigns", headers=operator, timeout=30,
        json={"session": "sales", "message": "Oi", "numbers": [*numbers(2500), *ending]},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    url = f"{api}/campaigns/{answer.json()['id']}/recipients"

    def ask(**params: Any) -> dict[str, Any]:
        found: dict[str, Any] = requests.get(url, headers=operator, params=params,
                                             timeout=5).json()  # fmt: skip
        return found

    exact = ask(number=numbers(2500)[1234], full_numbers="true")
    assert [(r["position"], r["phone"]) for r in exact["recipients"]] == [
        (1235, numbers(2500)[1234])
    ]
    assert [r["position"] for r in ask(number="0234")["recipients"]] == [235]
    # the last digits 1234: position 1235 and the five, paged two at a time, in input order
    found, after = [], 0
    while after is not None:
        page = ask(number="1234", limit=2, after=after)
        found += [r["position"] for r in page["recipients"]]
        after = page["next_after"]
    assert found == [1235, 2501, 2502, 2503, 2504, 2505]
    assert "*" in ask(number="1234")["recipients"][0]["phone"]  # masked by default
    assert ask(number="1234", status="sent") == {"recipients": [], "next_after": None}
    for bad in ("12", "12a4", "+55 11"):
        answer = requests.get(url, headers=operator, params={"number": bad}, timeout=5)
        assert "number" in error_of(answer, 422, "invalid_argument")


def test_export__streams_the_ledger_as_csv_and_jsonl(api: str, operator: dict[str, str]) -> None:
    from campaigns.cli.export import COLUMNS

    cid = create(api, operator, 3000, numbers=[*numbers(2999), "junk"])["id"]
    url = f"{api}/campaigns/{cid}/export"
    with requests.get(url, headers=operator, stream=True, timeout=30) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        assert "content-length" not in answer.headers  # streamed, not built in memory first
        text = b"".join(answer.iter_content(65536)).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3001
    assert rows[-1][COLUMNS.index("status")] == "invalid" and "*" in rows[1][2]
    lines = requests.get(url, headers=operator, params={"format": "jsonl", "status": "invalid"},
                         timeout=10).text.splitlines()  # fmt: skip
    assert [json.loads(line)["position"] for line in lines] == [3000]
    error_of(requests.get(url, headers=operator, params={"format": "xml"}, timeout=5), 422,
             "invalid_input")  # fmt: skip
    error_of(requests.get(url, headers=operator, params={"status": "x"}, timeout=5), 422,
             "invalid_argument")  # fmt: skip
    error_of(requests.get(f"{api}/campaigns/99999/export", headers=operator, timeout=5), 404,
             "campaign_not_found")  # fmt: skip


# ---- sessions and the page ----


def test_sessions__list_and_check(api: str, operator: dict[str, str]) -> None:
    listed = requests.get(f"{api}/sessions", headers=operator, timeout=5).json()
    assert [s["name"] for s in listed] == ["sales"] and listed[0]["gateway"] == "console"
    checked = requests.post(f"{api}/sessions/sales/check", headers=operator, timeout=10)
    assert checked.status_code == 200 and checked.json()["connected"] is True
    listed = requests.get(f"{api}/sessions", headers=operator, timeout=5).json()
    assert listed[0]["connection_status"] == "connected"
    error_of(requests.post(f"{api}/sessions/nobody/check", headers=operator, timeout=5), 404,
             "unknown_session")  # fmt: skip


def test_the_openapi_page__documents_the_api_with_its_auth(api: str) -> None:
    base = api.removesuffix("/api/v1")
    page = requests.get(f"{base}/openapi.json", timeout=5).json()
    paths = page["paths"]
    for path in (
        "/api/v1/campaigns",
        "/api/v1/campaigns/{campaign_id}/recipients",
        "/api/v1/campaigns/{campaign_id}/export",
        "/api/v1/sessions/{name}/check",
    ):
        assert path in paths, path  # fmt: skip
    create_body = paths["/api/v1/campaigns"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(create_body)
    assert "HTTPBearer" in page["components"]["securitySchemes"]
    assert requests.get(f"{base}/docs", timeout=5).status_code == 200
