"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + binary body.

The fingerprint names the exact writer schema, so a consumer can decode records written by any
published version without a registry round trip; the catalog is the registry.

Decoding is the consumer's hot path, so everything that depends only on the (writer
fingerprint, model) pair is worked out once and frozen into a closure: per record the codec
does the header checks, one dict lookup and the read. A record written with the model's own
schema version is read by a reader generated for that pair (``fastread``: no fastavro dicts,
no pydantic pass); other versions go through fastavro's schema resolution and pydantic.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from io import BytesIO
from typing import Any, TypeVar, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from pydantic import ValidationError

from choreo._errors import ConfigError, DecodeError, SchemaError
from choreo._schemas import payloads
from choreo._schemas.binding import newest_match
from choreo._schemas.catalog import Catalog
from choreo._schemas.compat import read_issues
from choreo._schemas.event import Event
from choreo._schemas.fastread import fast_payload_reader, fast_reader
from choreo._schemas.fastwrite import fast_writer
from choreo._schemas.layout import SchemaVersion
from choreo._schemas.registry_wire import HEADER_SIZE as REGISTRY_HEADER_SIZE
from choreo._schemas.registry_wire import MAGIC as REGISTRY_MAGIC
from choreo._schemas.registry_wire import RegistrySchemas, frame, schema_id

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10
DEFAULT_MAX_BYTES = 1 << 20

_E = TypeVar("_E", bound=Event)
_T = TypeVar("_T")
_Reader = Callable[[bytes], Event]
_Writer = Callable[[Event], bytes]

# What fastavro raises on bytes that are not a body of the writer schema. Arbitrary bytes hit
# many code paths (enum/union indexes, UTF-8, varints, dates), so this list is broad on purpose.
_CORRUPT = (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error)


