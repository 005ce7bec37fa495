"""``choreo docs``: write (or check) the AsyncAPI document and choreography diagrams."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from choreo._config import load_config
from choreo._docs import generate, stale, write
from choreo._schemas import Catalog


def register(commands: argparse._SubParsersAction[Any]) -> None:
    docs = commands.add_parser(
        "docs", help="generate docs/asyncapi.json and the choreography diagrams"
    )
    docs.add_argument(
        "--package", default="services", help="package whose modules define the services"
    )
    docs.add_argument("--out", type=Path, default=Path("docs"), help="output folder")
    docs.add_argument(
        "--config",
        type=Path,
        help="TOML settings file; its [ingress.routes] are drawn as the ingress",
    )
    docs.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the docs are stale"
    )
    docs.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    documents = generate(args.package, Catalog.load(config.schemas_dir), config.ingress.routes)
    if args.check:
        names = stale(documents, args.out)
        if names:
            print(
                f"stale: {', '.join(str(args.out / n) for n in names)}; run choreo docs",
                file=sys.stderr,
            )
            return 1
        return 0
    write(documents, args.out)
    print(f"wrote {', '.join(str(args.out / n) for n in sorted(documents))}")
    return 0
