"""Signed webhooks into events: ``choreo ingress`` and the helper senders use to sign requests.

Run it with routes from event types to paths::

    CHOREO_INGRESS__SECRET=... choreo ingress --route 'POST /orders=shop.orders.OrderReceived'

A sender signs the method, the target (path and query) and the exact body bytes it sends::

    body = json.dumps(order).encode()
    headers = choreo.ingress.sign(secret, body, method="POST", target="/orders")
    # POST body to /orders with headers and Content-Type: application/json

``X-Choreo-Signature`` is ``v2=`` and the hex HMAC-SHA256, keyed with the shared
secret, of ``"v2\n<timestamp>\n<METHOD>\n<target>\n" + body``
(``X-Choreo-Timestamp``: Unix seconds). ``v1=`` (``"<timestamp>." + body``) is
refused unless the ingress sets ``accept_v1`` while senders migrate.
Answers: 202 once the broker acknowledged the event (JSON with ``event_id``,
``correlation_id``, ``topic``); the event id is derived from the signature, so
the same signed request always names the same event. 400 for a body that is
not JSON or repeats a key; 401 for a missing or wrong signature or a timestamp
further than the tolerance (5 minutes by default) from the ingress's clock;
408 for a body that did not arrive in time; 409 for a request already received
(a replay); 413 for a body above the size cap; 415 unless ``Content-Type`` is
``application/json``; 422 naming each wrong field (``fields``: path →
problem); 431 for oversized headers; 503 when the broker did not acknowledge
in time. Only a 202 publishes anything. ``X-Correlation-Id`` is honoured when
sent (it becomes the event's correlation id; without it, the event's key
is, as for ``Publisher``) and returned; a W3C
``traceparent`` and ``tracestate`` are carried on to the event's headers, no
other request header is.
"""

from __future__ import annotations

from choreo._ingress.app import CORRELATION_HEADER
from choreo._ingress.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature

__all__ = ["CORRELATION_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signature"]