class Codec:
    """Encodes events to and decodes them from the single-object wire format, or the schema
    registry's (``registry_wire``) for topics that use it; decoding accepts both anywhere."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        registry: RegistrySchemas | None = None,
        fast: bool = True,
    ) -> None:
        """``registry`` reads registry-framed records and writes the topics that use it.

        ``fast=False`` always validates in pydantic and writes through ``model_dump`` and
        fastavro: what the generated readers and writers (``fastread``, ``fastwrite``) are
        tested against, and the baseline the benchmarks compare them with.
        """
        self._fast = fast
        self._catalog = catalog
        self._registry = registry
        self._max_bytes = max_bytes
        self._bound: dict[type[Event], SchemaVersion] = {}
        self._models: dict[str, type[Event]] = {}
        self._writers: dict[type[Event], _Writer] = {}
        self._readers: dict[tuple[bytes, type[Event]], _Reader] = {}
        self._any_readers: dict[bytes, _Reader] = {}

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def registry(self) -> RegistrySchemas | None:
        """The registry ids are resolved with (CDC decoders read Debezium's schemas through it)."""
        return self._registry

    def register(self, *models: type[Event]) -> None:
        """Make ``models`` the ones :meth:`decode_any` builds for their event types.

        Raises :class:`SchemaError` for a model that matches no version of its schema.
        """
        for model in models:
            self._version_of(model)
            self._models[model.event_type] = model
        self._any_readers.clear()  # they were bound to the models registered before

    def encode(self, event: Event) -> bytes:
        """The event written with its model's schema version (the latest, for generated models)."""
        try:
            write = self._writers[type(event)]
        except KeyError:
            write = self._bind_writer(type(event))
        return write(event)

    def decode(self, data: bytes | None, model: type[_E]) -> _E:
        """Decode a record written with any published version into ``model``.

        The writer's version is resolved to the newest version ``model`` matches. Raises
        :class:`DecodeError` for poison input (its ``reason`` says which kind) and
        :class:`SchemaError` when ``model`` matches no version of its schema.
        """
        fingerprint = self._fingerprint(data)
        try:
            read = self._readers[fingerprint, model]
        except KeyError:
            read = self._bind_reader(fingerprint, model)
        # Not None (_fingerprint checked) and a model of ``model``; no cast(): a call per record.
        return read(data)  # type: ignore[arg-type,return-value]

    def decoder(self, model: type[_E]) -> Callable[[bytes | None], _E]:
        """``decode`` bound to ``model``, for a consumer's hot path.

        A single-object record (within the size limit) whose writer version was read before
        goes straight to its reader: one slice and one dict lookup, not ``decode``'s two
        calls and checks. Every other record, and the first of each version, goes through
        ``decode``, which raises what it always raised.
        """

        def decode_model(data: bytes | None) -> _E:
            return self.decode(data, model)

        def bound(fingerprint: bytes) -> Callable[[bytes], _E]:
            # decode_model bound it for (fingerprint, model): a reader of ``model``
            return cast(Callable[[bytes], _E], self._readers[fingerprint, model])

        return self._by_version(decode_model, bound)

    def payload_decoder(self, model: type[Event]) -> Callable[[bytes | None], dict[str, Any]]:
        """:meth:`decoder`, returning the event's fields as JSON values (:func:`payloads.dump`
        of the model it would return) instead of the model: what a saga state stores, read
        straight from the bytes when the writer's version is the model's (no model, nor its
        dump, is built). Raises what :meth:`decode` raises, for the same records, and
        ``invalid`` for a model its own serializer cannot write."""
        decode = self.decoder(model)

        def authority(data: bytes | None) -> dict[str, Any]:
            event = decode(data)
            try:
                return payloads.dump(event)
            except Exception as exc:  # a model's own serializer: dead-letter, not stop
                raise DecodeError(
                    "invalid", f"{model.event_type}: its fields cannot be written as JSON: {exc}"
                ) from None

        def bind(fingerprint: bytes) -> Callable[[bytes], dict[str, Any]]:
            writer = self._writer(fingerprint)
            fast = None
            if self._fast and writer is self._version_of(model):
                fast = fast_payload_reader(writer.record, model, HEADER_SIZE)
            return _with_fallback(fast, authority)

        return self._by_version(authority, bind)

    def _by_version(
        self, read: Callable[[bytes | None], _T], bind: Callable[[bytes], Callable[[bytes], _T]]
    ) -> Callable[[bytes | None], _T]:
        """``read``, except that a single-object record (within the size limit) of a writer
        version read before goes straight to the reader ``bind`` made for that version (its
        fingerprint) after ``read`` took its first record: one slice and one dict lookup per
        record, not ``read``'s calls and checks. ``read`` raises what it always raised for
        every other record, and for the first of each version."""
        limit = self._max_bytes
        known: dict[bytes, Callable[[bytes], _T]] = {}

        def read_known(data: bytes | None) -> _T:
            if data is not None and HEADER_SIZE <= len(data) <= limit and data[:2] == MAGIC:
                fingerprint = data[2:HEADER_SIZE]
                reader = known.get(fingerprint)
                if reader is not None:
                    return reader(data)
                value = read(data)
                known[fingerprint] = bind(fingerprint)
                return value
            return read(data)

        return read_known

    def decode_any(self, data: bytes | None) -> Event:
        """Decode into whichever registered model has the writer's event type."""
        fingerprint = self._fingerprint(data)
        try:
            read = self._any_readers[fingerprint]
        except KeyError:
            writer = self._writer(fingerprint)
            model = self._models.get(writer.event_type)
            if model is None:
                raise DecodeError(
                    "unknown-type", f"no model is registered for {writer.event_type}"
                ) from None
            read = self._any_readers[fingerprint] = self._bind_reader(fingerprint, model)
        return read(cast(bytes, data))

    def event_type_of(self, data: bytes | None) -> str:
        """The writer schema's event type, read from the header alone."""
        return self._writer(self._fingerprint(data)).event_type

    def _fingerprint(self, data: bytes | None) -> bytes:
        if data is None:
            raise DecodeError("tombstone", "the record has no value (a tombstone)")
        size = len(data)
        if size > self._max_bytes:
            raise DecodeError(
                "too-large", f"the record has {size} bytes, over the {self._max_bytes} limit"
            )
        if size < HEADER_SIZE or data[:2] != MAGIC:
            registry_framed = size >= REGISTRY_HEADER_SIZE and data[0] == REGISTRY_MAGIC
            if registry_framed and self._registry is not None:
                return data[:REGISTRY_HEADER_SIZE]  # the key of its reader, as a fingerprint is
            if registry_framed and schema_id(data) > 0:
                # What Java Avro producers send (registries number schemas from 1): parked
                # apart from random bytes, as a registry could read it.
                raise DecodeError(
                    "registry-framed",
                    f"the record is in the schema registry wire format (schema id "
                    f"{schema_id(data)}), and no [schema_registry] is configured to read it",
                )
            raise DecodeError(
                "not-avro",
                "the record does not start with an Avro single-object header "
                "(C3 01 and an 8-byte schema fingerprint)",
            )
        return data[2:HEADER_SIZE]

    def _writer(self, fingerprint: bytes) -> SchemaVersion:
        if len(fingerprint) == REGISTRY_HEADER_SIZE and self._registry is not None:
            return self._registry.version_of(schema_id(fingerprint))
        writer = self._catalog.fingerprints.get(fingerprint)
        if writer is None:
            raise DecodeError(
                "unknown-fingerprint",
                f"no schema in the catalog has fingerprint {fingerprint.hex()}",
            )
        return writer

    def _version_of(self, model: type[Event]) -> SchemaVersion:
        bound = self._bound.get(model)
        if bound is not None:
            return bound
        event_type = getattr(model, "event_type", None)
        if not isinstance(event_type, str):
            raise SchemaError(f"model {model.__qualname__} does not set event_type")
        version = self._bound[model] = newest_match(model, self._catalog.versions(event_type))
        return version

    def _bind_writer(self, model: type[Event]) -> _Writer:
        version = self._version_of(model)
        header = self._header(version)
        write = _dumping_writer(header, version.schema)
        if self._fast:
            write = _with_fallback(fast_writer(version.record, model, header), write)
        self._writers[model] = write
        return write

    def _header(self, version: SchemaVersion) -> bytes:
        """What records of ``version`` start with, in their topic's wire format."""
        if self._catalog.wire_format_of(version.event_type) != "registry":
            return MAGIC + version.fingerprint
        if self._registry is None:
            topic = self._catalog.topic_of(version.event_type).name
            raise ConfigError(
                f"topic {topic} is written in the registry wire format (catalog.toml) "
                "but no schema registry is configured for this codec"
            )
        return frame(self._registry.id_of(version))

    def _bind_reader(self, fingerprint: bytes, model: type[Event]) -> _Reader:
        reader = self._version_of(model)
        writer = self._writer(fingerprint)
        if writer.event_type != reader.event_type:
            raise DecodeError(
                "wrong-type", f"the record holds {writer.event_type}, not {reader.event_type}"
            )
        issues = read_issues(writer, reader)
        if issues:
            read = _refuse(writer, reader, issues[0])
        else:
            registry_framed = len(fingerprint) == REGISTRY_HEADER_SIZE
            start = REGISTRY_HEADER_SIZE if registry_framed else HEADER_SIZE
            read = _reader(writer, reader, model, start)
            if self._fast and writer is reader:
                read = _with_fallback(fast_reader(writer.record, model, start), read)
        self._readers[fingerprint, model] = read
        return read


def _refuse(writer: SchemaVersion, reader: SchemaVersion, issue: str) -> _Reader:
    """Every record of an unreadable writer version fails alike; no need to re-check each."""
    message = f"{reader.label} cannot read data written with v{writer.version}: {issue}"

    def refuse(data: bytes) -> Event:
        raise DecodeError("incompatible", message)

    return refuse


def _reader(
    writer: SchemaVersion, reader: SchemaVersion, model: type[Event], start: int
) -> _Reader:
    """A closure doing only the per-record work for one (writer, model) pair; the body
    starts at ``start`` (after the single-object or the registry header)."""
    writer_schema = writer.schema
    # fastavro skips schema resolution entirely when there is no reader schema.
    reader_schema = None if reader is writer else reader.schema
    validate = model.__pydantic_validator__.validate_python  # model_validate minus a wrapper
    label = writer.label

    def read(data: bytes) -> Event:
        body = BytesIO(data)
        body.seek(start)
        try:
            record = schemaless_reader(body, writer_schema, reader_schema)
        except (EOFError, StopIteration) as exc:
            raise DecodeError("truncated", f"{label}: the body ends early ({exc})") from None
        except SchemaResolutionError as exc:
            raise DecodeError("incompatible", f"{label}: {exc}") from None
        except _CORRUPT as exc:
            raise DecodeError("not-avro", f"{label}: the body does not decode: {exc}") from None
        if body.tell() != len(data):
            raise DecodeError(
                "not-avro", f"{label}: {len(data) - body.tell()} bytes after the body"
            )
        try:
            return cast(Event, validate(record))
        except ValidationError as exc:
            raise DecodeError("invalid", f"{label}: {_first_error(exc)}") from None

    return read


def _dumping_writer(header: bytes, schema: dict[str, Any]) -> _Writer:
    """``model_dump`` and fastavro's writer: every model, and the authority on odd values."""

    def write(event: Event) -> bytes:
        out = BytesIO()
        out.write(header)
        schemaless_writer(out, schema, event.model_dump(by_alias=True))
        return out.getvalue()

    return write


_In = TypeVar("_In")
_Out = TypeVar("_Out")


def _with_fallback(
    fast: Callable[[_In], Any] | None, authority: Callable[[_In], _Out]
) -> Callable[[_In], _Out]:
    """The generated reader or writer, handing to the authority (the validating reader, the
    dumping writer) every input it does not take.

    The authority raises the error (and the dead-letter reason) an input always got, so the
    generated function need not reproduce them.
    """
    if fast is None:
        return authority

    def run(given: _In) -> _Out:
        try:
            return fast(given)  # type: ignore[no-any-return]  # cast() costs a call
        except Exception:
            return authority(given)

    return run


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"field '{where}': {first['msg']}{more}"
