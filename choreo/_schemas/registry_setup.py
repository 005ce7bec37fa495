"""Whether a service talks to the schema registry, and the start-up check when it does.

A service uses the registry when its catalog writes a topic in the registry wire format or its
config sets a ``[schema_registry]`` value (``url``...); otherwise it never calls one
(registry-framed records are then parked as ``registry-framed``), so a deployment without a
registry keeps working.
"""

from __future__ import annotations

import asyncio

from choreo._config import ServiceConfig
from choreo._schemas.catalog import Catalog
from choreo._schemas.registry_client import RegistryClient
from choreo._schemas.registry_wire import RegistrySchemas


def registry_for(config: ServiceConfig, catalog: Catalog) -> RegistrySchemas | None:
    """The registry a codec resolves ids with, or None; no call is made here."""
    configured = bool(config.schema_registry.model_fields_set)  # an empty table does not count
    if not (configured or any(t.wire_format == "registry" for t in catalog.topics.values())):
        return None
    settings = config.schema_registry
    client = RegistryClient(settings.url, settings.timeout_s)
    return RegistrySchemas(client, catalog, auto_register=settings.auto_register)


async def check_registry(registry: RegistrySchemas | None) -> None:
    """Fail start-up with one line naming the URL when the registry does not answer.

    Later outages are survived: ids already resolved stay cached.
    """
    if registry is not None:
        await asyncio.to_thread(registry.client.ping)
