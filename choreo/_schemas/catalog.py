"""The catalog: every schema version plus ``catalog.toml``'s topics, checked against each other.

Everything that can be wrong with the event contracts is detected here, at load, so that a
service fails at start-up (or in CI) with a message naming the file, topic and field instead of
failing on the first record it consumes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from choreo._errors import SchemaError, TopologyError
from choreo._schemas.avro import Primitive
from choreo._schemas.layout import SchemaVersion, load_versions
from choreo._transport.base import TopicConfig

CATALOG_FILE = "catalog.toml"
COMPATIBILITY_RULES = ("backward", "forward", "full", "none")
DEFAULT_COMPATIBILITY = "backward"
WIRE_FORMATS = ("single-object", "registry")
DEFAULT_WIRE_FORMAT = "single-object"
"""What choreo writes unless a topic says otherwise: it needs no registry. Readers accept both."""

_TOPIC_KEYS = {
    "events",
    "key",
    "partitions",
    "retention_ms",
    "compatibility",
    "scheduled",
    "replication_factor",
    "min_insync_replicas",
    "configs",
    "wire_format",
}
_DEDICATED_CONFIGS = {"retention.ms": "retention_ms", "min.insync.replicas": "min_insync_replicas"}
"""Broker configs that have their own catalog key: one place to set each."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as declared in ``catalog.toml``; ``retention_ms=None`` means the broker default."""

    name: str
    events: tuple[str, ...]
    key: str
    partitions: int = 1
    retention_ms: int | None = None
    compatibility: str = DEFAULT_COMPATIBILITY
    scheduled: bool = False
    """Records may carry a delivery time (``ctx.emit(event, at=...)``) and consumers hold each
    one until then. A held record holds up the partition behind it, so a scheduled topic
    should carry only delayed events with about the same delay."""
    replication_factor: int | None = None
    """Replicas of each partition; None: the broker's ``default.replication.factor``."""
    min_insync_replicas: int | None = None
    """Replicas an ``acks=all`` write must reach; None: the broker's default."""
    configs: tuple[tuple[str, str], ...] = ()
    """Other topic configs by Kafka's names (``cleanup.policy``, ``segment.ms``...)."""
    wire_format: str = DEFAULT_WIRE_FORMAT
    """How choreo writes this topic's events: ``single-object`` (``C3 01`` + fingerprint) or
    ``registry`` (``00`` + schema registry id, what Java and Connect clients read)."""

    def broker_configs(self) -> dict[str, str]:
        """Every topic config the catalog sets, by Kafka's names (what drift is checked on)."""
        settings = dict(self.configs)
        if self.retention_ms is not None:
            settings["retention.ms"] = str(self.retention_ms)
        if self.min_insync_replicas is not None:
            settings["min.insync.replicas"] = str(self.min_insync_replicas)
        return settings

    def topic_config(self) -> TopicConfig:
        """What ``ensure_topics`` creates for this topic when it is missing."""
        return TopicConfig(
            self.name,
            self.partitions,
            replication_factor=self.replication_factor,
            configs=tuple(sorted(self.broker_configs().items())),
        )


class Catalog:
    """Read-only view of the validated schemas and topics; build it with :meth:`load`."""

    def __init__(
        self,
        versions: Mapping[str, list[SchemaVersion]],
        topics: Mapping[str, TopicSpec],
        codegen_module: Path | None,
    ) -> None:
        self._versions = {name: tuple(vs) for name, vs in versions.items()}
        self.topics: Mapping[str, TopicSpec] = MappingProxyType(dict(topics))
        self.codegen_module = codegen_module
        self._topic_of = {event: spec for spec in topics.values() for event in spec.events}
        self.fingerprints: Mapping[bytes, SchemaVersion] = MappingProxyType(
            {v.fingerprint: v for vs in self._versions.values() for v in vs}
        )

    @classmethod
    def load(cls, schemas_dir: Path | str) -> Catalog:
        """Parse and cross-check everything; raises :class:`SchemaError` for schema files and
        the config file, :class:`TopologyError` for topics that cannot carry their events."""
        schemas_dir = Path(schemas_dir)
        config_path = schemas_dir / CATALOG_FILE
        try:
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SchemaError(f"{config_path}: cannot read: {exc}") from exc
        unknown = set(config) - {"codegen", "topics"}
        if unknown:
            raise SchemaError(f"{config_path}: unknown section(s) {', '.join(sorted(unknown))}")
        versions = load_versions(schemas_dir)
        topics = {
            name: _topic(config_path, name, table)
            for name, table in sorted(_table(config_path, "topics", config).items())
        }
        _check_topics(topics, versions)
        return cls(versions, topics, _codegen_module(config_path, config))

    @property
    def event_types(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, event_type: str) -> list[SchemaVersion]:
        """All published versions of ``event_type``, oldest first."""
        try:
            return list(self._versions[event_type])
        except KeyError:
            raise SchemaError(f"no schema for event type {event_type} in the catalog") from None

    def latest(self, event_type: str) -> SchemaVersion:
        return self.versions(event_type)[-1]

    def topic_of(self, event_type: str) -> TopicSpec:
        try:
            return self._topic_of[event_type]
        except KeyError:
            raise TopologyError(
                f"no topic in {CATALOG_FILE} carries event type {event_type}"
            ) from None

    def compatibility_of(self, event_type: str) -> str:
        """The topic's rule, or the default for event types no topic carries yet."""
        spec = self._topic_of.get(event_type)
        return spec.compatibility if spec else DEFAULT_COMPATIBILITY

    def wire_format_of(self, event_type: str) -> str:
        """The topic's wire format, or the default for event types no topic carries yet."""
        spec = self._topic_of.get(event_type)
        return spec.wire_format if spec else DEFAULT_WIRE_FORMAT


