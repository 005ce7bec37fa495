"""Which events a service emits: what it declares, or else what its handlers' code builds.

A handler's body, and the functions of its own module that it calls (transitively), are
parsed; every call of an ``Event`` subclass (``OrderPlaced(...)``) counts as an emit. That
is what ``ctx.emit`` is given in practice, and it needs no second declaration that could
drift from the code. ``Service(emits=...)`` overrides it for handlers that build events
elsewhere (the docs and ``choreo acl`` then trust the declaration).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from types import FunctionType
from typing import Any

from choreo._schemas import Event
from choreo._service import Service


def service_emits(service: Service) -> set[type[Event]]:
    """``Service(emits=...)`` when declared, else the events its handlers construct."""
    if service.emits:
        return set(service.emits)
    return {event for handler in service.handlers for event in emitted_events(handler.fn)}


def emitted_events(fn: Callable[..., Any]) -> set[type[Event]]:
    """Event classes constructed by ``fn`` or by same-module functions it calls."""
    found: set[type[Event]] = set()
    seen: set[FunctionType] = set()
    todo = [inspect.unwrap(fn)]
    while todo:
        current = todo.pop()
        if not isinstance(current, FunctionType) or current in seen:
            continue
        seen.add(current)
        for call in _calls(current):
            target = _resolve(call.func, current.__globals__)
            if isinstance(target, type) and issubclass(target, Event) and target is not Event:
                found.add(target)
            elif isinstance(target, FunctionType) and target.__module__ == current.__module__:
                todo.append(target)
    return found


def _calls(fn: FunctionType) -> list[ast.Call]:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):  # built at run time: nothing to read
        return []
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]


def _resolve(node: ast.expr, names: dict[str, Any]) -> Any:
    """``Name`` or ``module.Name`` looked up in the function's globals; anything else: None."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, names)
        return None if owner is None else getattr(owner, node.attr, None)
    return None
