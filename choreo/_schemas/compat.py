"""Schema evolution: can a reader holding one version decode what another version wrote?

The Avro resolution rules are applied to the schemas themselves rather than by round-tripping
sample data, so a break is found even for values no fixture happens to contain. Named types
match the way fastavro's reader matches them (unqualified name or an alias), so "compatible"
here means "fastavro will resolve it" at run time.

Checks are transitive: each version against every earlier one, because a consumer replaying a
topic from the start meets all of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from choreo._schemas.avro import (
    Array,
    AvroType,
    Enum,
    Field,
    Fixed,
    Map,
    Named,
    Primitive,
    Record,
    Union,
    describe,
    short_name,
)
from choreo._schemas.catalog import Catalog
from choreo._schemas.layout import SchemaVersion

# Writer type -> reader types it may be read as (Avro spec, "Schema Resolution").
_PROMOTIONS = {
    "int": ("long", "float", "double"),
    "long": ("float", "double"),
    "float": ("double",),
    "string": ("bytes",),
    "bytes": ("string",),
}


def check_catalog(catalog: Catalog) -> list[str]:
    """Every break of a topic's compatibility rule, one human-readable line each."""
    problems: list[str] = []
    for event_type in catalog.event_types:
        rule = catalog.compatibility_of(event_type)
        versions = catalog.versions(event_type)
        for index, new in enumerate(versions):
            for old in versions[:index]:
                problems.extend(_check_pair(old, new, rule))
    return problems


def read_issues(writer: SchemaVersion, reader: SchemaVersion) -> list[str]:
    """Why ``reader`` cannot decode data written with ``writer``; empty when it can."""
    old = min(writer, reader, key=lambda v: v.version)
    resolver = _Resolver(reader_is_new=reader is not old, old_label=f"v{old.version}")
    return resolver.issues(writer.record, reader.record, "")


def _check_pair(old: SchemaVersion, new: SchemaVersion, rule: str) -> list[str]:
    problems = []
    if rule in ("backward", "full"):
        problems += [
            f"{new.label} is not backward compatible with v{old.version}: {issue}"
            for issue in read_issues(writer=old, reader=new)
        ]
    if rule in ("forward", "full"):
        problems += [
            f"{new.label} is not forward compatible with v{old.version}: {issue}"
            for issue in read_issues(writer=new, reader=old)
        ]
    return problems


class _Resolver:
    """Walks a writer and a reader type together, phrasing issues as old → new changes."""

    def __init__(self, *, reader_is_new: bool, old_label: str) -> None:
        self._reader_is_new = reader_is_new
        self._old_label = old_label

    def issues(self, writer: AvroType, reader: AvroType, path: str) -> list[str]:
        if isinstance(writer, Union):
            picked = [_pick(branch, reader) for branch in writer.branches]
            if any(p is None for p in picked):
                return [self._changed(writer, reader, path)]
            return _unique(
                issue
                for branch, target in zip(writer.branches, picked, strict=True)
                if target is not None
                for issue in self._resolved(branch, target, path)
            )
        target = _pick(writer, reader)
        if target is None:
            return [self._changed(writer, reader, path)]
        return self._resolved(writer, target, path)

    def _resolved(self, writer: AvroType, reader: AvroType, path: str) -> list[str]:
        """Issues between two types already known to be of matching kinds."""
        match writer, reader:
            case (Fixed(), Fixed()) if writer.size != reader.size:
                return [self._changed(writer, reader, path)]
            case (Primitive() | Fixed(), Primitive() | Fixed()) if writer.logical != reader.logical:
                return [self._changed(writer, reader, path)]
            case (Enum(), Enum()):
                return self._enum_issues(writer, reader, path)
            case (Array(), Array()):
                return self.issues(writer.items, reader.items, f"{path}[]")
            case (Map(), Map()):
                return self.issues(writer.values, reader.values, f"{path}{{}}")
            case (Record(), Record()):
                return self._record_issues(writer, reader, path)
        return []

    def _record_issues(self, writer: Record, reader: Record, path: str) -> list[str]:
        by_name = {field.name: field for field in writer.fields}
        problems: list[str] = []
        for field in reader.fields:
            field_path = f"{path}.{field.name}" if path else field.name
            source = _writer_field(by_name, field)
            if source is not None:
                problems += self.issues(source.type, field.type, field_path)
            elif not field.has_default:
                problems.append(
                    f"field '{field_path}' was added without a default"
                    if self._reader_is_new
                    else f"field '{field_path}' was removed but {self._old_label} has no "
                    "default for it"
                )
        return problems

    def _enum_issues(self, writer: Enum, reader: Enum, path: str) -> list[str]:
        if reader.default is not None:
            return []
        verb = "removed" if self._reader_is_new else "added"
        return [
            f"{_where(path)}enum {reader.name} symbol '{symbol}' was {verb} "
            "and the enum has no default"
            for symbol in writer.symbols
            if symbol not in reader.symbols
        ]

    def _changed(self, writer: AvroType, reader: AvroType, path: str) -> str:
        old, new = (writer, reader) if self._reader_is_new else (reader, writer)
        return f"{_where(path)}type changed from {describe(old)} to {describe(new)}"


def _pick(writer: AvroType, reader: AvroType) -> AvroType | None:
    """The reader type (or first reader union branch) that ``writer`` resolves to, if any."""
    candidates = reader.branches if isinstance(reader, Union) else (reader,)
    return next((c for c in candidates if _same_kind(writer, c)), None)


def _same_kind(writer: AvroType, reader: AvroType) -> bool:
    match writer, reader:
        case (Primitive(name=w), Primitive(name=r)):
            return w == r or r in _PROMOTIONS.get(w, ())
        case (Enum() | Fixed() | Record(), Enum() | Fixed() | Record()):
            return type(writer) is type(reader) and _names_match(writer, reader)
        case (Array(), Array()) | (Map(), Map()):
            return True
    return False


def _names_match(writer: Named, reader: Named) -> bool:
    name = short_name(writer.name)
    return name == short_name(reader.name) or bool({writer.name, name} & set(reader.aliases))


def _writer_field(by_name: dict[str, Field], field: Field) -> Field | None:
    for name in (field.name, *field.aliases):
        if name in by_name:
            return by_name[name]
    return None


def _where(path: str) -> str:
    return f"field '{path}': " if path else ""


def _unique(issues: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(issues))
