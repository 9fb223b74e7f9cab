"""campaigns.metrics: the helpers the engine calls never raise, their labels stay within fixed
sets (or the sessions table's names), and the exposition parses."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from campaigns import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_send_answered__counts_by_outcome_session_and_gateway_kind() -> None:
    class Waha:
        kind = "waha"

    before = value("campaigns_messages_total", outcome="sent", session="s1", gateway="waha")
    count = value("campaigns_send_seconds_count", gateway="waha")
    metrics.send_answered("s1", Waha(), "sent", 0.2)
    assert value(
        "campaigns_messages_total", outcome="sent", session="s1", gateway="waha"
    ) == before + 1
    assert value("campaigns_send_seconds_count", gateway="waha") == count + 1


def test_labels__outside_their_sets_become_other_and_sessions_are_cut() -> None:
    long = "s" * 300
    metrics.send_answered(long, object(), "+5511999990000", -1.0)  # no kind, a phone number
    cut = "s" * metrics.SESSION_LABEL_MAX
    assert value("campaigns_messages_total", outcome="other", session=cut, gateway="other") >= 1
    metrics.waited("campaign 42", 3)
    metrics.recovered("someone", 2)
    metrics.receipt_applied("DELIVERED", "waha")
    metrics.receipt_applied("weird", "smtp")
    assert value("campaigns_waits_total", reason="other") >= 1
    assert value("campaigns_recoveries_total", trigger="other") >= 2
    assert value("campaigns_receipts_total", status="delivered", dialect="waha") >= 1
    assert value("campaigns_receipts_total", status="other", dialect="other") >= 1
    for family in REGISTRY.collect():
        for sample in family.samples:
            for label, text in sample.labels.items():
                if label != "le":  # a histogram's +Inf bucket
                    assert not text.startswith("+"), (family.name, label, text)
                assert len(text) <= metrics.SESSION_LABEL_MAX


def test_helpers__never_raise_into_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise OSError("no space left on device")

    for metric in (metrics.MESSAGES, metrics.PACING_LAG, metrics.WAITS, metrics.RECOVERIES,
                   metrics.RECEIPTS):  # fmt: skip
        monkeypatch.setattr(metric, "labels", broken)
    metrics.send_answered("s", object(), "sent", 1.0)
    metrics.pacing_lag("s", float("nan"))
    metrics.waited("window", 5)
    metrics.recovered("sweep")
    metrics.receipt_applied("read", "cloud")
    metrics.pacing_lag(object(), "not a number")  # type: ignore[arg-type]


def test_waits__count_and_add_the_announced_seconds() -> None:
    before = value("campaigns_wait_seconds_total", reason="capacity")
    metrics.waited("capacity", 12.5)
    assert value("campaigns_wait_seconds_total", reason="capacity") == before + 12.5


def test_lag_gate__times_the_request_leaving_against_the_slot() -> None:
    calls: list[int] = []

    def pacer_gate() -> bool:
        calls.append(1)
        return True

    gate = metrics.LagGate(pacer_gate, "lagged", 0.0)
    before = value("campaigns_pacing_lag_seconds_count", session="lagged")
    assert gate() is True and calls == [1]
    gate.observe()
    assert value("campaigns_pacing_lag_seconds_count", session="lagged") == before + 1


def test_exposition__parses_with_prometheus_own_parser() -> None:
    metrics.recovered("operator")
    families = {
        f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())
    }
    for name in ("campaigns_messages", "campaigns_send_seconds", "campaigns_pacing_lag_seconds",
                 "campaigns_waits", "campaigns_recoveries", "campaigns_receipts"):  # fmt: skip
        assert name in families, name
    assert families["campaigns_recoveries"].type == "counter"
    assert metrics.CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_clean__empties_the_directory_and_the_cli_says_how(tmp_path: Path) -> None:
    (tmp_path / "counter_7.db").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert metrics.main(["clean", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []
    assert metrics.main(["wipe"]) == 2


def test_worker_exporter__is_off_without_a_port_and_never_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(metrics.PORT_ENV, raising=False)
    assert metrics.serve_worker_metrics() is None
    monkeypatch.setenv(metrics.PORT_ENV, "not-a-port")
    assert metrics.serve_worker_metrics() is None
