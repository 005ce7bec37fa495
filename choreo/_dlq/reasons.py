"""The reason codes a ``--reason`` filter may name, so a misspelt one is an error, not 0 records."""

from __future__ import annotations

from collections.abc import Iterable

from choreo._errors import ConfigError

DOCUMENTED = frozenset(
    {
        "bad-header",
        "handler-error",
        "incompatible",
        "invalid",
        "missing-header",
        "not-avro",
        "not-debezium",
        "not-json",
        "registry-framed",
        "registry-unavailable",
        "rejected",
        "tombstone",
        "too-large",
        "truncated",
        "unknown-fingerprint",
        "unknown-schema-id",
        "unknown-type",
        "unreadable-state",
        "wrong-topic",
        "wrong-type",
    }
)
"""The codes the runtime writes. Codes found in the topic itself count as known too, so a reason
added to the runtime later (or written by an older version) can be selected without a release."""


def check_reason(reason: str | None, seen: Iterable[str]) -> None:
    """Raise naming the known reasons if ``reason`` is neither documented nor in the topic."""
    here = set(seen)
    if reason is None or reason in DOCUMENTED or reason in here:
        return
    raise ConfigError(
        f"unknown --reason {reason!r}; in this topic: {', '.join(sorted(here)) or 'none'}; "
        f"known: {', '.join(sorted(DOCUMENTED))}"
    )
