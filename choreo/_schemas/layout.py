"""Reading the ``schemas/`` tree: one ``Name.vN.avsc`` per published version of an event type.

The path is part of the contract (``schemas/shop/orders/OrderPlaced.v2.avsc`` must hold
``shop.orders.OrderPlaced``), so a reviewer can tell from a diff's file list which event
changed and whether a new version was added or an old one edited.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

from choreo._errors import SchemaError
from choreo._schemas.avro import Record, record_from_parsed

_FILE_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc\Z")


@dataclass(frozen=True, eq=False)
class SchemaVersion:
    """One published version of an event type's schema."""

    event_type: str
    version: int
    path: Path
    schema: dict[str, Any]
    """fastavro's parsed form, ready to hand to its readers and writers."""
    record: Record
    fingerprint: bytes
    """CRC-64-AVRO of the parsing canonical form, little-endian, as on the wire."""

    @property
    def label(self) -> str:
        return f"{self.event_type} v{self.version}"


def load_versions(schemas_dir: Path) -> dict[str, list[SchemaVersion]]:
    """Every ``.avsc`` under ``schemas_dir``, grouped by event type, versions in order."""
    by_type: dict[str, list[SchemaVersion]] = defaultdict(list)
    for path in sorted(schemas_dir.rglob("*.avsc")):
        version = _load_file(path, schemas_dir)
        by_type[version.event_type].append(version)
    for event_type, versions in by_type.items():
        versions.sort(key=lambda v: v.version)
        numbers = [v.version for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
            raise SchemaError(
                f"{event_type}: versions must run v1, v2, ... without gaps; "
                f"missing {', '.join(f'v{n}' for n in missing)} "
                f"(every published version stays in schemas/)"
            )
    return dict(sorted(by_type.items()))


def _load_file(path: Path, schemas_dir: Path) -> SchemaVersion:
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise SchemaError(f"{path}: schema files are named Name.vN.avsc (e.g. OrderPlaced.v1.avsc)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaError(f"{path}: an event schema must be a JSON object of type 'record'")
    named: dict[str, Any] = {}
    try:
        parsed = cast(dict[str, Any], parse_schema(raw, named))
    except (SchemaParseException, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"{path}: fastavro cannot parse it: {exc}") from exc
    try:
        record = record_from_parsed(parsed, named)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc

    namespace = ".".join(path.parent.relative_to(schemas_dir).parts)
    expected = f"{namespace}.{match['name']}" if namespace else match["name"]
    if record.name != expected:
        raise SchemaError(
            f"{path}: the file's place says {expected} but the schema is named {record.name}"
        )
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        event_type=record.name,
        version=int(match["version"]),
        path=path,
        schema=parsed,
        record=record,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )
