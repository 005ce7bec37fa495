"""A client library's connection or authorization error, with what to change in choreo's terms.

librdkafka and aiokafka describe failures in their own words ("SASL
authentication error", "certificate verify failed", "TLS alert certificate
unknown"); operators configure choreo's setting names. ``explain`` appends the
setting to look at, never a secret's value.
"""

from __future__ import annotations

from collections.abc import Callable

from choreo._config import KafkaConfig
from choreo._errors import SecurityError, TransportError
from choreo._transport.shared import unreachable

_Hint = Callable[[KafkaConfig], str]


def _credentials(config: KafkaConfig) -> str:
    if config.sasl_mechanism == "OAUTHBEARER":
        return (
            "no OAUTHBEARER token, or the broker refused it: check oauth_client_id, "
            "oauth_client_secret and oauth_token_endpoint_url"
        )
    return (
        f"authentication failed: check sasl_username {config.sasl_username!r} and "
        f"sasl_password for {config.sasl_mechanism}"
    )


def _untrusted_broker(config: KafkaConfig) -> str:
    ca = config.ssl_cafile or "the system CA store"
    return (
        f"the broker's certificate is not trusted: it is not signed by ssl_cafile ({ca}), "
        "or does not name the host (ssl_check_hostname)"
    )


def _refused_client_cert(config: KafkaConfig) -> str:
    return (
        f"the broker refused the client certificate ssl_certfile ({config.ssl_certfile}): "
        "expired, not yet valid or signed by a CA the broker does not trust"
    )


def _wrong_protocol(config: KafkaConfig) -> str:
    return f"check security_protocol ({config.security_protocol}): the listener may expect another"


_HINTS: tuple[tuple[tuple[str, ...], _Hint], ...] = (
    (
        (
            "authentication failed",
            "invalid credentials",
            "saslauthenticationfailed",
            "oauthbearer token",
        ),
        _credentials,
    ),
    (("certificate verify failed",), _untrusted_broker),
    (("alert certificate", "alert unknown ca", "alert bad certificate"), _refused_client_cert),
    (("wrong version number", "ssl handshake failed", "unexpected eof"), _wrong_protocol),
)


def explain(detail: str, config: KafkaConfig) -> str:
    """``detail`` followed by the matching hint, if one matches."""
    lower = detail.lower()
    for needles, hint in _HINTS:
        if any(needle in lower for needle in needles):
            return f"{detail} ({hint(config)})"
    return detail


def refused_or_unreachable(servers: str, detail: str, config: KafkaConfig) -> TransportError:
    """A ``SecurityError`` when a hint explains ``detail``, else "no broker answered"."""
    explained = explain(detail, config)
    if explained != detail:
        return SecurityError(f"Kafka at {servers} refused us: {explained}")
    return unreachable(servers, detail)


AUTHORIZATION_HINT = "grant it with `choreo acl apply`; `choreo acl plan` shows what is missing"
