"""The schema registry wire format: a zero byte, a 4-byte big-endian schema id, the Avro body.

It is what Java's ``KafkaAvroSerializer``, Kafka Connect's Avro converters, ksqlDB and Flink
write. The id names a schema held by the registry, so reading it needs the registry once per
id: :class:`RegistrySchemas` resolves each id to the catalog version with the same schema
(by its CRC-64-AVRO fingerprint) and keeps the answer, and the codec then caches the same
fastavro reader it uses for single-object records. No HTTP call happens per record.

The catalog stays the source of truth: a writer schema that is not a version in ``schemas/``
is refused (``unknown-fingerprint``), as a single-object record of an unknown version is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

from choreo._errors import ConfigError, DecodeError
from choreo._schemas.catalog import Catalog, TopicSpec
from choreo._schemas.layout import SchemaVersion
from choreo._schemas.registry_client import RegistryClient, RegistryError, RegistryUnavailable

MAGIC = 0
HEADER_SIZE = 5
RETRY_AFTER_S = 5.0
"""How long an id the registry could not answer for is refused without asking again: records
with it are parked (and can be replayed) without each one waiting out an HTTP timeout."""


def frame(schema_id: int) -> bytes:
    """The 5-byte header of a record written with registry schema ``schema_id``."""
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big")


def schema_id(header: bytes) -> int:
    """The schema id of a record's 5-byte header (its magic byte already checked)."""
    return int.from_bytes(header[1:HEADER_SIZE], "big")


def subject(spec: TopicSpec, event_type: str) -> str:
    """The subject ``event_type``'s versions are registered under.

    ``<topic>-value`` (the serializers' default TopicNameStrategy) when the topic carries one
    event type; a topic carrying several has one subject per type, ``<topic>-<event type>``
    (TopicRecordNameStrategy), because unrelated records cannot be versions of one subject.
    """
    if len(spec.events) == 1:
        return f"{spec.name}-value"
    return f"{spec.name}-{event_type}"


def fingerprint_of(parsed: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of a parsed schema's canonical form, as the catalog and single-object use."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def schema_text(version: SchemaVersion) -> str:
    """The version's schema as registered: the ``.avsc`` file, docs and defaults kept."""
    return json.dumps(json.loads(version.path.read_text(encoding="utf-8")), separators=(",", ":"))


class RegistrySchemas:
    """Schema ids resolved through one registry, each asked for once and kept.

    ``auto_register`` lets a writer register a version that is missing (dev and tests only:
    in production ``choreo schemas push`` registers the repo's versions, and a service never
    changes what the registry holds).
    """

    def __init__(
        self,
        client: RegistryClient,
        catalog: Catalog,
        *,
        auto_register: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._catalog = catalog
        self._auto_register = auto_register
        self._clock = clock
        self._parsed: dict[int, dict[str, Any]] = {}
        self._versions: dict[int, SchemaVersion] = {}
        self._failed: dict[int, tuple[float, DecodeError]] = {}
        self._ids: dict[SchemaVersion, int] = {}

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        """fastavro's parsed form of the schema registered as ``schema_id``.

        Raises :class:`DecodeError`: ``registry-unavailable`` when the registry cannot be
        asked (then the id is not asked again for :data:`RETRY_AFTER_S`), ``unknown-schema-id``
        when it does not know the id, ``not-avro`` when the schema is not Avro.
        """
        parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        failed = self._failed.get(schema_id)
        if failed is not None and failed[0] > self._clock():
            raise failed[1]
        try:
            text = self.client.schema(schema_id)
        except (RegistryUnavailable, RegistryError) as exc:
            error = _fetch_error(schema_id, exc, self.client.url)
            self._failed[schema_id] = (self._clock() + RETRY_AFTER_S, error)
            raise error from None
        try:
            parsed = cast(dict[str, Any], parse_schema(json.loads(text)))
        except (SchemaParseException, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DecodeError(
                "not-avro", f"schema id {schema_id} at {self.client.url} is not Avro: {exc}"
            ) from None
        self._failed.pop(schema_id, None)
        self._parsed[schema_id] = parsed
        return parsed

    def version_of(self, schema_id: int) -> SchemaVersion:
        """The catalog version whose schema the registry holds as ``schema_id``."""
        version = self._versions.get(schema_id)
        if version is not None:
            return version
        parsed = self.writer_schema(schema_id)
        found = fingerprint_of(parsed)
        version = self._catalog.fingerprints.get(found)
        if version is None:
            raise DecodeError(
                "unknown-fingerprint",
                f"schema id {schema_id} at {self.client.url} ({parsed.get('name')}, "
                f"fingerprint {found.hex()}) is no version in the catalog",
            )
        self._versions[schema_id] = version
        return version

    def id_of(self, version: SchemaVersion) -> int:
        """The registry's id for ``version``, looked up under its subject (asked once)."""
        known = self._ids.get(version)
        if known is not None:
            return known
        name = subject(self._catalog.topic_of(version.event_type), version.event_type)
        text = schema_text(version)
        found = self.client.lookup(name, text)
        if found is None and self._auto_register:
            found = self.client.register(name, text)
        if found is None:
            raise ConfigError(
                f"{version.label} ({version.path}) is not registered under subject {name} "
                f"at {self.client.url}; run `choreo schemas push`"
            )
        self._ids[version] = found
        self._versions.setdefault(found, version)
        return found


def _fetch_error(schema_id: int, exc: Exception, url: str) -> DecodeError:
    if isinstance(exc, RegistryError) and exc.status == 404:
        return DecodeError("unknown-schema-id", f"schema id {schema_id} is not in {url}")
    return DecodeError("registry-unavailable", f"schema id {schema_id}: {exc}")
