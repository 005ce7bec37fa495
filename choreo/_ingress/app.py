"""The ingress as a plain ASGI app: signed JSON requests in, acknowledged events out.

Order of checks, cheapest and least revealing first: route, size (413),
signature and timestamp (401), replay (409), body (400/422), publish (202 once
the broker acknowledged, 503 if it did not). Every refusal happens before the
publish, so a refused request never leaves a trace on the topic.
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

from choreo._errors import ChoreoError
from choreo._headers import new_event_id
from choreo._ingress.routes import Route
from choreo._ingress.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Rejection,
    ReplayCache,
    Verifier,
)
from choreo._observability import carrier
from choreo._publisher import Publisher
from choreo._schemas import Event

log = logging.getLogger("choreo.ingress")

CORRELATION_HEADER = "X-Correlation-Id"
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
"""What a caller's correlation id may look like (it ends up in Kafka headers and logs)."""

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
        *,
        max_body_bytes: int,
        publish_timeout_s: float,
        readiness: Readiness,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._routes = dict(routes)
        self._paths = {path for _, path in routes}
        self._publisher = publisher
        self._verifier = verifier
        self._replays = ReplayCache(verifier.tolerance_s)
        self._max_body_bytes = max_body_bytes
        self._publish_timeout_s = publish_timeout_s
        self._readiness = readiness
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: the server runs with lifespan off
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        correlation_id = headers.get(CORRELATION_HEADER.lower()) or ""
        status, body = await self._handle(scope, receive, headers, correlation_id)
        reply_headers = [(b"content-type", b"application/json")]
        returned = body.get("correlation_id") or correlation_id  # ours once published
        if returned and _CORRELATION_ID.fullmatch(returned):
            reply_headers.append((CORRELATION_HEADER.lower().encode(), returned.encode()))
        payload = json.dumps(body).encode()
        reply_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _handle(
        self, scope: Scope, receive: Receive, headers: dict[str, str], correlation_id: str
    ) -> tuple[int, dict[str, Any]]:
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/healthz":
            return 200, {"status": "ok"}
        if method == "GET" and path == "/readyz":
            problem = await self._readiness()
            return (200, {"status": "ready"}) if problem is None else (503, {"error": problem})
        route = self._routes.get((method, path))
        if route is None:
            if path in self._paths:
                return 405, {"error": f"{method} is not allowed on {path}"}
            return 404, {"error": f"no route {method} {path}"}
        if correlation_id and not _CORRELATION_ID.fullmatch(correlation_id):
            return 400, {"error": f"{CORRELATION_HEADER} must match {_CORRELATION_ID.pattern}"}
        try:
            return await self._accept(route, receive, headers, correlation_id)
        except Rejection as rejection:
            log.info("%s %s refused (%d): %s", method, path, rejection.status, rejection.message)
            reply: dict[str, Any] = {"error": rejection.message}
            if rejection.fields:
                reply["fields"] = rejection.fields
            return rejection.status, reply

    async def _accept(
        self, route: Route, receive: Receive, headers: dict[str, str], correlation_id: str
    ) -> tuple[int, dict[str, Any]]:
        body = await self._read_body(receive, headers)
        now = self._clock()
        timestamp = self._verifier.verify(
            headers.get(TIMESTAMP_HEADER.lower()), headers.get(SIGNATURE_HEADER.lower()), body, now
        )
        signature = headers[SIGNATURE_HEADER.lower()]
        self._replays.reserve(signature, timestamp, now)
        try:
            event = _validate(route.model, body)
            event_id, correlation_id = await self._publish(event, headers, correlation_id)
        except BaseException:
            self._replays.release(signature)  # not accepted: the client may send it again
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
        self, event: Event, headers: dict[str, str], correlation_id: str
    ) -> tuple[str, str]:
        """Send and wait for the acknowledgement; the caller's trace context goes along."""
        emitter = self._publisher.emitter
        event_id = new_event_id()
        correlation_id = correlation_id or event_id
        token = otel_context.attach(propagate.extract(headers))
        try:
            record = emitter.prepare(event, correlation_id=correlation_id, event_id=event_id)
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
        return event_id, correlation_id


def _validate(model: type[Event], body: bytes) -> Event:
    """The event, or 400 (not JSON) / 422 naming each wrong field by its path."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise Rejection(400, f"body is not valid JSON: {problems[0]['msg']}") from None
        fields = {".".join(str(part) for part in p["loc"]) or "(body)": p["msg"] for p in problems}
        listed = "; ".join(f"{name}: {message}" for name, message in fields.items())
        raise Rejection(422, f"not a valid {model.event_type}: {listed}", fields) from None
