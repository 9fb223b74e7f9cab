"""The dashboard (issue 14, Measure).

Rows 1-n, server time of the pages: a 1,000,000-recipient campaign created through the store's
COPY path (``create_campaign`` from a generator, ``start_at`` tomorrow: scheduled, so the pages
treat it as a moving campaign; no worker runs), its ledger then filled in one UPDATE as a
campaign 60% of the way through (sent with a session, message id and times, one in 50 failed
with an error, the rest pending) and VACUUM ANALYZE. A real ``campaigns web`` process serves
it; the bench logs in through ``POST /login`` with a token from ``store.create_token`` and asks
each page (the campaign page, the recipients page, a recipients page filtered by status deep
into the ledger, and every live partial those pages poll) a few hundred times in a row on one
keep-alive connection: milliseconds from sending the request to the last byte of the answer,
p50 and p99 (loopback: the server's time plus a negligible transfer). The pages reuse a moving
campaign's figures for ~2 s (their cache), so p50 is mostly a cached answer and p99 the fresh
ones; the first answer of each page (cold) is reported in the notes.

Last row, cost of open dashboards: one Cloud API session at ``rate`` 1,000 and no latency (as
bench/consent.py's opt-out row), one worker, a campaign long enough for the whole run, and the
``campaigns web`` process on the same database. The run alternates phases without and with 50
dashboards open (50 threads, each a browser on the campaign page or the campaigns page polling
the live partials that page polls, each at its own interval read from its ``hx-trigger``, on
one keep-alive ``http.client`` connection: the client's own CPU is on the same two cores):
messages/s with dashboards over messages/s without, counted from the sandbox's record by
arrival time (the first second of each phase left out), each side the sum over its phases.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlsplit

import requests

from bench.harness import SANDBOX_TOKEN, Bench, Row, percentile
from bench.ledgers import FAILED_EVERY, ZERO, big_campaign, web_service
from campaigns.dispatch import TaskSender
from campaigns.local.stack import wait_until
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

NAME = "dashboard"
LABEL = "dashboard"
SIZE, SIZE_QUICK = 1_000_000, 5_000
REQUESTS, REQUESTS_QUICK = 300, 10
SENT_SHARE = 0.6
TARGET_P99_MS = 500.0
"""A page answered within half a second even at its slowest: well under the 2 s poll."""

DASHBOARDS = 50
PHASE_S, PHASE_QUICK_S = 12.0, 3.0
PHASES = 8
"""Phases alternate without and with the dashboards, starting without: 4 of each."""
SETTLE_S = 1.0
"""The start of each phase left out of its count: the pollers starting or stopping."""
FAST_RATE = 1000
IN_FLIGHT = 32
TARGET_RATIO = 0.95

_POLLED = re.compile(r"<[^>]*\bhx-trigger=\"([^\"]*every\s+[0-9.]+m?s[^\"]*)\"[^>]*>", re.S)
_HX_GET = re.compile(r"\bhx-get=\"([^\"]+)\"")
_EVERY = re.compile(r"every\s+([0-9.]+)(m?s)")


def run(bench: Bench) -> list[Row]:
    return [*_page_rows(bench), _load_row(bench)]


# --------------------------------------------------------------------------------- service


def _logged_in(base: str, token: str) -> requests.Session:
    """A client session holding the dashboard's cookie, logged in through the login form."""
    client = requests.Session()
    answer = client.post(f"{base}/login", data={"token": token, "next": "/"}, timeout=30,
                         allow_redirects=False)  # fmt: skip
    if answer.status_code != 303 or not client.cookies:
        raise RuntimeError(f"login answered {answer.status_code}: {answer.text[:300]}")
    return client


def polled(html: str) -> list[tuple[str, float]]:
    """The live partials a page polls: (path, seconds) of every element whose ``hx-trigger``
    says ``every N s``, in page order, each path once."""
    found: dict[str, float] = {}
    for match in _POLLED.finditer(html):
        element = match.group(0)
        url = _HX_GET.search(element)
        every = _EVERY.search(match.group(1))
        if url is None or every is None:
            continue
        seconds = float(every.group(1)) / (1000 if every.group(2) == "ms" else 1)
        found.setdefault(unescape(url.group(1)), seconds)
    return list(found.items())


# ----------------------------------------------------------------------------- page times


