"""Which events a handler emits, read from its source: services declare only what they handle.

A handler's body, and the functions of its own module that it calls (transitively), are
parsed; every call of an ``Event`` subclass (``OrderPlaced(...)``) counts as an emit. That
is what ``ctx.emit`` is given in practice, and it needs no second declaration that could
drift from the code.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from types import FunctionType
from typing import Any

from choreo._schemas import Event


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
