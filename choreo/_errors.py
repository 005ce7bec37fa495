"""One small error tree, so users can catch ``ChoreoError`` and still tell causes apart."""

from __future__ import annotations


class ChoreoError(Exception):
    """Base of every error choreo raises on purpose."""


class ConfigError(ChoreoError):
    """Settings that cannot work: a bad value, a missing required option."""


class SchemaError(ChoreoError):
    """A schema that does not parse, or a model that does not match its schema."""


class IncompatibleSchemaError(SchemaError):
    """A new schema version breaks the topic's compatibility rule."""


class TopologyError(ChoreoError):
    """Handlers, topics and groups that cannot be wired together."""


class TransportError(ChoreoError):
    """The broker could not be reached or refused an operation."""


class SecurityError(TransportError):
    """The broker refused who we are (authentication) or what we asked (authorization).

    Retrying cannot help until someone changes credentials or ACLs, so the
    runtime stops instead of retrying; the message names the principal's
    setting or the topic/group, and the fix.
    """


class DecodeError(ChoreoError):
    """A record that cannot become an event: a poison message.

    ``reason`` is a short stable code (``not-avro``, ``unknown-fingerprint``,
    ``truncated``, ``invalid``, ``tombstone``, ``too-large``, ``unknown-type``,
    ``wrong-type``, ``incompatible``; for CDC topics ``not-json`` and
    ``not-debezium``) so DLQ consumers can group failures without parsing
    prose.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