def _page_rows(bench: Bench) -> list[Row]:
    size = SIZE_QUICK if bench.quick else SIZE
    count = REQUESTS_QUICK if bench.quick else REQUESTS
    database_url = bench.database(f"{NAME}_pages")
    env = bench.env(database_url)
    campaign_id, loaded, _ = big_campaign(env, size, "dashboard-bench", sent_share=SENT_SHARE)
    store = CampaignStateManager(database_url, settings=Settings.from_env(env))
    try:
        token = store.create_token("dashboard-bench", "read")
    finally:
        store.dispose()
    timings: dict[str, list[float]] = {}
    cold: dict[str, float] = {}
    with web_service(bench, env, "dashboard-pages") as (base, _):
        client = _logged_in(base, token)
        # the recipients table is part of the campaign page: its first keyset page there, a
        # filtered page deep into the ledger with ?status=&after=
        pages = {
            "campaign page": f"/campaigns/{campaign_id}",
            "recipients page, failed, deep keyset page":
                f"/campaigns/{campaign_id}?status=failed&after={size * 9 // 20}",
            "campaigns page": "/",
        }  # fmt: skip
        partials: dict[str, str] = {}
        for name, path in pages.items():
            page = _get(client, base + path)
            for partial, _every in polled(page):
                if partial.split("?")[0] not in {p.split("?")[0] for p in partials.values()}:
                    partials[f"{name}: live partial {partial.split('?')[0]}"] = partial
        # searches through the reversed-number index (migration 0010): last digits of a number
        # near the end of the sent part, and a full number
        near_end = f"+5511{900000000 + int(size * SENT_SHARE) - 7}"
        searches = {
            "recipients search by last 6 digits": f"/campaigns/{campaign_id}?q={near_end[-6:]}",
            "recipients search by full number":
                f"/campaigns/{campaign_id}?q={near_end.replace('+', '%2B')}",
        }  # fmt: skip
        for name, path in {**pages, **partials, **searches}.items():
            times = []
            for _ in range(count):
                started = time.perf_counter()
                _get(client, base + path)
                times.append((time.perf_counter() - started) * 1000)
            cold[name], timings[name] = times[0], times
        client.close()
    bench.notes.append(
        f"dashboard pages: a {size:,}-recipient campaign from create_campaign of a generator "
        f"(COPY path, {loaded:.0f} s), start_at tomorrow (scheduled: treated as moving, "
        f"figures cached ~2 s), {SENT_SHARE:.0%} of its ledger filled as sent (one in "
        f"{FAILED_EVERY} failed) in one UPDATE, VACUUM ANALYZE. A `campaigns web` process; "
        f"logged in through POST /login; {count} GETs of each path in a row on one keep-alive "
        "connection (requests), ms from the request to the answer's last byte. First (cold) "
        "answer of each: "
        + ", ".join(f"{name} {ms:.0f} ms" for name, ms in cold.items())
        + ". Paths: "
        + ", ".join(f"`{p}`" for p in [*pages.values(), *partials.values(), *searches.values()])
    )
    rows = []
    for name, times in timings.items():
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        rows.append(Row(LABEL, f"{size:,}-recipient campaign, {name}: server time p50 / p99",
                        f"{p50:.1f} / {p99:.1f} ms", "—", None, f"p99 < {TARGET_P99_MS:.0f} ms",
                        p99 < TARGET_P99_MS))  # fmt: skip
    return rows


def _get(client: requests.Session, url: str) -> str:
    answer = client.get(url, timeout=60, allow_redirects=False)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {url} answered {answer.status_code}: {answer.text[:300]}")
    return answer.text


# ------------------------------------------------------------------------- open dashboards


