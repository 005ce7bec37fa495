"""``choreo docs``: the system's AsyncAPI document and choreography diagrams, generated.

Generated from what runs (the handlers, the saga definitions, ``schemas/``), checked in, and
checked for staleness like ``services/events.py``, so the docs cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from choreo._docs import asyncapi, mermaid, svg
from choreo._docs.model import System, discover
from choreo._schemas import Catalog

ASYNCAPI_FILE = "asyncapi.json"
MARKDOWN_FILE = "choreography.md"
SVG_FILE = "choreography.svg"


def generate(package: str, catalog: Catalog, ingress_routes: dict[str, str]) -> dict[str, str]:
    """File name → content of every generated document."""
    system: System = discover(package, catalog, ingress_routes)
    return {
        ASYNCAPI_FILE: asyncapi.render(system, f"{package}: event choreography"),
        MARKDOWN_FILE: mermaid.markdown(system, system.sagas),
        SVG_FILE: svg.render(system, system.sagas),
    }


def stale(documents: dict[str, str], out: Path) -> list[str]:
    """Names of the documents whose checked-in copy under ``out`` differs (or is missing)."""
    return sorted(
        name
        for name, text in documents.items()
        if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
    )


def write(documents: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in documents.items():
        (out / name).write_text(text, encoding="utf-8")


__all__ = ["ASYNCAPI_FILE", "MARKDOWN_FILE", "SVG_FILE", "generate", "stale", "write"]
