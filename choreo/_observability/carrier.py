"""Trace context in Kafka headers, through OpenTelemetry's propagator API.

Whatever ``OTEL_PROPAGATORS`` configures (W3C ``traceparent``/``tracestate``
and ``baggage`` by default) is written to and read from the record headers,
so choreo interoperates with any OpenTelemetry-instrumented Kafka client.

Headers are a list in which a name may repeat, and choreo appends rather than
replaces: a dead letter keeps the original record's headers and adds its
own. So the *last* value of a name counts, as ``Record.header`` reads it. The
fields a propagator writes go together: the SDK carries ``tracestate`` from a
parent span to its children and extracted baggage stays in the context, so
what an injection appends supersedes the earlier values field by field.
"""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter

from choreo._transport.base import Headers

_EMPTY = Context()


class HeadersGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        """The last value of ``key``, or None; bytes that are not UTF-8 are replaced, not fatal."""
        for name, value in reversed(carrier):
            if name == key:  # Kafka allows a null header value (the outbox relay sends some)
                return None if value is None else [value.decode("utf-8", "replace")]
        return None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


class HeadersSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.append((key, value.encode()))


GETTER = HeadersGetter()
SETTER = HeadersSetter()


def extract(headers: Headers) -> Context:
    """The producer's context, on an empty base.

    A record without trace headers therefore starts a new trace instead of
    becoming a child of whatever happens to be current in the worker.
    """
    return propagate.extract(headers, context=_EMPTY, getter=GETTER)


def inject(headers: Headers, context: Context | None = None) -> None:
    """Append ``context`` (by default the current one) to ``headers``."""
    propagate.inject(headers, context=context, setter=SETTER)
