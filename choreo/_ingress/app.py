"""The ingress as a plain ASGI app: signed JSON requests in, acknowledged events out.

Order of checks, cheapest and least revealing first: probes, route (404/405),
request head (431 headers too large, 400 both Content-Length and
Transfer-Encoding, 415 not ``application/json``), size (413), body deadline
(408), signature and timestamp (401), replay (409), body (400 not JSON or a
duplicate key, 422), publish (202 once the broker acknowledged, 503 if it did
not). Every refusal happens before the publish, so a refused request never
leaves a trace on the topic.

Probes are public: they say ready or not and nothing else; why not goes to the log.
Of the caller's headers only ``traceparent`` and ``tracestate`` (bounded) reach
Kafka: nothing else, ``baggage`` included, is signed or checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from pydantic import ValidationError

from choreo import _headers
from choreo._errors import ChoreoError
from choreo._ingress.replay import SeenStore
from choreo._ingress.routes import Route
from choreo._ingress.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Rejection,
    Verifier,
    event_id_of,
)
from choreo._observability import carrier
from choreo._publisher import Publisher
from choreo._schemas import Event

log = logging.getLogger("choreo.ingress")

CORRELATION_HEADER = "X-Correlation-Id"
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
"""What a caller's correlation id may look like (it ends up in Kafka headers and logs)."""
FORWARDED_HEADERS = {"traceparent": 55, "tracestate": 512}
"""The caller's headers carried to Kafka, each with its longest accepted value (W3C
trace context); longer ones are dropped, not cut."""
JSON_MEDIA_TYPE = "application/json"

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Readiness = Callable[[], Awaitable[str | None]]
"""None when ready, else why not."""


