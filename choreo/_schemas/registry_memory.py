"""A schema registry held in a dict, for ``choreo.testing``'s in-memory transport.

Handler unit tests run without a registry server; a service whose catalog writes a topic in
the registry wire format still encodes and decodes through the same codec path, with ids
given out as a registry would (one per distinct schema, from 1).
"""

from __future__ import annotations

from choreo._schemas.catalog import Catalog
from choreo._schemas.registry_client import RegistryClient, RegistryError
from choreo._schemas.registry_wire import RegistrySchemas


class MemoryRegistry(RegistryClient):
    """The calls ``RegistrySchemas`` makes, answered from memory."""

    def __init__(self) -> None:
        super().__init__("memory://registry", timeout_s=0.0)
        self._ids: dict[str, int] = {}
        self._subjects: dict[tuple[str, str], int] = {}

    def ping(self) -> None:
        """Always up."""

    def schema(self, schema_id: int) -> str:
        for text, known in self._ids.items():
            if known == schema_id:
                return text
        raise RegistryError(f"schema id {schema_id} is not in {self.url}", 404)

    def lookup(self, subject: str, schema: str) -> int | None:
        return self._subjects.get((subject, schema))

    def register(self, subject: str, schema: str) -> int:
        found = self._ids.setdefault(schema, len(self._ids) + 1)
        self._subjects[subject, schema] = found
        return found


def memory_registry(catalog: Catalog) -> RegistrySchemas | None:
    """An in-memory registry when the catalog writes a topic in the registry format."""
    if all(spec.wire_format != "registry" for spec in catalog.topics.values()):
        return None
    return RegistrySchemas(MemoryRegistry(), catalog, auto_register=True)
