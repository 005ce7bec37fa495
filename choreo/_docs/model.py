"""The system as the docs show it: services, what they handle and emit, and the sagas.

Everything is found by importing the modules of a package (``services``) and looking at
what they define: ``choreo.Service`` objects and ``choreo.saga.Saga`` definitions. Lists are
sorted so that the generated documents only change when the system does.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass

from choreo._cli.targets import import_target
from choreo._docs.emits import service_emits
from choreo._saga.definition import Saga
from choreo._saga.topology import tracker_name
from choreo._schemas import Catalog
from choreo._service import Service


@dataclass(frozen=True)
class Handling:
    """One handler: what it takes (an event type, or a raw topic) and from which topic."""

    handler: str
    topic: str
    event_type: str | None
    """None for topic handlers (CDC, foreign producers)."""


@dataclass(frozen=True)
class Application:
    """A service, a saga tracker or the HTTP ingress: what it reads and what it writes."""

    name: str
    kind: str
    """"ingress", "saga tracker" or "service"."""
    module: str
    """What ``choreo run`` / ``choreo saga run`` takes ("" for the ingress: it has routes)."""
    handles: tuple[Handling, ...]
    emits: tuple[str, ...]
    """Event types, sorted."""


@dataclass(frozen=True)
class System:
    catalog: Catalog
    applications: tuple[Application, ...]
    sagas: tuple[Saga, ...]

    def topic_of(self, event_type: str) -> str:
        return self.catalog.topic_of(event_type).name


def discover(package: str, catalog: Catalog, ingress_routes: dict[str, str]) -> System:
    """Every Service and Saga in ``package`` and its sub-packages, plus the ingress routes."""
    services: dict[str, Service] = {}
    holders: dict[str, list[str]] = {}
    sagas: dict[tuple[str, int], tuple[str, Saga]] = {}
    for module_name in _modules(package):
        module, _ = import_target(module_name, "docs")
        for value in vars(module).values():
            if isinstance(value, Service):
                services.setdefault(value.name, value)
                holders.setdefault(value.name, []).append(module_name)
            elif isinstance(value, Saga):
                sagas.setdefault((value.name, value.version), (module_name, value))
    applications = [
        _service(_runnable(service, holders[name]), service, catalog)
        for name, service in services.items()
    ]
    newest = {name: found for (name, _), found in sorted(sagas.items())}
    applications += [_tracker(module, saga, catalog) for module, saga in newest.values()]
    if ingress_routes:
        sent = tuple(sorted(set(ingress_routes.values())))
        applications.append(Application("ingress", "ingress", "", (), sent))
    return System(
        catalog,
        tuple(sorted(applications, key=lambda a: (a.kind, a.name))),
        tuple(saga for _, (_, saga) in sorted(sagas.items())),
    )


def _modules(package: str) -> list[str]:
    root, _ = import_target(package, "docs")
    names = [package]
    if hasattr(root, "__path__"):
        names += [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return sorted(names)


def _runnable(service: Service, holders: list[str]) -> str:
    """The module to ``choreo run``: where the handlers are defined if it holds the Service
    (not one that merely imports it), else the first that does (a package built by a factory).
    """
    defined = next((h.fn.__module__ for h in service.handlers), None)
    return defined if defined in holders else holders[0]


def _service(module: str, service: Service, catalog: Catalog) -> Application:
    handles: list[Handling] = []
    for handler in service.handlers:
        if handler.event is not None:
            event_type = handler.event.event_type
            handles.append(Handling(handler.name, catalog.topic_of(event_type).name, event_type))
        else:
            handles.append(Handling(handler.name, handler.topic or "", None))
    emits = {event.event_type for event in service_emits(service)}
    return Application(
        service.name,
        "service",
        module,
        tuple(sorted(handles, key=lambda h: (h.topic, h.event_type or "", h.handler))),
        tuple(sorted(emits)),
    )


def _tracker(module: str, saga: Saga, catalog: Catalog) -> Application:
    """The tracker reads every event that moves the saga and emits compensations and parks."""
    inputs = {saga.start.event_type, *(e.event_type for e in saga.completed)}
    emits: set[str] = set()
    for placed in saga.placed:
        step = placed.step
        inputs |= {e.event_type for e in (*step.success, *step.failure, *step.compensated)}
        if step.compensate is not None:
            emits.add(step.compensate.event_type)
    if saga.parked is not None:
        emits.add(saga.parked.event_type)
    handles = tuple(
        Handling(f"saga {saga.name}", catalog.topic_of(t).name, t) for t in sorted(inputs)
    )
    return Application(
        tracker_name(saga.name), "saga tracker", module, handles, tuple(sorted(emits))
    )
