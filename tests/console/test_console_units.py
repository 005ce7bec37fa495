"""The console's parts that need no broker: rows from any changelog bytes, filters and paging
over 100,000 sagas, the POST guard, the trace waterfall's order, the timeline and escaping."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo._console import trace
from choreo._console.app import ConsoleApp, Sources
from choreo._console.dead_letters import Picked, decoded, parse_picks
from choreo._console.guard import CSRF_COOKIE, TOKEN_COOKIE, Guard, cookies
from choreo._console.index import Filter, SagaIndex, row_of
from choreo._console.saga_page import details, lanes, parse, timeline_svg
from choreo._dlq.reader import DeadLetter
from choreo._saga.state import HistoryEntry, SagaState, SagaStatus, StepState
from choreo._schemas import Catalog, Codec
from choreo._security.redact import Redactor
from choreo.saga import Parallel, Saga, Step, SubSaga
from services.events import (
    CancelOrder,
    FraudCleared,
    OrderCancelled,
    OrderPlaced,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
    RefundPayment,
    ReleaseStock,
    StockReleased,
    StockReserved,
)

TOPIC = "choreo.saga.order.state"
ROOT = Path(__file__).resolve().parents[2]


def state(saga_id: str, status: SagaStatus, **fields: object) -> SagaState:
    return SagaState(saga_id=saga_id, saga="order", version=1, status=status, **fields)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["status", "steps", "version", "started_at", "updated_at", "reason"]),
            json_values,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_changelog_bytes_make_a_row(data: bytes) -> None:
    """Whatever a tracker (or anybody with write access) put there, the list still lists it."""
    row = row_of(TOPIC, 2, 7, "s-1", data)
    assert (row.saga, row.saga_id, row.partition, row.offset) == ("order", "s-1", 2, 7)
    assert isinstance(row.status, str) and isinstance(row.version, int)
    assert row.failed_step is None or isinstance(row.failed_step, str)


def test_a_newer_trackers_fields_and_statuses_show_up_instead_of_breaking() -> None:
    raw = json.loads(state("s-9", SagaStatus.RUNNING).to_bytes())
    raw["heartbeat_at"] = 1700000000.5  # a field this version of choreo does not know
    raw["steps"] = {"ship": {"status": "pending", "beat_due_at": 1700000001.0, "fallback": 1,
                             "stalled": True, "shiny_new": "x"}}  # fmt: skip
    known = json.dumps(raw).encode()
    parsed, kept = parse(known)
    assert parsed is not None and kept["heartbeat_at"] == 1700000000.5
    page = details(parsed, kept, None)
    assert "Other fields" in page and "heartbeat_at" in page
    assert "fallback=1, stalled=true, shiny_new=&quot;x&quot;" in page  # step fields too
    assert "beat due" in timeline_svg(parsed, None)  # every *due_at of a step is drawn
    raw["status"] = "aborting"  # a status this console does not know
    unknown = json.dumps(raw).encode()
    assert parse(unknown)[0] is None  # the page shows the JSON as stored
    assert row_of(TOPIC, 0, 0, "s-9", unknown).status == "aborting"


def test_json_a_tracker_cannot_read_is_shown_as_stored_not_an_error() -> None:
    """What Python's json reads but a tracker does not (a lone surrogate, NaN): the page shows
    the JSON as stored, as for any state this version cannot read."""
    data = state("s-9", SagaStatus.RUNNING).to_bytes()
    for odd in (data.replace(b'"s-9"', b'"s-9\\ud800"', 1), data.replace(b"0.0", b"NaN", 1)):
        parsed, kept = parse(odd)
        assert parsed is None and kept["saga"] == "order"


def test_filters_counts_and_pages_over_100000_sagas() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    index = SagaIndex({"bootstrap.servers": "unused:1"})
    statuses = list(SagaStatus)
    expected: dict[str, int] = {}
    failed_at_charge = 0
    for n in range(100_000):
        status = rng.choice(statuses)
        steps = {"charge": {"status": "failed"}} if status is SagaStatus.COMPENSATED else {}
        failed_at_charge += bool(steps)
        raw = {"saga_id": f"o-{n}", "version": 1, "status": status.value, "steps": steps,
               "started_at": float(n), "updated_at": float(n)}  # fmt: skip
        index.apply(TOPIC, n % 3, n, f"o-{n}".encode(), json.dumps(raw).encode())
        expected[status.value] = expected.get(status.value, 0) + 1
    dropped = state_of(index, "o-5")
    index.apply(TOPIC, 2, 100_001, b"o-5", None)  # a tombstone: dropped after its retention
    assert state_of(index, "o-5") == "gone"
    expected[dropped] -= 1
    failed_at_charge -= dropped == "compensated"
    began = time.monotonic()
    listing = index.listing(Filter(state="completed"), 50, 50)
    took = time.monotonic() - began
    assert took < 5.0, f"one filtered page of 100,000 sagas took {took:.2f}s"
    print(f"one filtered page of 100,000 sagas: {took * 1000:.0f} ms")
    assert listing.total == expected["completed"]
    assert len(listing.rows) == 50 and all(r.status == "completed" for r in listing.rows)
    updated = [r.updated_at for r in listing.rows]
    assert updated == sorted(updated, reverse=True)
    counts = listing.counts[("order", 1)]
    assert counts.total() == 100_000 - 1
    charge = index.listing(Filter(failed_step="charge"), 0, 10)
    assert charge.total == failed_at_charge
    window = index.listing(Filter(started_from=10.0, started_to=19.0, search="o-1"), 0, 50)
    assert {r.saga_id for r in window.rows} == {f"o-{n}" for n in range(10, 20)}
    assert all(index.listing(Filter(state=s), 0, 1).total == n for s, n in expected.items())


def state_of(index: SagaIndex, saga_id: str) -> str:
    row = index.find("order", saga_id)
    return "gone" if row is None else row.status


def test_posts_need_the_pages_csrf_value_and_changes_need_the_token() -> None:
    guard = Guard("t0ken")
    head = {"host": "127.0.0.1:8070", "origin": "http://127.0.0.1:8070"}
    jar = {CSRF_COOKIE: "abc"}
    ok = {"csrf": "abc"}
    assert guard.check_post(head, jar, ok, changes=False).allowed
    assert not guard.check_post(head, jar, {"csrf": "abd"}, changes=False).allowed
    assert not guard.check_post(head, {}, {"csrf": ""}, changes=False).allowed
    evil = {**head, "origin": "http://evil.example"}
    assert "evil.example" in guard.check_post(evil, jar, ok, changes=False).why
    cross = {**head, "sec-fetch-site": "cross-site"}
    assert not guard.check_post(cross, jar, ok, changes=False).allowed
    assert not guard.check_post(head, jar, ok, changes=True).allowed
    wrong = guard.check_post(head, jar, {**ok, "token": "nope"}, changes=True)
    assert not wrong.allowed
    granted = guard.check_post(head, jar, {**ok, "token": "t0ken"}, changes=True)
    assert granted.allowed and any(TOKEN_COOKIE in c for c in granted.set_cookies)
    assert guard.check_post(head, {**jar, TOKEN_COOKIE: "t0ken"}, ok, changes=True).allowed
    assert Guard(None).check_post(head, jar, ok, changes=True).allowed
    assert cookies("a=1; choreo_csrf=x=y; b") == {"a": "1", "choreo_csrf": "x=y"}
    value, fresh = Guard.csrf_for({})
    assert value and fresh and "SameSite=Strict" in fresh[0] and "HttpOnly" in fresh[0]
    assert Guard.csrf_for({CSRF_COOKIE: "k"}) == ("k", ())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=30), min_size=1, max_size=30), st.randoms())
def test_the_waterfall_puts_every_span_once_under_its_parent(
    parents: list[int], rng: random.Random
) -> None:
    """Parents given as indexes (-1 or a missing one: a root); spans arrive in any order."""
    spans = [
        {
            "spanID": f"s{i}",
            "processID": "p1",
            "operationName": f"op {i}",
            "startTime": rng.randrange(10**6),
            "duration": rng.randrange(10**4),
            "references": [] if p < 0 or p >= i else [{"refType": "CHILD_OF", "spanID": f"s{p}"}],
            "tags": [],
            "logs": [],
        }
        for i, p in enumerate(parents)
    ]
    rng.shuffle(spans)
    data = {"data": [{"spans": spans, "processes": {"p1": {"serviceName": "svc"}}}]}
    order = trace.ordered(trace.parse(data))
    assert sorted(s.span_id for _, s in order) == sorted(f"s{i}" for i in range(len(parents)))
    position = {s.span_id: i for i, (_, s) in enumerate(order)}
    depth = {s.span_id: d for d, s in order}
    for _, span in order:
        if span.parent is not None:
            assert position[span.parent] < position[span.span_id]
            assert depth[span.span_id] == depth[span.parent] + 1
        else:
            assert depth[span.span_id] == 0
    assert trace.waterfall(trace.parse(data)).count('class="span"') == len(parents)


def test_trace_ids_are_read_from_traceparent_only_when_well_formed() -> None:
    tid = "0af7651916cd43dd8448eb211c80319c"
    assert trace.trace_id_of(f"00-{tid}-b7ad6b7169203331-01") == tid
    for bad in (None, "", "00-xyz-b7-01", f"00-{tid.upper()}-b7ad6b7169203331-01", "../../x"):
        assert trace.trace_id_of(bad) is None


def test_the_timeline_brackets_parallel_steps_and_nests_sub_sagas() -> None:
    payment = Saga(
        "payment",
        version=1,
        start=OrderPlaced,
        steps=[
            Step(
                "charge",
                success=[PaymentAuthorized],
                failure=[PaymentDeclined],
                compensate=RefundPayment,
                compensated=[PaymentRefunded],
            )
        ],
    )
    order = Saga("order", version=1, start=OrderPlaced, deadline=timedelta(minutes=5), steps=[
        Step("order", success=[OrderPlaced], compensate=CancelOrder, compensated=[OrderCancelled]),
        Parallel([
            Step("reserve-stock", success=[StockReserved], compensate=ReleaseStock,
                 compensated=[StockReleased]),
            Step("fraud-check", success=[FraudCleared], needs_compensation=False),
        ]),
        SubSaga(payment),
    ])  # fmt: skip
    steps = {n: StepState() for n in ("payment/charge", "fraud-check", "order", "reserve-stock")}
    steps["payment"] = StepState()
    s = state("<b>o-1</b>", SagaStatus.RUNNING, steps=steps, started_at=100.0)
    s.history = [
        HistoryEntry(at=100.5, occurred_at=100.1, trigger="x", step="order",
                     action="step succeeded"),
        HistoryEntry(at=101.0, trigger="compensate", step="order", action="emitted <CancelOrder>"),
    ]  # fmt: skip
    drawn = lanes(s, order)
    assert [lane.name for lane in drawn] == [
        "order", "reserve-stock", "fraud-check", "payment", "payment/charge"
    ]  # fmt: skip
    groups = {lane.name: lane.group for lane in drawn}
    assert groups["reserve-stock"] == groups["fraud-check"] is not None
    assert groups["order"] is None and groups["payment/charge"] is None
    svg = timeline_svg(s, order)
    assert svg.count(">parallel</text>") == 1
    page = details(s, json.loads(s.to_bytes()), order)
    assert "<b>o-1</b>" not in page and "&lt;CancelOrder&gt;" in svg + page


def test_dead_letter_values_are_decoded_or_shown_as_text_or_hex() -> None:
    catalog = Catalog.load(ROOT / "schemas")
    placed = OrderPlaced.model_validate(
        {
            "order_id": "o-7",
            "customer_id": "c",
            "items": [{"sku": "S", "quantity": 1, "unit_price": "1.00"}],
            "total": "1.00",
            "currency": "EUR",
            "shipping_address": {"line1": "l", "city": "c", "postal_code": "p", "country": "BE"},
            "placed_at": "2026-01-01T00:00:00Z",
        }
    )
    shown = decoded(Codec(catalog).encode(placed), catalog)
    assert shown.startswith("shop.orders.OrderPlaced v") and '"o-7"' in shown
    assert decoded(b"plain text", catalog) == "plain text"
    assert decoded(b"\xff\xfe", catalog) == "hex ff fe"
    assert decoded(None, catalog).startswith("null")
    assert decoded(b"\xc3\x01" + b"\x00" * 8 + b"\xff", catalog).startswith("hex c3 01")


def test_a_replay_picks_exactly_the_records_named_on_the_page() -> None:
    picks = parse_picks(["0:5", "2:7", "x:1", "1:", "-1:3", "3:9"])
    assert picks == {(0, 5), (2, 7), (3, 9)}

    def record(partition: int, offset: int) -> DeadLetter:
        return DeadLetter("t", partition, offset, None, b"", [], 0)

    chosen = Picked(records=picks, reason=None)
    assert [chosen.matches(record(p, o)) for p, o in [(0, 5), (0, 6), (2, 7), (3, 8)]] == [
        True, False, True, False
    ]  # fmt: skip


def app_without_broker(token: str | None = None) -> ConsoleApp:
    """The console over an index fed by hand: pages that need no broker answer from it."""
    index = SagaIndex({"bootstrap.servers": "unused:1"})
    raw = json.loads(state("<o&1>", SagaStatus.COMPENSATED).to_bytes())
    index.apply(TOPIC, 0, 0, b"<o&1>", json.dumps(raw).encode())
    return ConsoleApp(
        Sources(
            settings={"bootstrap.servers": "unused:1"},
            index=index,
            guard=Guard(token),
            redact=Redactor([]),
            jaeger="http://127.0.0.1:9",
            jaeger_ui=False,
            catalog=None,
            system=None,
            system_error="none here",
            definitions={},
        )
    )


def call(
    app: ConsoleApp, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> tuple[int, dict[bytes, bytes], str]:  # fmt: skip
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Mapping[str, object]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": headers}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start, end = sent
    response_headers = dict(start["headers"])  # type: ignore[call-overload]
    return int(start["status"]), response_headers, bytes(end["body"]).decode()  # type: ignore[call-overload]


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=st.sampled_from(["/", "/saga", "/saga/raw", "/healthz", "/static/console.js",
                          "/topology", "/dlq/replay/send", "/dlq/purge/confirm", "/nope"]),
    query=st.binary(max_size=60),
    header=st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=40)),
    body=st.binary(max_size=200),
)  # fmt: skip
def test_any_request_gets_an_answer_and_nothing_unescaped(
    method: str, path: str, query: bytes, header: tuple[bytes, bytes], body: bytes
) -> None:
    """Hostile query strings, headers and bodies: an HTTP answer, never an exception, never
    the saga id's markup unescaped; no POST passes without the page's CSRF value."""
    status, headers, text = call(app_without_broker(), method, path, query, [header], body)
    assert status in {200, 400, 403, 404, 405}, (status, text[:300])
    assert b"content-security-policy" in headers
    assert "<o&1>" not in text or path == "/saga/raw"  # the raw state is JSON, not HTML
    if method == "POST":
        assert status in {403, 404, 405}


def test_the_list_and_a_saga_page_answer_from_the_index() -> None:
    app = app_without_broker()
    status, headers, text = call(app, "GET", "/", b"state=compensated", [])
    assert status == 200 and "1 matching" in text and "&lt;o&amp;1&gt;" in text
    assert b"choreo_csrf=" in headers[b"set-cookie"]
    status, _, fragment = call(app, "GET", "/", b"state=completed", [(b"x-fragment", b"1")])
    assert status == 200 and "0 matching" in fragment and "<html>" not in fragment
    assert call(app, "GET", "/", b"page=x", [])[0] == 400
    assert call(app, "GET", "/", b"from=yesterday", [])[0] == 400
    assert call(app, "GET", "/saga", b"saga=order&id=absent", [])[0] == 404
