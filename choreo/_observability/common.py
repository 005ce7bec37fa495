"""Names shared by traces, metrics and logs, so a span and a time series say the same thing."""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from choreo._service import Handler


def subject(handler: Handler) -> str:
    """What a handler takes: its event type, or its topic for a topic handler."""
    if handler.event is not None:
        return handler.event.event_type
    return handler.topic or handler.name


def short_type(event_type: str) -> str:
    """``shop.orders.OrderPlaced`` → ``OrderPlaced``: span names stay readable in a trace view."""
    return event_type.rpartition(".")[2]


def error_type(error: BaseException) -> str:
    """The fully qualified class name, as ``error.type`` and the DLQ's error header spell it."""
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def resource(service: str) -> Resource:
    """``service.name`` is the choreo service unless ``OTEL_SERVICE_NAME`` says otherwise.

    ``Resource.create`` reads ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``
    but lets explicit attributes win, so the env var is consulted here first.
    """
    return Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