def _table(config_path: Path, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise SchemaError(f"{config_path}: [{name}] must be a table")
    return value


def _codegen_module(config_path: Path, config: Mapping[str, Any]) -> Path | None:
    codegen = _table(config_path, "codegen", config)
    unknown = set(codegen) - {"module"}
    if unknown:
        raise SchemaError(
            f"{config_path}: [codegen] has unknown key(s) {', '.join(sorted(unknown))}"
        )
    module = codegen.get("module")
    if module is None:
        return None
    if not isinstance(module, str) or not module.endswith(".py") or Path(module).is_absolute():
        raise SchemaError(f"{config_path}: [codegen] module must be a relative path to a .py file")
    return Path(module)


def _topic(config_path: Path, name: str, table: Any) -> TopicSpec:
    where = f"{config_path}: topic '{name}'"
    if not isinstance(table, dict):
        raise TopologyError(f"{where} must be a table")
    unknown = set(table) - _TOPIC_KEYS
    if unknown:
        raise TopologyError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}")
    events = table.get("events")
    if not (isinstance(events, list) and events and all(isinstance(e, str) for e in events)):
        raise TopologyError(f"{where}: 'events' must be a non-empty list of event types")
    if len(set(events)) != len(events):
        raise TopologyError(f"{where}: 'events' lists an event type twice")
    key = table.get("key")
    if not isinstance(key, str):
        raise TopologyError(f"{where}: 'key' must name a string field of its events")
    compatibility = table.get("compatibility", DEFAULT_COMPATIBILITY)
    if compatibility not in COMPATIBILITY_RULES:
        raise TopologyError(
            f"{where}: unknown compatibility {compatibility!r}; "
            f"use one of {', '.join(COMPATIBILITY_RULES)}"
        )
    wire_format = table.get("wire_format", DEFAULT_WIRE_FORMAT)
    if wire_format not in WIRE_FORMATS:
        raise TopologyError(
            f"{where}: unknown wire_format {wire_format!r}; use one of {', '.join(WIRE_FORMATS)}"
        )
    partitions = table.get("partitions", 1)
    retention_ms = table.get("retention_ms")
    if not _positive_int(partitions):
        raise TopologyError(f"{where}: 'partitions' must be a positive integer")
    if retention_ms is not None and not (_positive_int(retention_ms) or retention_ms == -1):
        raise TopologyError(f"{where}: 'retention_ms' must be a positive integer or -1")
    scheduled = table.get("scheduled", False)
    if not isinstance(scheduled, bool):
        raise TopologyError(f"{where}: 'scheduled' must be true or false")
    replication_factor = table.get("replication_factor")
    if replication_factor is not None and not _positive_int(replication_factor):
        raise TopologyError(f"{where}: 'replication_factor' must be a positive integer")
    min_isr = table.get("min_insync_replicas")
    if min_isr is not None and not _positive_int(min_isr):
        raise TopologyError(f"{where}: 'min_insync_replicas' must be a positive integer")
    if min_isr is not None and replication_factor is not None and min_isr > replication_factor:
        raise TopologyError(
            f"{where}: 'min_insync_replicas' ({min_isr}) exceeds 'replication_factor' "
            f"({replication_factor}): no acks=all write could ever succeed"
        )
    return TopicSpec(
        name,
        tuple(events),
        key,
        partitions,
        retention_ms,
        compatibility,
        scheduled,
        replication_factor,
        min_isr,
        _configs(where, table.get("configs", {})),
        wire_format,
    )


def _configs(where: str, table: object) -> tuple[tuple[str, str], ...]:
    """``configs = { "cleanup.policy" = "compact" }``: strings, integers or booleans."""
    if not isinstance(table, dict):
        raise TopologyError(f"{where}: 'configs' must be a table of Kafka topic configs")
    configs = []
    for name, value in sorted(table.items()):
        if name in _DEDICATED_CONFIGS:
            raise TopologyError(
                f"{where}: set '{name}' with the topic's '{_DEDICATED_CONFIGS[name]}' key, "
                "not in 'configs'"
            )
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str | int):
            raise TopologyError(f"{where}: config '{name}' must be a string, integer or boolean")
        configs.append((name, str(value)))
    return tuple(configs)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_topics(
    topics: Mapping[str, TopicSpec], versions: Mapping[str, list[SchemaVersion]]
) -> None:
    carried_by: dict[str, str] = {}
    for spec in topics.values():
        for event_type in spec.events:
            if event_type in carried_by:
                raise TopologyError(
                    f"event type {event_type} is on topics '{carried_by[event_type]}' and "
                    f"'{spec.name}'; an event type belongs to one topic"
                )
            carried_by[event_type] = spec.name
            if event_type not in versions:
                raise TopologyError(
                    f"topic '{spec.name}' lists {event_type} but schemas/ has no "
                    f"{event_type.replace('.', '/')}.v1.avsc"
                )
            for version in versions[event_type]:
                _check_key(spec, version)


def _check_key(spec: TopicSpec, version: SchemaVersion) -> None:
    """The key must be a plain string in every version: old producers still write old ones."""
    field = next((f for f in version.record.fields if f.name == spec.key), None)
    if field is None:
        raise TopologyError(
            f"topic '{spec.name}' is keyed by field '{spec.key}' but {version.label} "
            f"({version.path}) has no such field"
        )
    if not (isinstance(field.type, Primitive) and field.type.name == "string"):
        raise TopologyError(
            f"topic '{spec.name}' is keyed by field '{spec.key}' but in {version.label} "
            f"({version.path}) it is not a string"
        )
