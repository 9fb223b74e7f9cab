"""The control API under ``/_sandbox/``: operators and tests steer faults while the sandbox runs.

=========================  ==================================================================
``GET  health``            ``{"ok": true, "url"}``
``POST drop``              ``{session, seconds?, waha_status?=STOPPED, evolution_state?=close}``
``POST restore``           ``{session?}`` (none: every session) → ``{"restored": [...],
                           "lifted": [...]}`` (reconnects, and lifts timelocks and cappings)
``POST cap``               ``{session, seconds}`` (WAHA message capping, error 475, until the
                           cycle end ``seconds`` from now; then sends pass by themselves)
``POST timelock``          ``{session, seconds?}`` (WAHA reach-out timelock, error 463, until
                           restore/reset, or for ``seconds``)
``POST throttle``          ``{session?, seconds?, count?, code?=130429, cloud_status?=400,
                           http_status?=429, retry_after?}``
``POST fail``              ``{share?=1.0, session?, seconds?, count?, http_status?=500,
                           cloud_code?=131000}``
``POST refuse``            ``{code, numbers?, session?, seconds?, count?}`` (answer sends with
                           the gateway's own error ``code``, see below)
``POST slow``              ``{delay, session?, seconds?, count?}``
``POST reject``            ``{numbers: [...], session?}``
``POST hang``              ``{hold, count?=1, session?}`` (accept, record, then hold the answer)
``POST sessions``          ``{names: [...] | null}`` (restrict which names exist)
``POST throughput``        ``{rate: int | null, session?}`` (Cloud API sends per second per
                           phone_number_id before 130429; null: no limit; no session: the
                           limit of every number without its own)
``POST latency``           ``{seconds, dialect?, session?}`` (added before each answer)
``GET/POST config``        ``{waha_wait?, waha_shape?, evolution_closed_form?,
                           cloud_auth_status?, api_keys?}``
``GET/POST webhooks``      ``{url, dialect: waha|evolution|cloud, hmac_key?, session?}``
                           (a Cloud target's key is the Meta app secret, default
                           ``META_APP_SECRET``); ``DELETE webhooks/{id}``
``POST inbound``           ``{session, phone, text, dialect?}``: a person writes ``text`` to
                           ``session``; each matching target gets its dialect's message event
                           now → ``{"deliveries": [{target, event, status | error}]}``
``POST user_preference``   ``{session, phone, value: stop|resume}``: Meta's
                           ``user_preferences`` to the session's Cloud targets, as above
``GET/POST receipts``      ``{enabled?, delivered_after?, read_after?, read_share?,
                           fail_share?, duplicate_share?, reorder_share?, seed?, retry_for?,
                           retry_delay?, max_pending?}`` → the settings, ``pending`` and the
                           record's counts (delivery receipts, :mod:`.receipts`)
``POST reset``             ``{record?: false}`` (also throughput, latency and receipts back
                           to the values the sandbox started with)
``GET  messages``          ``?session=&dialect=&limit=`` → ``{"count", "messages"}``
``GET  presence``          ``?session=&dialect=`` → ``{"count", "presence"}`` (seen, typing,
                           Evolution's ``delay``)
``GET  stats`` / ``state``  counters / dropped, capped and timelocked sessions, live rules,
                           settings
=========================  ==================================================================

Every verb takes and returns JSON. Fault verbs accept ``session`` (omit it for a global fault)
and a lifetime: ``seconds`` (a deadline), ``count`` (the next K matching requests), or neither
(until reset). The control API needs no key: it is a rehearsal tool on a trusted host.

``refuse`` plays an answer about the sender, not the network: the Cloud API answers 400 with
error ``code`` (132001 template not approved, 131042 payment, 130497 country restricted...);
WAHA answers the 500 a WhatsApp refusal gives (``"2 UNKNOWN: server returned error <code>"``,
§2.4: 463 is the reach-out timelock); Evolution the 400 its send path makes of any Baileys error
(§3.4). With ``numbers`` only sends to those numbers are refused (a recipient-level answer).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from campaigns.sandbox.core import Request, Response, Sandbox, digits_of, json_response
from campaigns.sandbox.receipts import Receipts
from campaigns.sandbox.record import SandboxRecord
from campaigns.sandbox.webhooks import Webhooks

PREFIX = "/_sandbox/"


class ControlError(ValueError):
    """A bad control request (answered 400)."""


def _get(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return None
    try:
        if kind is int:
            # Query strings carry "3"; JSON may carry 3.0. Reject 2.5 and booleans.
            number = float(value)
            if isinstance(value, bool) or number != int(number):
                raise ValueError
            return int(number)
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ControlError(f"{name} must be {kind.__name__}") from exc


def _lifetime(body: dict[str, Any]) -> dict[str, Any]:
    seconds = _get(body, "seconds", float)
    count = _get(body, "count", int)
    if (seconds is not None and seconds <= 0) or (count is not None and count <= 0):
        raise ControlError("seconds and count must be positive")
    return {"session": _get(body, "session", str), "seconds": seconds, "count": count}


class ControlApi:
    """Dispatches ``/_sandbox/...`` requests."""

    def __init__(self, sandbox: Sandbox, webhooks: Webhooks, receipts: Receipts) -> None:
        self.sandbox = sandbox
        self.webhooks = webhooks
        self.receipts = receipts
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "health"): lambda _: {"ok": True, "url": sandbox.base_url},
            ("POST", "drop"): self.drop,
            ("POST", "restore"): self.restore,
            ("POST", "cap"): self.cap,
            ("POST", "timelock"): self.timelock,
            ("POST", "throttle"): self.throttle,
            ("POST", "fail"): self.fail,
            ("POST", "refuse"): self.refuse,
            ("POST", "slow"): self.slow,
            ("POST", "reject"): self.reject,
            ("POST", "hang"): self.hang,
            ("POST", "sessions"): self.sessions,
            ("POST", "throughput"): self.throughput,
            ("POST", "latency"): self.latency,
            ("GET", "config"): lambda _: sandbox.settings.to_json(),
            ("POST", "config"): self.config,
            ("GET", "webhooks"): self.list_webhooks,
            ("POST", "webhooks"): self.add_webhook,
            ("POST", "inbound"): self.inbound,
            ("POST", "user_preference"): self.user_preference,
            ("GET", "receipts"): self.receipt_state,
            ("POST", "receipts"): self.configure_receipts,
            ("POST", "reset"): self.reset,
            ("GET", "messages"): self.messages,
            ("GET", "presence"): self.presence,
            ("GET", "stats"): self.stats,
            ("GET", "state"): self.state,
        }

    def handle(self, request: Request) -> Response | None:
        """Answer a control request, or None when the path is not under ``/_sandbox/``."""
        if not request.path.startswith(PREFIX):
            return None
        verb = request.path[len(PREFIX):].strip("/")
        if request.method == "DELETE" and verb.startswith("webhooks/"):
            removed = self.webhooks.remove(int(verb.split("/", 1)[1] or 0))
            return json_response(200 if removed else 404, {"removed": removed})
        route = self._routes.get((request.method, verb))
        if route is None:
            return json_response(404, {"error": f"no control verb {request.method} {verb}"})
        try:
            body = dict(request.query) if request.method == "GET" else request.json() or {}
            if not isinstance(body, dict):
                raise ControlError("the body must be a JSON object")
            return json_response(200, route(body))
        except ValueError as exc:  # ControlError, bad JSON, FaultState's own checks
            return json_response(400, {"error": str(exc)})

    # -- sessions -------------------------------------------------------------------------
    def drop(self, body: dict[str, Any]) -> Any:
        session = _get(body, "session", str)
        if not session:
            raise ControlError("session is required")
        self.sandbox.faults.drop(
            session, seconds=_get(body, "seconds", float),
            waha_status=_get(body, "waha_status", str, "STOPPED"),
            evolution_state=_get(body, "evolution_state", str, "close"))
        return self.state({})

    def restore(self, body: dict[str, Any]) -> Any:
        session = _get(body, "session", str)
        return {"restored": self.sandbox.faults.restore(session),
                "lifted": self.sandbox.faults.restrictions.lift(session)}

    def cap(self, body: dict[str, Any]) -> Any:
        session, seconds = _get(body, "session", str), _get(body, "seconds", float)
        if not session or seconds is None or seconds <= 0:
            raise ControlError("session and seconds (positive: until the cycle end) are required")
        capping = self.sandbox.faults.restrictions.cap(session, seconds)
        return {"capped": {session: capping.to_json()}}

    def timelock(self, body: dict[str, Any]) -> Any:
        session = _get(body, "session", str)
        if not session:
            raise ControlError("session is required")
        lock = self.sandbox.faults.restrictions.timelock(session, _get(body, "seconds", float))
        return {"timelocked": {session: lock.to_json()}}

    def sessions(self, body: dict[str, Any]) -> Any:
        names = body.get("names")
        if names is not None and not (isinstance(names, list)
                                      and all(isinstance(n, str) for n in names)):
            raise ControlError("names must be a list of strings or null")
        self.sandbox.faults.set_known(names)
        return self.state({})

    # -- faults ---------------------------------------------------------------------------
    def _rule(self, kind: str, body: dict[str, Any], params: dict[str, Any]) -> Any:
        life = _lifetime(body)
        rule = self.sandbox.faults.add_rule(kind, life["session"], params,
                                            seconds=life["seconds"], count=life["count"])
        return {"rule": rule.describe(time.monotonic())}

    def throttle(self, body: dict[str, Any]) -> Any:
        return self._rule("throttle", body, {
            "code": _get(body, "code", int, 130429),
            "cloud_status": _get(body, "cloud_status", int, 400),
            "http_status": _get(body, "http_status", int, 429),
            "retry_after": _get(body, "retry_after", int),
        })

    def fail(self, body: dict[str, Any]) -> Any:
        share = _get(body, "share", float, 1.0)
        if not 0.0 <= share <= 1.0:
            raise ControlError("share must be between 0 and 1")
        status = _get(body, "http_status", int, 500)
        if not 500 <= status <= 599:
            raise ControlError("http_status must be 5xx")
        return self._rule("fail", body, {"share": share, "http_status": status,
                                         "cloud_code": _get(body, "cloud_code", int, 131000)})

    def refuse(self, body: dict[str, Any]) -> Any:
        code = _get(body, "code", int)
        if code is None:
            raise ControlError("code (the gateway's error code) is required")
        numbers = body.get("numbers") or []
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise ControlError("numbers must be a list of strings")
        return self._rule("refuse", body, {"code": code,
                                           "numbers": frozenset(map(digits_of, numbers))})

    def slow(self, body: dict[str, Any]) -> Any:
        delay = _get(body, "delay", float)
        if delay is None or delay < 0:
            raise ControlError("delay (seconds) is required")
        return self._rule("slow", body, {"delay": delay})

    def reject(self, body: dict[str, Any]) -> Any:
        numbers = body.get("numbers")
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise ControlError("numbers must be a list of strings")
        return self._rule("reject", body, {"numbers": frozenset(map(digits_of, numbers))})

    def hang(self, body: dict[str, Any]) -> Any:
        hold = _get(body, "hold", float)
        if hold is None or hold < 0:
            raise ControlError("hold (seconds) is required")
        return self._rule("hang", body | {"count": body.get("count", 1)}, {"hold": hold})

    # -- the gateway's own limits --------------------------------------------------------
    def throughput(self, body: dict[str, Any]) -> Any:
        if "rate" not in body:
            raise ControlError("rate (sends per second, or null for no limit) is required")
        self.sandbox.throughput.set(body["rate"], _get(body, "session", str))
        return {"throughput": self.sandbox.throughput.snapshot()}

    def latency(self, body: dict[str, Any]) -> Any:
        if body.get("seconds") is None:
            raise ControlError("seconds is required")
        self.sandbox.latency.set(body["seconds"], dialect=_get(body, "dialect", str),
                                 session=_get(body, "session", str))
        return {"latency": self.sandbox.latency.snapshot()}

    # -- settings, webhooks, reset --------------------------------------------------------
    def config(self, body: dict[str, Any]) -> Any:
        self.sandbox.settings.update(body)
        return self.sandbox.settings.to_json()

    def list_webhooks(self, _: dict[str, Any]) -> Any:
        return {"targets": [t.to_json() for t in self.webhooks.targets()],
                "deliveries": self.webhooks.deliveries()}

    def add_webhook(self, body: dict[str, Any]) -> Any:
        target = self.webhooks.add(
            url=str(body.get("url", "")), dialect=str(body.get("dialect", "")),
            hmac_key=_get(body, "hmac_key", str), session=_get(body, "session", str))
        return target.to_json()

    def inbound(self, body: dict[str, Any]) -> Any:
        session, phone, text = (_get(body, name, str) for name in ("session", "phone", "text"))
        if not session or not phone or text is None:
            raise ControlError("session, phone and text are required")
        return {"deliveries": self.webhooks.inbound(session, phone, text,
                                                    _get(body, "dialect", str))}

    def user_preference(self, body: dict[str, Any]) -> Any:
        session, phone, value = (_get(body, name, str) for name in ("session", "phone", "value"))
        if not session or not phone or not value:
            raise ControlError("session (a phone_number_id), phone and value are required")
        return {"deliveries": self.webhooks.user_preference(session, phone, value)}

    def configure_receipts(self, body: dict[str, Any]) -> Any:
        self.receipts.configure(body)
        return self.receipt_state({})

    def receipt_state(self, _: dict[str, Any]) -> Any:
        return {"settings": self.receipts.settings.to_json(), "pending": self.receipts.pending(),
                "counts": SandboxRecord(self.sandbox.record.path).receipt_counts()}

    def reset(self, body: dict[str, Any]) -> Any:
        """Clear faults, webhooks and counters (and the record with ``record: true``)."""
        self.webhooks.clear()
        restored = self.sandbox.faults.reset()
        self.sandbox.throughput.reset()
        self.sandbox.latency.reset()
        self.receipts.reset()
        self.sandbox.reset_counters()
        if body.get("record") is True:
            self.sandbox.record.clear()
        return {"reset": True, "restored": restored}

    # -- reading --------------------------------------------------------------------------
    def messages(self, query: dict[str, Any]) -> Any:
        record = SandboxRecord(self.sandbox.record.path)
        rows = record.messages(session=query.get("session"), dialect=query.get("dialect"))
        limit = _get(query, "limit", int)
        if limit is not None:
            rows = rows[-limit:]
        return {"count": len(rows), "messages": [dataclasses.asdict(m) for m in rows]}

    def presence(self, query: dict[str, Any]) -> Any:
        rows = SandboxRecord(self.sandbox.record.path).presence(
            session=query.get("session"), dialect=query.get("dialect"))
        return {"count": len(rows), "presence": [dataclasses.asdict(p) for p in rows]}

    def stats(self, _: dict[str, Any]) -> Any:
        # SQL aggregates, not a row scan: benchmark records hold hundreds of thousands of rows.
        record = SandboxRecord(self.sandbox.record.path)
        return {
            "messages": record.count(),
            "undeliverable": record.tally("deliverable").get("0", 0),
            "by_session": record.tally("session"),
            "by_dialect": record.tally("dialect"),
            "duplicates": len(record.duplicates()),
            "refused": len(record.refusals()),
            "presence": len(record.presence()),
            **self.sandbox.faults.restrictions.snapshot(),
            "requests": self.sandbox.counters(),
            "webhook_deliveries": len(self.webhooks.deliveries()),
            "receipts": record.receipt_counts(),
        }

    def state(self, _: dict[str, Any]) -> Any:
        return self.sandbox.faults.snapshot() | {
            "settings": self.sandbox.settings.to_json(),
            "throughput": self.sandbox.throughput.snapshot(),
            "latency": self.sandbox.latency.snapshot(),
        }
