"""``choreo ingress``: signed HTTP webhooks in, acknowledged events out (see ``app``)."""

from choreo._ingress.app import CORRELATION_HEADER, IngressApp
from choreo._ingress.replay import PostgresSeen, ReplayCache
from choreo._ingress.routes import Route, build_routes, parse_route
from choreo._ingress.server import serve
from choreo._ingress.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Rejection,
    Verifier,
    event_id_of,
    legacy_signature,
    sign,
    signature,
)

__all__ = [
    "CORRELATION_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "IngressApp",
    "PostgresSeen",
    "Rejection",
    "ReplayCache",
    "Route",
    "Verifier",
    "build_routes",
    "event_id_of",
    "legacy_signature",
    "parse_route",
    "serve",
    "sign",
    "signature",
]
