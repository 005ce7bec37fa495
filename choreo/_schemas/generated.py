"""What the generated fast readers and writers share: unique names, constants, one ``exec``.

Both compile one Python function per (schema, model) from source lines they emit; the names
they invent, the objects the source refers to and the compiling itself are the same job, so
they live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SourceCompiler:
    """Invents names, holds the objects generated source refers to, and compiles it."""

    def __init__(self, consts: Mapping[str, Any]) -> None:
        self._consts: dict[str, Any] = dict(consts)
        self._names = 0

    def _name(self, prefix: str) -> str:
        """A name no other line of this function uses."""
        self._names += 1
        return f"{prefix}{self._names}"

    def _const(self, value: Any) -> str:
        """A name the generated source can use for ``value`` (a model, a bound, a symbol)."""
        name = self._name("_k")
        self._consts[name] = value
        return name

    def _build(self, lines: list[str], label: str, entry: str) -> Any:
        """Compile ``lines`` (ours, built from a parsed schema) and return the function
        ``entry`` they define; ``label`` names it in tracebacks."""
        namespace = dict(self._consts)
        source = "\n".join(lines) + "\n"
        exec(compile(source, f"<choreo {label}>", "exec"), namespace)
        return namespace[entry]