@dataclass
class Pollers:
    """``count`` threads, each a browser with one dashboard page open, polling that page's
    live partials at the page's interval while ``on`` is set."""

    base: str
    token: str
    pages: list[list[tuple[str, float]]]
    count: int = DASHBOARDS
    on: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    answered: int = 0
    errors: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _logged_in: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start the browsers and return once every one is logged in (the logins are not
        part of any phase)."""
        for i in range(self.count):
            thread = threading.Thread(target=self._poll, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self._lock:
                if self._logged_in >= self.count:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"only {self._logged_in} of {self.count} dashboards logged in")

    def close(self) -> None:
        self.stop.set()
        self.on.set()  # wakes the idle ones
        for thread in self._threads:
            thread.join(timeout=30)

    def _poll(self, i: int) -> None:
        partials = self.pages[i % len(self.pages)]
        session = _logged_in(self.base, self.token)
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        session.close()
        # the polls go through http.client on one keep-alive connection: a browser's polls
        # cost the server's machine nothing, and requests' own CPU (several times
        # http.client's) on the same two cores was counted against the dashboards
        parts = urlsplit(self.base)
        client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Cookie": cookie, "HX-Request": "true"}
        with self._lock:
            self._logged_in += 1
        try:
            while not self.stop.is_set():
                self.on.wait()
                if self.stop.is_set():
                    break
                # each browser's timers started when it opened the page: spread over a period;
                # each partial then polled at its own interval, as htmx does
                period = min(every for _, every in partials)
                if self.stop.wait(period * i / self.count):
                    break
                due = [time.monotonic()] * len(partials)
                while self.on.is_set() and not self.stop.is_set():
                    for k, (path, every) in enumerate(partials):
                        if time.monotonic() >= due[k]:
                            self._one(client, headers, path)
                            due[k] += every
                    self.stop.wait(max(0.0, min(due) - time.monotonic()))
        finally:
            client.close()

    def _one(self, client: http.client.HTTPConnection, headers: dict[str, str], path: str) -> None:
        for attempt in (1, 2):
            try:
                client.request("GET", path, headers=headers)
                answer = client.getresponse()
                answer.read()
                ok, detail = answer.status == 200, f"{path}: {answer.status}"
                break
            except (OSError, http.client.HTTPException) as exc:
                # the server closes a keep-alive connection idle for 5 s (between phases): a
                # browser opens a new one, and so does this (http.client reconnects on request)
                client.close()
                ok, detail = False, f"{path}: {exc} (attempt {attempt})"
        with self._lock:
            if ok:
                self.answered += 1
            elif len(self.errors) < 20:
                self.errors.append(detail)


def _load_row(bench: Bench) -> Row:
    phase = PHASE_QUICK_S if bench.quick else PHASE_S
    database_url = bench.database(f"{NAME}_load")
    env = bench.env(database_url)
    record_path = bench.work_dir / "dashboard-load.sqlite"
    size = int(FAST_RATE * phase * PHASES * 1.5)  # never runs out before the last phase
    windows: list[tuple[bool, float, float]] = []
    with bench.stack(f"{NAME}-load", env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        with SandboxControl(sandbox_url) as control:
            control.throughput(None)  # no limit: what is measured is the engine, not Meta's
        store = CampaignStateManager(
            database_url, settings=Settings.from_env({**env, "DB_POOL_SIZE": "2"})
        )
        try:
            session = f"dash-{bench.run_id}"
            store.add_session(
                session, "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN",
                phone_number_id=session, pacing="rate", rate=str(FAST_RATE),
                in_flight=str(IN_FLIGHT), tier="unlimited",
            )  # fmt: skip
            token = store.create_token("dashboard-load", "read")
            with web_service(bench, env, "dashboard-load") as (base, _):
                local.start_worker("w0", concurrency=IN_FLIGHT + 8)
                enqueue = TaskSender.for_broker(env["CELERY_BROKER_URL"], env["CAMPAIGNS_QUEUE"])
                try:
                    campaign = store.create_campaign(
                        [f"+5511{900000000 + i}" for i in range(size)], "Hi", session,
                        pacing=ZERO,
                    )  # fmt: skip
                    assert campaign.run_token is not None
                    enqueue(campaign.id, 1, campaign.run_token, 0.0)
                finally:
                    enqueue.close()
                viewer = _logged_in(base, token)
                pages = [polled(_get(viewer, base + path))
                         for path in ("/", f"/campaigns/{campaign.id}")]  # fmt: skip
                viewer.close()
                pages = [p for p in pages if p]
                if not pages:
                    raise RuntimeError("no page of the dashboard polls a live partial")
                record = SandboxRecord(record_path)
                wait_until(lambda: record.count(session) > 0, 60, "the first message")
                pollers = Pollers(base, token, pages)
                pollers.start()
                try:
                    for i in range(PHASES):
                        with_dashboards = i % 2 == 1
                        if with_dashboards:
                            pollers.on.set()
                        else:
                            pollers.on.clear()
                        began = time.time()
                        time.sleep(phase)  # the phase's length is what is measured
                        windows.append((with_dashboards, began + SETTLE_S, time.time()))
                finally:
                    pollers.close()
                left = store.first_pending_position(campaign.id)
                if left is None:
                    raise RuntimeError("the campaign ran out of numbers before the last phase")
        finally:
            store.dispose()
    if pollers.errors:
        raise RuntimeError(f"dashboard polls failed: {pollers.errors[:5]}")
    arrivals = sorted(m.received_at for m in SandboxRecord(record_path).messages())
    sides: dict[bool, list[float]] = {False: [0.0, 0.0], True: [0.0, 0.0]}
    per_phase = []
    for with_dashboards, start, end in windows:
        sent = sum(1 for t in arrivals if start <= t < end)
        sides[with_dashboards][0] += sent
        sides[with_dashboards][1] += end - start
        per_phase.append(sent / (end - start))
    without = sides[False][0] / sides[False][1]
    with_ = sides[True][0] / sides[True][1]
    shapes = " and ".join(
        "(" + ", ".join(f"{path.split('?')[0]} every {every:g} s" for path, every in p) + ")"
        for p in pages
    )
    bench.notes.append(
        f"open dashboards: one cloud-api session at rate {FAST_RATE}, {IN_FLIGHT} in flight, no "
        f"latency, one worker × {IN_FLIGHT + 8} threads, and a `campaigns web` process on the "
        f"same database; one campaign of {size:,} numbers sending throughout. {PHASES} phases "
        f"of {phase:g} s alternating none / {DASHBOARDS} dashboards (threads, each logged in "
        "before the first phase and polling on one keep-alive http.client connection, "
        f"half on the campaigns page and half on the campaign page, polling what that page "
        f"polls: {shapes}; {pollers.answered:,} polls answered 200, none failed): "
        + " / ".join(f"{r:.0f}" for r in per_phase)
        + f" messages/s, counted by arrival at the sandbox, the first {SETTLE_S:g} s of each "
        "phase left out."
    )
    return Row(
        LABEL,
        f"messages/s of a running campaign with {DASHBOARDS} dashboards open (rate 1,000)",
        f"{with_:.0f}/s",
        f"same run, none open: {without:.0f}/s",
        with_ / without,
        f"≥ {TARGET_RATIO}",
        with_ / without >= TARGET_RATIO,
    )
