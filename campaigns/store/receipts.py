"""Store verbs of delivery receipts: apply a delivery's receipts to the ledger, park the ones
whose send is not recorded yet (and apply them when it is), drop old parked ones, and the
delivered/read figures. Set-based: a delivery is a few statements whatever its size, so a storm
of receipts costs a few round trips per webhook, not per receipt."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from campaigns import receipts as rc
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors

RECEIPT_LOCK_CLASS = 1013
"""The first key of the advisory locks that serialise receipts with the record of their sends
(the second is the hash of the message key); no other lock of this schema uses it."""

_NAMES = [rc.SENT, rc.DELIVERED, rc.READ, rc.PLAYED]  # the ranks 1..4 of campaigns.receipts


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    """What one delivery's receipts did: ``applied`` ledger rows moved (forward, or sent to
    failed), ``unchanged`` matched receipts that moved nothing (duplicates, late or behind),
    ``pending`` receipts parked for a send not recorded yet."""

    applied: int
    unchanged: int
    pending: int


def lock_keys(conn: Connection, keys: Iterable[str]) -> None:
    """Take the advisory locks of these message keys for the transaction (one statement)."""
    wanted = sorted(set(keys))
    if wanted:
        conn.execute(
            queries.LOCK_RECEIPT_KEYS, {"lock_class": RECEIPT_LOCK_CLASS, "keys": wanted}
        ).all()


def _candidates(receipt: rc.Receipt) -> tuple[str, ...]:
    return (receipt.message_id,) if receipt.key == receipt.message_id else (
        receipt.message_id, receipt.key)  # fmt: skip


def apply_matched(conn: Connection, found: Sequence[rc.Receipt], *, lock: bool) -> int:
    """Apply receipts whose ids are in the ledger: progress first, then late failures (so a
    delivery carrying both for one message keeps the proof of delivery). Returns the rows
    moved. ``lock`` takes the campaign rows a failure may count in; a caller that recorded the
    send in this transaction needs none (that batch cannot be counted yet)."""
    received = datetime.now(UTC)
    moved = 0
    progress = [r for r in found if r.status != rc.FAILED]
    if progress:
        ids, ranks, ats = [], [], []
        for receipt in progress:
            for ident in _candidates(receipt):
                ids.append(ident)
                ranks.append(rc.rank(receipt.status))
                ats.append(receipt.at or received)
        moved += conn.execute(
            queries.APPLY_RECEIPT_PROGRESS,
            {"ids": ids, "ranks": ranks, "ats": ats, "names": _NAMES},
        ).rowcount
    failures = [r for r in found if r.status == rc.FAILED]
    if failures:
        ids, codes, messages = [], [], []
        for receipt in failures:
            for ident in _candidates(receipt):
                ids.append(ident)
                codes.append(receipt.error_code)
                messages.append(receipt.error_message)
        if lock:
            conn.execute(queries.LOCK_RECEIPT_CAMPAIGNS, {"ids": ids}).all()
        row = conn.execute(
            queries.APPLY_RECEIPT_FAILURES,
            {"ids": ids, "codes": codes, "messages": messages, "sent": rc.SENT,
             "failed": rc.FAILED},
        ).one()  # fmt: skip
        moved += int(row.failed)
    return moved


def apply_parked(conn: Connection, message_ids: Iterable[str | None]) -> int:
    """In the transaction that records these sends: take the parked receipts of their
    messages out (one statement) and apply them. Returns the rows moved."""
    recorded = {rc.message_key(m): m for m in message_ids if m}
    if not recorded:
        return 0
    lock_keys(conn, recorded)
    keys = sorted(recorded)
    rows = conn.execute(
        queries.TAKE_PARKED_RECEIPTS, {"keys": keys, "ids": [recorded[k] for k in keys]}
    ).all()
    if not rows:
        return 0
    # as the ledger now spells the id, so the match is exact whatever form was parked
    parked = [
        rc.Receipt(
            recorded[row.gateway_message_id],
            row.status,
            row.occurred_at,
            row.error_code,
            row.error_message,
        )
        for row in rows
    ]
    return apply_matched(conn, parked, lock=False)


class ReceiptVerbs(StoreBase):
    """Delivery receipts: what the web service's webhooks hand the store."""

    def apply_receipts(self, receipts: Sequence[rc.Receipt]) -> ReceiptResult:
        """Apply one delivery's receipts in one transaction: matched by message id (or its
        key), idempotent, forward only; a late failure moves a still-sent recipient to failed
        with the counters; receipts of unknown ids are parked (applied when the send is
        recorded). Any store error propagates (:class:`StoreUnavailable`): nothing was
        stored, and the gateway is answered 5xx so it sends them again."""
        if not receipts:
            return ReceiptResult(0, 0, 0)
        with translate_errors(), self.engine.begin() as conn:
            lock_keys(conn, (r.key for r in receipts))
            asked = sorted({i for r in receipts for i in _candidates(r)})
            known = set(conn.execute(queries.RECEIPT_IDS_KNOWN, {"ids": asked}).scalars())
            found = [r for r in receipts if known.intersection(_candidates(r))]
            parked = [r for r in receipts if not known.intersection(_candidates(r))]
            moved = apply_matched(conn, found, lock=True) if found else 0
            if parked:
                conn.execute(
                    queries.PARK_RECEIPTS,
                    {
                        "keys": [r.key for r in parked],
                        "statuses": [r.status for r in parked],
                        "codes": [r.error_code for r in parked],
                        "messages": [r.error_message for r in parked],
                        "ats": [r.at for r in parked],
                    },
                )
        return ReceiptResult(moved, max(0, len(found) - moved), len(parked))

    def drop_old_receipts(self, hours: float | None = None) -> int:
        """Delete parked receipts older than ``hours`` (default RECEIPT_PENDING_HOURS)."""
        hours = self.settings.receipt_pending_hours if hours is None else hours
        with translate_errors(), self.engine.begin() as conn:
            return int(
                conn.execute(queries.DROP_OLD_PARKED_RECEIPTS, {"seconds": hours * 3600}).rowcount
            )

    def delivery_counts(self, campaign_id: int) -> rc.DeliveryFigures:
        """Delivered and read figures of a campaign's sent recipients, in all and per session
        (rates over sent: a late failure leaves sent, so it counts in neither)."""
        self.get_campaign(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(queries.DELIVERY_COUNTS, {"campaign_id": campaign_id}).all()
        sessions: Mapping[str, rc.DeliveryCounts] = {
            str(row.session_name or "-"): rc.DeliveryCounts(
                int(row.sent), int(row.delivered), int(row.read)
            )
            for row in rows
        }
        total = rc.DeliveryCounts(
            sum(c.sent for c in sessions.values()),
            sum(c.delivered for c in sessions.values()),
            sum(c.read for c in sessions.values()),
        )
        return rc.DeliveryFigures(total, dict(sorted(sessions.items())))
