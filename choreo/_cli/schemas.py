"""``choreo schemas check | codegen``: keep schemas parseable, compatible and models fresh."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from choreo._schemas import check_command, codegen_command


def register(commands: argparse._SubParsersAction[Any]) -> None:
    schemas = commands.add_parser("schemas", help="check schemas and generate event models")
    schemas.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    actions = schemas.add_subparsers(dest="action", required=True)
    actions.add_parser("check", help="parse, check compatibility and model freshness").set_defaults(
        handler=lambda args: check_command(args.project)
    )
    actions.add_parser("codegen", help="write the pydantic models for every event").set_defaults(
        handler=lambda args: codegen_command(args.project)
    )
