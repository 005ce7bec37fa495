"""``choreo schemas push`` and ``choreo schemas check --registry``: the repo against a registry.

The repo is the source of truth. ``push`` registers every version of each event type in order
under its subject (``registry_wire.subject``) and sets the subject's compatibility from
``catalog.toml``; ``check --registry`` asks whether the repo's newest versions may follow what
the registry holds, so CI can gate a deploy. A refusal is printed with the registry's own words
and choreo's reading of the schemas, which names the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from choreo._errors import ChoreoError
from choreo._schemas.avro import record_from_parsed
from choreo._schemas.catalog import Catalog
from choreo._schemas.compat import read_issues
from choreo._schemas.layout import SchemaVersion
from choreo._schemas.registry_client import RegistryClient, RegistryError
from choreo._schemas.registry_wire import fingerprint_of, schema_text, subject

INCOMPATIBLE = 409
"""What the Confluent API answers when a new version breaks the subject's rule."""


def subjects(catalog: Catalog) -> Iterator[tuple[str, str, list[SchemaVersion]]]:
    """Each subject with its compatibility rule and the versions registered under it."""
    for spec in catalog.topics.values():
        for event_type in spec.events:
            yield subject(spec, event_type), spec.compatibility, catalog.versions(event_type)


def push(catalog: Catalog, client: RegistryClient) -> list[str]:
    """Register every version in order; the problems found, one line each."""
    problems: list[str] = []
    for name, rule, versions in subjects(catalog):
        if client.latest(name) is None:  # a rule can only be set on a subject that exists
            client.register(name, schema_text(versions[0]))
        client.set_compatibility(name, rule.upper())
        ids = []
        for version in versions:
            text = schema_text(version)
            try:
                found = client.lookup(name, text)
                ids.append(found if found is not None else client.register(name, text))
            except RegistryError as exc:
                if exc.status != INCOMPATIBLE:
                    raise
                problems.append(_refusal(client, name, rule, version, str(exc)))
                break
        else:
            print(
                f"pushed {name} ({rule}): "
                + ", ".join(f"v{n} id {i}" for n, i in enumerate(ids, 1))
            )
    return problems


def registry_problems(catalog: Catalog, client: RegistryClient) -> list[str]:
    """Whether each subject's registered schema may be followed by the repo's newest version,
    and whether the registry is ahead of the repo: a version registered from elsewhere, whose
    records choreo services would park as ``unknown-fingerprint``."""
    problems = []
    for name, rule, versions in subjects(catalog):
        newest = versions[-1]
        registered = client.latest(name)
        if registered is None:
            continue
        latest = _as_version(registered, newest).fingerprint
        if latest == newest.fingerprint:
            continue
        held = client.version_count(name)
        if latest not in {v.fingerprint for v in versions} and held > len(versions):
            problems.append(
                f"ahead: {name} at {client.url} holds {held} versions, the repo "
                f"{len(versions)} of {newest.event_type}, and its latest is none of the repo's: "
                f"add it to schemas/ (records written with it cannot be read by choreo services)"
            )
            continue
        if not client.compatible(name, schema_text(newest)):
            problems.append(_refusal(client, name, rule, newest, "the registry says incompatible"))
    return problems


def _refusal(client: RegistryClient, name: str, rule: str, new: SchemaVersion, said: str) -> str:
    """One line: the subject, the version refused, why (the field, when choreo can tell)."""
    registered = client.latest(name)
    issues = [] if registered is None else _issues(_as_version(registered, new), new, rule)
    why = "; ".join(issues) or said
    return f"incompatible: {name} at {client.url}: {new.label} ({new.path}) refused ({rule}): {why}"


def _issues(old: SchemaVersion, new: SchemaVersion, rule: str) -> list[str]:
    issues = []
    if rule in ("backward", "full"):
        issues += read_issues(writer=old, reader=new)
    if rule in ("forward", "full"):
        issues += read_issues(writer=new, reader=old)
    return issues


def _as_version(text: str, like: SchemaVersion) -> SchemaVersion:
    """The registered schema as a version older than ``like``, for the compatibility walk."""
    named: dict[str, Any] = {}
    try:
        parsed = cast(dict[str, Any], parse_schema(json.loads(text), named))
        record = record_from_parsed(parsed, named)
    except (SchemaParseException, ValueError, KeyError, TypeError, ChoreoError) as exc:
        raise ChoreoError(
            f"the registered schema of {like.event_type} does not parse: {exc}"
        ) from None
    return SchemaVersion(like.event_type, 0, like.path, parsed, record, fingerprint_of(parsed))