class IngressApp:
    """``routes`` by (method, path); the publisher must be open while the app serves."""

    def __init__(
        self,
        routes: Mapping[tuple[str, str], Route],
        publisher: Publisher,
        verifier: Verifier,
        seen: SeenStore,
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        body_timeout_s: float,
        publish_timeout_s: float,
        readiness: Readiness,
        answered: Callable[[str, int], None] = lambda path, status: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._routes = dict(routes)
        self._paths = {path for _, path in routes}
        self._publisher = publisher
        self._verifier = verifier
        self._seen = seen
        self._max_body_bytes = max_body_bytes
        self._max_header_bytes = max_header_bytes
        self._body_timeout_s = body_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._readiness = readiness
        self._answered = answered
        """Told every answer's path and status (the loopback metrics)."""
        self._clock = clock
        self._not_ready: str | None = None
        """The last reason logged for not being ready (each change is logged once)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: the server runs with lifespan off
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        correlation_id = headers.get(CORRELATION_HEADER.lower()) or ""
        try:
            _check_head(raw, headers, self._max_header_bytes)
            status, body = await self._handle(scope, receive, headers, correlation_id)
        except Rejection as rejection:
            status, body = self._refused(scope, rejection)
        reply_headers = [(b"content-type", b"application/json")]
        returned = body.get("correlation_id") or correlation_id  # ours once published
        if returned and _CORRELATION_ID.fullmatch(returned):
            reply_headers.append((CORRELATION_HEADER.lower().encode(), returned.encode()))
        payload = json.dumps(body).encode()
        reply_headers.append((b"content-length", str(len(payload)).encode()))
        self._answered(scope["path"], status)
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _handle(
        self, scope: Scope, receive: Receive, headers: dict[str, str], correlation_id: str
    ) -> tuple[int, dict[str, Any]]:
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/healthz":
            return 200, {"status": "ok"}
        if method == "GET" and path == "/readyz":
            return await self._ready()
        route = self._routes.get((method, path))
        if route is None:
            if path in self._paths:
                return 405, {"error": f"{method} is not allowed on {path}"}
            return 404, {"error": f"no route {method} {path}"}
        if correlation_id and not _CORRELATION_ID.fullmatch(correlation_id):
            return 400, {"error": f"{CORRELATION_HEADER} must match {_CORRELATION_ID.pattern}"}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            raise Rejection(415, f"Content-Type must be {JSON_MEDIA_TYPE}")
        return await self._accept(route, scope, receive, headers, correlation_id)

    def _refused(self, scope: Scope, rejection: Rejection) -> tuple[int, dict[str, Any]]:
        method, path = scope["method"], scope["path"]
        log.info("%s %s refused (%d): %s", method, path, rejection.status, rejection.message)
        reply: dict[str, Any] = {"error": rejection.message}
        if rejection.fields:
            reply["fields"] = rejection.fields
        return rejection.status, reply

    async def _ready(self) -> tuple[int, dict[str, Any]]:
        """Ready or not, nothing more: the broker's address and user stay in the log."""
        problem = await self._readiness()
        if problem != self._not_ready:
            if problem is None:
                log.info("ready again: the broker answers")
            else:
                log.warning("not ready: %s", problem)
            self._not_ready = problem
        return (200, {"status": "ready"}) if problem is None else (503, {"status": "not ready"})

    async def _accept(
        self,
        route: Route,
        scope: Scope,
        receive: Receive,
        headers: dict[str, str],
        correlation_id: str,
    ) -> tuple[int, dict[str, Any]]:
        try:
            async with asyncio.timeout(self._body_timeout_s):
                body = await self._read_body(receive, headers)
        except TimeoutError:
            raise Rejection(408, f"body not received within {self._body_timeout_s:g}s") from None
        now = self._clock()
        query = scope["query_string"]
        target = scope["raw_path"] + (b"?" + query if query else b"")
        signature = headers.get(SIGNATURE_HEADER.lower())
        timestamp = self._verifier.verify(
            headers.get(TIMESTAMP_HEADER.lower()),
            signature,
            body,
            now,
            method=scope["method"],
            target=target.decode("latin-1"),
        )
        assert signature is not None  # verify refused it otherwise
        await self._seen.reserve(signature, timestamp, now)
        try:
            event = _validate(route.model, body)
            event_id, correlation_id = await self._publish(
                event, headers, correlation_id, event_id_of(signature)
            )
        except BaseException:
            await self._seen.release(signature)  # not accepted: the client may send it again
            raise
        return 202, {"event_id": event_id, "correlation_id": correlation_id, "topic": route.topic}

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        too_large = Rejection(413, f"body larger than {self._max_body_bytes} bytes")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Rejection(400, "client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _publish(
        self, event: Event, headers: dict[str, str], correlation_id: str, event_id: str
    ) -> tuple[str, str]:
        """Send and wait for the acknowledgement; the caller's trace context goes along.

        Without the caller's correlation id the emitter's rule applies (the
        event's key); either way the one the record carries is returned.
        """
        emitter = self._publisher.emitter
        forwarded = {
            name: value
            for name, longest in FORWARDED_HEADERS.items()
            if (value := headers.get(name)) is not None and len(value) <= longest
        }
        token = otel_context.attach(propagate.extract(forwarded))
        try:
            record = emitter.prepare(
                event, correlation_id=correlation_id or None, event_id=event_id
            )
            if self._publisher.instrument is None:  # no tracing here: pass the caller's on
                carrier.inject(record.headers)
        finally:
            otel_context.detach(token)
        try:
            delivered = await emitter.send_prepared(record)
            await asyncio.wait_for(delivered, self._publish_timeout_s)
        except (ChoreoError, TimeoutError) as error:
            log.warning("publishing %s to %s failed: %s", event.event_type, record.topic, error)
            raise Rejection(503, f"the broker did not acknowledge the event: {error}") from None
        return event_id, dict(record.headers)[_headers.CORRELATION].decode()


def _check_head(raw: list[tuple[bytes, bytes]], headers: dict[str, str], limit: int) -> None:
    """431 for oversized headers; 400 for framing two ways at once (request smuggling)."""
    size = sum(len(name) + len(value) + 4 for name, value in raw)  # ": " and CRLF
    if size > limit:
        raise Rejection(431, f"request headers are {size} bytes; at most {limit} allowed")
    if "content-length" in headers and "transfer-encoding" in headers:
        raise Rejection(400, "Content-Length and Transfer-Encoding together are refused")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: a key given twice is refused (parsers disagree on which wins)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise Rejection(400, f"body has the key {key!r} more than once in one object")
        seen[key] = value
    return seen


def _validate(model: type[Event], body: bytes) -> Event:
    """The event, or 400 (not JSON, a duplicate key) / 422 naming each wrong field by its path."""
    try:
        json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError both are
        raise Rejection(400, f"body is not valid JSON: {error}") from None
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise Rejection(400, f"body is not valid JSON: {problems[0]['msg']}") from None
        fields = {".".join(str(part) for part in p["loc"]) or "(body)": p["msg"] for p in problems}
        listed = "; ".join(f"{name}: {message}" for name, message in fields.items())
        raise Rejection(422, f"not a valid {model.event_type}: {listed}", fields) from None
