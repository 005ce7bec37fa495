"""The console as a plain ASGI app (served by uvicorn, as the ingress is): routes to pages.

Kafka and Jaeger calls block, so each runs in a worker thread; the event loop only routes
and writes. GET pages change nothing; a change (replay, purge) is a POST that passes the
:class:`~choreo._console.guard.Guard`. Every page carries a CSP that allows no inline
script and nothing from another origin.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs, urlencode

from confluent_kafka import KafkaException

from choreo._console import dead_letters, saga_page, trace
from choreo._console.guard import Guard, cookies
from choreo._console.html import CSS, SCRIPT, esc, hidden, link, page, table, when
from choreo._console.index import Filter, Listing, SagaIndex, read_state
from choreo._console.topology import group_lag, groups_of
from choreo._console.topology import render as render_topology
from choreo._dlq.purge import purge
from choreo._dlq.reader import dlq_topics, read
from choreo._dlq.replay import replay
from choreo._docs.model import System
from choreo._errors import ChoreoError
from choreo._saga.definition import Saga
from choreo._schemas import Catalog
from choreo._security.redact import Redactor

_log = logging.getLogger("choreo.console")

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

STATIC = {
    "/static/console.css": (CSS, "text/css"),
    "/static/console.js": (SCRIPT, "text/javascript"),
}
PAGE_SIZE = 50
DLQ_PAGE_SIZE = 100
MAX_FORM_BYTES = 1_000_000
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Reply:
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"
    cookies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, list[str]]
    csrf: str = ""
    """This browser's CSRF value, for the forms a page holds."""
    has_token: bool = False

    def arg(self, name: str) -> str | None:
        """A GET's query value, a POST's form value (never the other: what a confirmation
        page showed is what its form sends)."""
        values = (self.form if self.method == "POST" else self.query).get(name)
        return values[0] if values and values[0] != "" else None


@dataclass
class Sources:
    """What the console reads: the broker, Jaeger, and the code's own model of the system."""

    settings: dict[str, Any]
    index: SagaIndex
    guard: Guard
    redact: Redactor
    jaeger: str
    jaeger_ui: bool
    catalog: Catalog | None
    system: System | None
    system_error: str | None
    definitions: dict[tuple[str, int], Saga]


