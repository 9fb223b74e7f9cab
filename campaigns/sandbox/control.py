"""Python client of the sandbox control API (``/_sandbox/...``): one method per verb, each
returning the parsed JSON answer and raising ``requests.HTTPError`` on a refused request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests


class SandboxControl:
    """Steers a running sandbox gateway.

    Fault methods take ``session`` (None = every session) and a lifetime: ``seconds`` and/or
    ``count`` (the next K matching requests); with neither the fault lasts until :meth:`reset`.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = requests.Session()

    def close(self) -> None:
        """Release the HTTP connection."""
        self._http.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, verb: str, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None, *, nulls: tuple[str, ...] = ()) -> Any:
        # None means "not given" and is left out, except where null itself means something
        clean = None if body is None else {k: v for k, v in body.items()
                                           if v is not None or k in nulls}
        answer = self._http.request(
            method, f"{self.base_url}/_sandbox/{verb}", json=clean,
            params=None if params is None else {k: v for k, v in params.items() if v is not None},
            timeout=(2.0, self.timeout))
        answer.raise_for_status()
        return answer.json()

    def health(self) -> Any:
        """``GET /_sandbox/health`` → ``{"ok": true, "url": ...}``."""
        return self._call("GET", "health")

    def drop(self, session: str, *, seconds: float | None = None, waha_status: str = "STOPPED",
             evolution_state: str = "close") -> Any:
        """Disconnect ``session`` (auto-restored after ``seconds`` when given)."""
        return self._call("POST", "drop", {"session": session, "seconds": seconds,
                                           "waha_status": waha_status,
                                           "evolution_state": evolution_state})

    def restore(self, session: str | None = None) -> Any:
        """Reconnect ``session`` (None = all) and lift its timelock and capping."""
        return self._call("POST", "restore", {"session": session})

    def cap(self, session: str, seconds: float) -> Any:
        """Put WAHA ``session`` in message capping (error 475) until the cycle end,
        ``seconds`` from now; afterwards its sends pass again by themselves."""
        return self._call("POST", "cap", {"session": session, "seconds": seconds})

    def timelock(self, session: str, seconds: float | None = None) -> Any:
        """Put WAHA ``session`` in a reach-out timelock (error 463) until :meth:`restore` or
        :meth:`reset` (or for ``seconds``)."""
        return self._call("POST", "timelock", {"session": session, "seconds": seconds})

    def throttle(self, *, session: str | None = None, seconds: float | None = None,
                 count: int | None = None, code: int = 130429, cloud_status: int = 400,
                 http_status: int = 429, retry_after: int | None = None) -> Any:
        """Answer sends with throttling errors (Cloud ``code``; WAHA/Evolution ``http_status``)."""
        return self._call("POST", "throttle", {
            "session": session, "seconds": seconds, "count": count, "code": code,
            "cloud_status": cloud_status, "http_status": http_status,
            "retry_after": retry_after})

    def fail(self, share: float = 1.0, *, session: str | None = None,
             seconds: float | None = None, count: int | None = None, http_status: int = 500,
             cloud_code: int = 131000) -> Any:
        """Fail a share (0..1, seeded) of sends with dialect-correct 5xx answers."""
        return self._call("POST", "fail", {
            "share": share, "session": session, "seconds": seconds, "count": count,
            "http_status": http_status, "cloud_code": cloud_code})

    def refuse(self, code: int, *, numbers: Iterable[str] | None = None,
               session: str | None = None, seconds: float | None = None,
               count: int | None = None) -> Any:
        """Answer sends with the gateway's own error ``code`` (a WhatsApp refusal: template
        not approved, timelock, payment...), only for ``numbers`` when given."""
        return self._call("POST", "refuse", {
            "code": code, "numbers": list(numbers or []), "session": session,
            "seconds": seconds, "count": count})

    def slow(self, delay: float, *, session: str | None = None, seconds: float | None = None,
             count: int | None = None) -> Any:
        """Hold every dialect answer ``delay`` seconds (client read timeouts)."""
        return self._call("POST", "slow", {"delay": delay, "session": session,
                                           "seconds": seconds, "count": count})

    def reject(self, numbers: Iterable[str], *, session: str | None = None) -> Any:
        """Declare ``numbers`` not on WhatsApp."""
        return self._call("POST", "reject", {"numbers": list(numbers), "session": session})

    def hang(self, hold: float, *, count: int = 1, session: str | None = None) -> Any:
        """For the next ``count`` sends: record the message as accepted, then hold the answer
        ``hold`` seconds."""
        return self._call("POST", "hang", {"hold": hold, "count": count, "session": session})

    def sessions(self, names: Iterable[str] | None) -> Any:
        """Restrict the existing session names (None = every name exists)."""
        return self._call("POST", "sessions",
                          {"names": None if names is None else list(names)})

    def throughput(self, rate: int | None, *, session: str | None = None) -> Any:
        """Let ``session`` (a Cloud API phone_number_id; None: every number without its own
        limit) send ``rate`` messages per second, answering 130429 past it; None: no limit."""
        return self._call("POST", "throughput", {"session": session, "rate": rate},
                          nulls=("rate",))

    def latency(self, seconds: float, *, dialect: str | None = None,
                session: str | None = None) -> Any:
        """Add ``seconds`` before each answer of ``dialect`` (cloud, waha, evolution) and/or
        ``session``; None: every one. The most precise setting wins."""
        return self._call("POST", "latency", {"seconds": seconds, "dialect": dialect,
                                              "session": session})

    def config(self, **changes: Any) -> Any:
        """Read (no argument) or change settings: waha_wait, waha_shape,
        evolution_closed_form, cloud_auth_status, api_keys."""
        if not changes:
            return self._call("GET", "config")
        return self._call("POST", "config", changes)

    def add_webhook(self, url: str, dialect: str, *, hmac_key: str | None = None,
                    session: str | None = None) -> Any:
        """Register a WAHA, Evolution or Cloud (``cloud``) webhook receiver; returns the target
        (with ``id``). ``hmac_key`` signs its deliveries: WAHA's key, or a Cloud target's Meta
        app secret (default: the sandbox's ``META_APP_SECRET``)."""
        return self._call("POST", "webhooks", {"url": url, "dialect": dialect,
                                               "hmac_key": hmac_key, "session": session})

    def inbound(self, session: str, phone: str, text: str, *,
                dialect: str | None = None) -> Any:
        """A person (``phone``, their WhatsApp id's digits as given) writes ``text`` to
        ``session``: the session's webhook targets (of ``dialect``, when given) get WAHA
        ``message``, Evolution ``messages.upsert`` or Cloud ``messages`` at once;
        ``{"deliveries": [{"target", "event", "status" | "error"}]}``."""
        return self._call("POST", "inbound", {"session": session, "phone": phone,
                                              "text": text, "dialect": dialect})

    def user_preference(self, session: str, phone: str, value: str = "stop") -> Any:
        """A person stops (or resumes) the marketing messages of Cloud API ``session`` (its
        phone_number_id) in WhatsApp: Meta's ``user_preferences`` webhook, delivered at once."""
        return self._call("POST", "user_preference", {"session": session, "phone": phone,
                                                      "value": value})

    def receipts(self, enabled: bool | None = None, *, delivered_after: float | None = None,
                 read_after: float | None = None, read_share: float | None = None,
                 fail_share: float | None = None, duplicate_share: float | None = None,
                 reorder_share: float | None = None, seed: int | None = None,
                 retry_for: float | None = None, retry_delay: float | None = None,
                 max_pending: int | None = None) -> Any:
        """Read (no argument) or change the delivery receipts sent to the registered webhook
        targets after each accepted send: on/off, seconds to ``delivered`` and then to
        ``read``, the shares (0..1) read, failed, posted twice and read-before-delivered,
        the ``seed`` of those choices, the retry time and first backoff, the cap on scheduled
        receipts. Answers ``{"settings", "pending", "counts"}``."""
        changes = {"enabled": enabled, "delivered_after": delivered_after,
                   "read_after": read_after, "read_share": read_share, "fail_share": fail_share,
                   "duplicate_share": duplicate_share, "reorder_share": reorder_share,
                   "seed": seed, "retry_for": retry_for, "retry_delay": retry_delay,
                   "max_pending": max_pending}
        if all(value is None for value in changes.values()):
            return self._call("GET", "receipts")
        return self._call("POST", "receipts", changes)

    def webhooks(self) -> Any:
        """``{"targets": [...], "deliveries": [...]}``."""
        return self._call("GET", "webhooks")

    def remove_webhook(self, target_id: int) -> Any:
        """Unregister one webhook target."""
        return self._call("DELETE", f"webhooks/{target_id}")

    def reset(self, *, record: bool = False) -> Any:
        """Clear faults, webhooks, counters and scheduled receipts; with ``record`` also
        delete recorded messages."""
        return self._call("POST", "reset", {"record": record})

    def messages(self, *, session: str | None = None, dialect: str | None = None,
                 limit: int | None = None) -> Any:
        """``{"count": n, "messages": [...]}`` of accepted messages."""
        return self._call("GET", "messages", params={"session": session, "dialect": dialect,
                                                     "limit": limit})

    def presence(self, *, session: str | None = None, dialect: str | None = None) -> Any:
        """``{"count": n, "presence": [...]}``: seen, typing and delay calls, in order."""
        return self._call("GET", "presence", params={"session": session, "dialect": dialect})

    def stats(self) -> Any:
        """Message counts, per-endpoint request counters, webhook deliveries."""
        return self._call("GET", "stats")

    def state(self) -> Any:
        """Dropped, capped and timelocked sessions, active fault rules and settings."""
        return self._call("GET", "state")
