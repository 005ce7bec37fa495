"""Signed webhook requests: HMAC-SHA256 over the timestamp, method, target and body.

The format (also what :func:`sign` produces)::

    X-Choreo-Timestamp: 1763776800                  (Unix seconds, UTC)
    X-Choreo-Signature: v2=<hex HMAC-SHA256(secret, signed string)>

    signed string = "v2\\n<timestamp>\\n<METHOD>\\n<target>\\n" + body

``target`` is the request target as sent: the path and, when there is one, ``?`` and the
query, byte for byte. None of timestamp, method and target can hold a newline, so the
string splits one way only. Signing all of them together with the exact body bytes
means none can be changed without the secret: a signature captured on ``POST /orders``
is worthless on ``POST /approvals`` or with another query.

``v1=`` (``"<timestamp>." + body``: method, path and query unsigned) is the earlier
scheme. The ingress refuses it unless ``[ingress] accept_v1 = true``, which exists for
the weeks senders need to move to v2; the version prefix is what tells them apart.

The tolerance bounds how old a captured request may be; the seen-signature store
(:mod:`choreo._ingress.replay`) refuses a second use within that window.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

TIMESTAMP_HEADER = "X-Choreo-Timestamp"
SIGNATURE_HEADER = "X-Choreo-Signature"
SCHEME = "v2"
LEGACY_SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0
_EVENT_IDS = uuid.UUID("5b0c7c56-8f0e-4d1c-9a49-5f1f3d0b7e21")
"""Namespace of the event ids derived from signatures (any fixed UUID; never change it)."""


def _mac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signature(secret: str | bytes, body: bytes, timestamp: int, *, method: str, target: str) -> str:
    """``v2=<hex>``: the signature header of ``method target`` with ``body`` at ``timestamp``."""
    head = f"{SCHEME}\n{timestamp}\n{method.upper()}\n{target}\n".encode()
    return f"{SCHEME}={_mac(secret, head + body)}"


def legacy_signature(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """``v1=<hex>`` over ``"<timestamp>." + body`` only (refused unless ``accept_v1``)."""
    return f"{LEGACY_SCHEME}={_mac(secret, f'{timestamp}.'.encode() + body)}"


def sign(
    secret: str | bytes,
    body: bytes,
    *,
    method: str,
    target: str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The headers that make ``method target`` with ``body`` acceptable (at ``timestamp``, now).

    ``target`` is the path plus ``?query`` exactly as the request will carry it. Send
    ``body`` byte for byte as signed: re-serialising the JSON after signing breaks it.
    """
    when = int(time.time()) if timestamp is None else int(timestamp)
    value = signature(secret, body, when, method=method, target=target)
    return {TIMESTAMP_HEADER: str(when), SIGNATURE_HEADER: value}


def event_id_of(signature_value: str) -> str:
    """The event id of the request with this signature: the same request gives the same id.

    So a replay that gets past the seen-signature store (in-memory store, several
    replicas) publishes the id already published, and consumers' idempotency drops it.
    """
    return str(uuid.uuid5(_EVENT_IDS, signature_value))


class Rejection(Exception):
    """Why a request is refused, as the HTTP status and a message safe to send back."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        """Wrong field paths (``items.0.quantity``) and what is wrong with each, for 422."""


class Verifier:
    """Checks a request's signature and timestamp (not replays: see ``replay``)."""

    def __init__(
        self, secret: str, tolerance_s: float = DEFAULT_TOLERANCE_S, *, accept_v1: bool = False
    ) -> None:
        self._secret = secret.encode()
        self.tolerance_s = tolerance_s
        self._accept_v1 = accept_v1

    def __repr__(self) -> str:
        return (
            f"Verifier(secret=***, tolerance_s={self.tolerance_s:g}, accept_v1={self._accept_v1})"
        )

    def verify(
        self,
        timestamp: str | None,
        given: str | None,
        body: bytes,
        now: float,
        *,
        method: str,
        target: str,
    ) -> int:
        """The request's timestamp once both checks pass; else :class:`Rejection` (401).

        The signature is checked first, so a caller without the secret learns
        nothing about the clock; the comparison takes constant time.
        """
        if timestamp is None or given is None:
            raise Rejection(
                401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header (signed requests)"
            )
        try:
            when = int(timestamp)
        except ValueError:
            raise Rejection(401, f"{TIMESTAMP_HEADER} must be Unix seconds") from None
        if given.startswith(f"{LEGACY_SCHEME}=") and not self._accept_v1:
            raise Rejection(
                401, f"{SIGNATURE_HEADER} v1= is no longer accepted: sign with v2= (see README)"
            )
        expected = (
            legacy_signature(self._secret, body, when)
            if given.startswith(f"{LEGACY_SCHEME}=")
            else signature(self._secret, body, when, method=method, target=target)
        )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Rejection(401, "signature does not match the method, target, body and timestamp")
        if abs(now - when) > self.tolerance_s:
            raise Rejection(
                401, f"timestamp is {now - when:+.0f}s off; at most {self.tolerance_s:g}s allowed"
            )
        return when