class ConsoleApp:
    def __init__(self, sources: Sources) -> None:
        self._s = sources
        self._gets: dict[str, Callable[[Request], Awaitable[Reply]]] = {
            "/": self._sagas,
            "/saga": self._saga,
            "/saga/raw": self._saga_raw,
            "/dlq": self._dlq,
            "/dlq/topic": self._dlq_topic,
            "/topology": self._topology,
        }
        self._posts: dict[str, Callable[[Request], Awaitable[Reply]]] = {
            "/dlq/replay/confirm": self._replay_confirm,
            "/dlq/replay/send": self._replay_send,
            "/dlq/purge/confirm": self._purge_confirm,
            "/dlq/purge/send": self._purge_send,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        jar = cookies(headers.get("cookie", ""))
        method, path = scope["method"], scope["path"]
        form: dict[str, list[str]] = {}
        if method == "POST":
            body = await _body(receive)
            if body is None:
                return await _write(send, Reply(413, "form too large"))
            form = parse_qs(body.decode(errors="replace"))
        request = Request(
            method, path, parse_qs(scope.get("query_string", b"").decode("latin-1")), headers, form
        )
        reply = await self._route(request, jar)
        await _write(send, reply)

    async def _route(self, request: Request, jar: dict[str, str]) -> Reply:
        if request.path in STATIC and request.method == "GET":
            text, kind = STATIC[request.path]
            return Reply(200, text, f"{kind}; charset=utf-8")
        if request.path == "/healthz" and request.method == "GET":
            return Reply(200, "ok", "text/plain")
        handlers = {"GET": self._gets, "POST": self._posts}.get(request.method, {})
        handler = handlers.get(request.path)
        if handler is None:
            known = request.path in self._gets or request.path in self._posts
            return Reply(405 if known else 404, page("Not here", "<p>No such page.</p>"))
        csrf, fresh = self._s.guard.csrf_for(jar)
        granted: tuple[str, ...] = ()
        if request.method == "POST":
            verdict = self._s.guard.check_post(
                request.headers,
                jar,
                {k: v[0] for k, v in request.form.items()},
                changes=request.path.endswith("/send"),
            )
            if not verdict.allowed:
                return Reply(403, page("Refused", f'<p class="warn">{esc(verdict.why)}</p>'))
            granted = verdict.set_cookies
        has_token = self._s.guard.has_token(jar) or bool(granted)
        request = replace(request, csrf=csrf, has_token=has_token)
        try:
            reply = await handler(request)
        except ValueError as error:  # a query value that is no number or time
            reply = Reply(400, page("Bad request", f"<pre>{esc(error)}</pre>"))
        except (ChoreoError, KafkaException, OSError) as error:
            _log.warning("%s %s: %s", request.method, request.path, error)
            shown = esc(self._s.redact(str(error)))
            reply = Reply(502, page("Cannot show this", f"<pre>{shown}</pre>"))
        reply.cookies += fresh + granted
        return reply

    # ---- sagas ----

    def _filter(self, request: Request) -> Filter:
        return Filter(
            state=request.arg("state"),
            saga=request.arg("saga"),
            started_from=_epoch(request.arg("from")),
            started_to=_epoch(request.arg("to")),
            failed_step=request.arg("failed_step"),
            search=request.arg("q"),
        )

    async def _sagas(self, request: Request) -> Reply:
        wanted = self._filter(request)
        number = max(int(request.arg("page") or 0), 0)
        listing = self._s.index.listing(wanted, number * PAGE_SIZE, PAGE_SIZE)
        live = _saga_list(listing, wanted, number)
        if (failure := self._s.index.failure) is not None:
            stale = f"this list stopped following the changelogs: {self._s.redact(failure)}"
            live = f'<p class="warn">{esc(stale)}</p>' + live
        if request.headers.get("x-fragment"):
            return Reply(200, live)
        query = urlencode(request.query, doseq=True)
        body = (
            _saga_filters(listing, wanted, request)
            + f'<div id="live" data-live="/?{esc(query)}">{live}</div>'
        )
        return Reply(200, page("Sagas", body))

    async def _saga(self, request: Request) -> Reply:
        name, saga_id = request.arg("saga") or "", request.arg("id") or ""
        row = self._s.index.find(name, saga_id)
        data = None if row is None else await asyncio.to_thread(read_state, self._s.settings, row)
        if data is None:
            return Reply(404, page(f"Saga {saga_id}", "<p>No such saga in the changelogs.</p>"))
        state, raw = saga_page.parse(data)
        if state is None:
            body = (
                '<p class="warn">This console cannot read this state (a newer tracker?); '
                f"as stored:</p><pre>{esc(json.dumps(raw, indent=2))}</pre>"
            )
            return Reply(200, page(f"Saga {saga_id}", body))
        definition = self._s.definitions.get((state.saga, state.version))
        body = saga_page.details(state, raw, definition)
        body += link("/saga/raw", "raw state (JSON)", saga=name, id=saga_id)
        body += await self._trace_section(state.trace.get("traceparent"))
        return Reply(200, page(f"Saga {saga_id}", body))

    async def _trace_section(self, traceparent: str | None) -> str:
        trace_id = trace.trace_id_of(traceparent)
        if trace_id is None:
            return "<h2>Trace</h2><p class='muted'>The start event carried no trace context.</p>"
        where = (
            f' (<a href="{esc(self._s.jaeger)}/trace/{trace_id}">in Jaeger\'s UI</a>)'
            if self._s.jaeger_ui
            else ""
        )
        try:
            spans = await asyncio.to_thread(trace.fetch, self._s.jaeger, trace_id)
            drawn = trace.waterfall(spans)
        except OSError as error:
            drawn = f'<p class="warn">{esc(error)}</p>'
        return f'<h2>Trace <code>{trace_id}</code>{where}</h2><div id="trace">{drawn}</div>'

    async def _saga_raw(self, request: Request) -> Reply:
        row = self._s.index.find(request.arg("saga") or "", request.arg("id") or "")
        data = None if row is None else await asyncio.to_thread(read_state, self._s.settings, row)
        if data is None:
            return Reply(404, "{}", "application/json")
        return Reply(200, data.decode(errors="replace"), "application/json")

    # ---- dead letters ----

    async def _dlq(self, request: Request) -> Reply:
        pattern = request.arg("q") or "*"

        def load() -> list[dead_letters.TopicSummary]:
            topics = [t for t in dlq_topics(self._s.settings) if fnmatchcase(t, pattern)]
            records = list(read(self._s.settings, *topics)) if topics else []
            return dead_letters.summarize(topics, records)

        summaries = await asyncio.to_thread(load)
        rows = [
            [
                link("/dlq/topic", s.topic, t=s.topic),
                f'<span class="num count">{s.records}</span>',
                esc(", ".join(f"{k} x{v}" for k, v in s.reasons.most_common())),
                esc(", ".join(f"{k} x{v}" for k, v in s.errors.most_common())),
            ]
            for s in summaries
        ]
        search = (
            '<form method="get" action="/dlq" class="filters"><label>topics '
            f'<input name="q" value="{esc(pattern)}"></label><button>Show</button></form>'
        )
        body = search + table(["topic", "records", "by reason", "by error type"], rows, "dlq")
        return Reply(200, page("Dead letters", body))

    async def _dlq_topic(self, request: Request) -> Reply:
        topic = request.arg("t") or ""
        reason = request.arg("reason")
        number = max(int(request.arg("page") or 0), 0)
        records = await asyncio.to_thread(lambda: list(read(self._s.settings, topic)))
        chosen = [r for r in records if reason is None or r.reason == reason]
        shown = chosen[number * DLQ_PAGE_SIZE : (number + 1) * DLQ_PAGE_SIZE]
        reasons = sorted({r.reason for r in records})
        filters = " ".join(link("/dlq/topic", r, t=topic, reason=r) for r in reasons)
        more = (
            link("/dlq/topic", "next page", t=topic, reason=reason, page=number + 1)
            if len(chosen) > (number + 1) * DLQ_PAGE_SIZE
            else ""
        )
        body = (
            f"<p>{len(records)} records; reasons: {filters} {link('/dlq/topic', 'all', t=topic)}"
            "</p>"
            '<form method="post" action="/dlq/replay/confirm">'
            + hidden("topic", topic)
            + hidden("csrf", request.csrf)
            + '<button id="replay">Replay the picked records...</button>'
            + dead_letters.records_table(shown, self._s.catalog)
            + f"</form>{more}"
            '<form method="post" action="/dlq/purge/confirm">'
            + hidden("topic", topic)
            + hidden("csrf", request.csrf)
            + f'<button id="purge">Purge {esc(topic)}...</button></form>'
        )
        return Reply(200, page(f"Dead letters: {topic}", body))

    def _picked(self, request: Request) -> tuple[str, list[str], dead_letters.Picked]:
        topic = request.arg("topic") or ""
        picks = request.form.get("pick", [])
        return topic, picks, dead_letters.Picked(records=dead_letters.parse_picks(picks))

    async def _replay_confirm(self, request: Request) -> Reply:
        topic, picks, selection = self._picked(request)
        report = await asyncio.to_thread(replay, self._s.settings, topic, selection, dry_run=True)
        body = dead_letters.confirmation(
            topic, report, picks, request.csrf, self._s.guard.needs_token and not request.has_token
        )
        return Reply(200, page(f"Replay from {topic}?", body))

    async def _replay_send(self, request: Request) -> Reply:
        topic, _, selection = self._picked(request)
        report = await asyncio.to_thread(replay, self._s.settings, topic, selection)
        refused = "".join(f'<p class="warn">{esc(line)}</p>' for line in report.refused)
        body = (
            f'<p id="result">replayed {report.replayed} to {esc(report.destination)}, '
            f"{report.already_replayed} already replayed before</p>{refused}"
            + link("/dlq/topic", f"back to {topic}", t=topic)
        )
        return Reply(200, page(f"Replayed from {topic}", body))

    async def _purge_confirm(self, request: Request) -> Reply:
        topic = request.arg("topic") or ""
        count = await asyncio.to_thread(purge, self._s.settings, topic, dry_run=True)
        token = (
            '<label>token <input type="password" name="token"></label>'
            if self._s.guard.needs_token and not request.has_token
            else ""
        )
        body = (
            f"<p>This deletes the {count} records now in {esc(topic)} (Kafka DeleteRecords); "
            "they cannot be replayed afterwards.</p>"
            '<form method="post" action="/dlq/purge/send">'
            + hidden("topic", topic)
            + hidden("csrf", request.csrf)
            + f'{token}<button id="delete">Delete {count} records</button></form>'
        )
        return Reply(200, page(f"Purge {topic}?", body))

    async def _purge_send(self, request: Request) -> Reply:
        topic = request.arg("topic") or ""
        count = await asyncio.to_thread(purge, self._s.settings, topic)
        return Reply(200, page(f"Purged {topic}", f'<p id="result">deleted {count} records</p>'))

    # ---- topology ----

    async def _topology(self, request: Request) -> Reply:
        system = self._s.system
        if system is None:
            why = esc(self._s.system_error or "no package given")
            return Reply(200, page("Topology", f'<p class="warn">No model: {why}</p>'))
        lags = await asyncio.to_thread(group_lag, self._s.settings, groups_of(system))
        return Reply(200, page("Topology", render_topology(system, lags)))


def _epoch(text: str | None) -> float | None:
    """A ``datetime-local`` field's value (UTC unless zoned) as epoch seconds."""
    if not text:
        return None
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _saga_filters(listing: Listing, wanted: Filter, request: Request) -> str:
    def select(name: str, options: list[str], current: str | None) -> str:
        choices = "".join(
            f'<option value="{esc(o)}"{" selected" if o == current else ""}>{esc(o) or "any"}'
            "</option>"
            for o in ["", *options]
        )
        return f'<label>{name.replace("_", " ")} <select name="{name}">{choices}</select></label>'

    states = ["waiting", "running", "compensating", "completed", "compensated", "failed"]

    def text(name: str, kind: str, label: str) -> str:
        return (
            f'<label>{label} <input type="{kind}" name="{name}" '
            f'value="{esc(request.arg(name) or "")}"></label>'
        )

    return (
        '<form method="get" action="/" class="filters">'
        + select("saga", listing.sagas, wanted.saga)
        + select("state", states, wanted.state)
        + select("failed_step", listing.failed_steps, wanted.failed_step)
        + text("from", "datetime-local", "started from (UTC)")
        + text("to", "datetime-local", "to")
        + text("q", "search", "id contains")
        + '<button id="apply">Filter</button></form>'
    )


def _saga_list(listing: Listing, wanted: Filter, number: int) -> str:
    states = sorted({s for c in listing.counts.values() for s in c})
    counts = table(
        ["saga", "version", *states, "all"],
        (
            [
                esc(saga),
                f"v{version}",
                *(
                    f'<span class="num count" data-state="{esc(s)}">'
                    + link("/", by.get(s, 0), saga=saga, state=s)
                    + "</span>"
                    for s in states
                ),
                f'<span class="num">{by.total()}</span>',
            ]
            for (saga, version), by in listing.counts.items()
        ),
        "counts",
    )
    rows = table(
        ["saga id", "saga", "state", "failed step", "started", "updated", "reason"],
        (
            [
                link("/saga", r.saga_id, saga=r.saga, id=r.saga_id),
                esc(f"{r.saga} v{r.version}"),
                f'<span class="s-{esc(r.status)}">{esc(r.status)}</span>',
                esc(r.failed_step or ""),
                esc(when(r.started_at)),
                esc(when(r.updated_at)),
                esc(r.reason or ""),
            ]
            for r in listing.rows
        ),
        "sagas",
    )
    first = number * PAGE_SIZE
    pages = (
        f'<p id="shown">{listing.total} matching; showing {first + 1 if listing.rows else 0}'
        f"-{first + len(listing.rows)}</p>"
    )
    args = {
        "state": wanted.state,
        "saga": wanted.saga,
        "failed_step": wanted.failed_step,
        "q": wanted.search,
    }
    nav = " ".join(
        [
            link("/", "previous", page=number - 1, **args) if number else "",
            link("/", "next", page=number + 1, **args)
            if first + len(listing.rows) < listing.total
            else "",
        ]
    )
    return f"<h2>By state</h2>{counts}<h2>Sagas</h2>{pages}{rows}{nav}"


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _write(send: Send, reply: Reply) -> None:
    body = reply.body.encode()
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        *((b"set-cookie", c.encode()) for c in reply.cookies),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
