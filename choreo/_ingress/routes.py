"""Routes of the ingress: ``METHOD /path`` → the event type its JSON body is.

Bodies are validated by the event's pydantic model, the one handlers see, so
a request the ingress accepts is an event every consumer can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from choreo._cli.targets import import_target
from choreo._errors import ConfigError
from choreo._schemas import Catalog, Event

METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    model: type[Event]
    topic: str


def parse_route(text: str) -> tuple[str, str]:
    """``"POST /orders=shop.orders.OrderReceived"`` → ``("POST /orders", "shop.orders...")``."""
    where, sep, event_type = text.rpartition("=")
    if not sep or not where.strip() or not event_type.strip():
        raise ConfigError(f"route {text!r}: expected 'METHOD /path=event.Type'")
    return where.strip(), event_type.strip()


def build_routes(
    routes: Mapping[str, str], catalog: Catalog, models_module: str | None
) -> dict[tuple[str, str], Route]:
    """Every route resolved to its model and topic; errors name the route."""
    if not routes:
        raise ConfigError("no routes: give --route 'POST /path=event.Type' or [ingress.routes]")
    models = event_models(catalog, models_module)
    built: dict[tuple[str, str], Route] = {}
    for where, event_type in sorted(routes.items()):
        method, _, path = where.strip().partition(" ")
        method, path = method.upper(), path.strip()
        if method not in METHODS or not path.startswith("/"):
            raise ConfigError(
                f"route {where!r}: expected '{'|'.join(METHODS)} /path' (e.g. 'POST /orders')"
            )
        model = models.get(event_type)
        if model is None:
            raise ConfigError(
                f"route {where!r}: no event model for {event_type!r} in the models module"
            )
        built[(method, path)] = Route(method, path, model, catalog.topic_of(event_type).name)
    return built


def event_models(catalog: Catalog, module_name: str | None) -> dict[str, type[Event]]:
    """The Event classes of ``module_name`` (default: the catalog's generated module) by type."""
    if module_name is None:
        if catalog.codegen_module is None:
            raise ConfigError(
                "no models module: set [ingress] models or the catalog's [codegen] module"
            )
        module_name = ".".join(Path(catalog.codegen_module).with_suffix("").parts)
    module, _ = import_target(module_name, "models")
    return {
        value.event_type: value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Event) and value is not Event
    }
