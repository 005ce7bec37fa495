"""Signed webhook requests: HMAC-SHA256 over the timestamp and the body.

The format (also what :func:`sign` produces)::

    X-Choreo-Timestamp: 1763776800                  (Unix seconds, UTC)
    X-Choreo-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

Signing the timestamp together with the exact body bytes means neither can be
changed without the secret; the tolerance bounds how old a captured request
may be, and :class:`ReplayCache` refuses a second use of the same signature
within that window. Together a captured request cannot be sent again.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import time

TIMESTAMP_HEADER = "X-Choreo-Timestamp"
SIGNATURE_HEADER = "X-Choreo-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


def signature(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """``v1=<hex>``: the value of the signature header for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers that make ``body`` an acceptable request (``timestamp`` defaults to now).

    Send ``body`` byte for byte as signed: re-serialising the JSON after
    signing breaks the signature.
    """
    when = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(when), SIGNATURE_HEADER: signature(secret, body, when)}


class Rejection(Exception):
    """Why a request is refused, as the HTTP status and a message safe to send back."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        """Wrong field paths (``items.0.quantity``) and what is wrong with each, for 422."""


class Verifier:
    """Checks a request's signature and timestamp (not replays: see :class:`ReplayCache`)."""

    def __init__(self, secret: str, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        self._secret = secret.encode()
        self.tolerance_s = tolerance_s

    def __repr__(self) -> str:
        return f"Verifier(secret=***, tolerance_s={self.tolerance_s:g})"

    def verify(self, timestamp: str | None, given: str | None, body: bytes, now: float) -> int:
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
        if not hmac.compare_digest(given.encode(), signature(self._secret, body, when).encode()):
            raise Rejection(401, "signature does not match the body and timestamp")
        if abs(now - when) > self.tolerance_s:
            raise Rejection(
                401, f"timestamp is {now - when:+.0f}s off; at most {self.tolerance_s:g}s allowed"
            )
        return when


class ReplayCache:
    """Signatures accepted within the tolerance window, each refused a second time.

    An entry only needs to live as long as its timestamp is fresh: after that
    the timestamp check refuses the request anyway. So memory is bounded by
    the requests of one window. A request holds its signature while it is
    handled; one that fails (bad body, broker down) gives it back, so the
    client can send it again, while a concurrent duplicate is refused.
    """

    def __init__(self, tolerance_s: float) -> None:
        self._tolerance_s = tolerance_s
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def reserve(self, signature: str, timestamp: int, now: float) -> None:
        """Hold ``signature``; :class:`Rejection` (409) if it is already held or used."""
        self._forget_until(now)
        if signature in self._expiry:
            raise Rejection(409, "this signed request was already received (replay)")
        expiry = timestamp + self._tolerance_s
        self._expiry[signature] = expiry
        heapq.heappush(self._queue, (expiry, signature))

    def release(self, signature: str) -> None:
        """Give back a signature whose request was not accepted."""
        self._expiry.pop(signature, None)

    def _forget_until(self, now: float) -> None:
        while self._queue and self._queue[0][0] < now:
            expiry, signature = heapq.heappop(self._queue)
            if self._expiry.get(signature) == expiry:
                del self._expiry[signature]
