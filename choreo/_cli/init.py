"""``choreo init NAME``: start a new project that passes its own tests at once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from choreo._scaffold import create_project


def register(commands: argparse._SubParsersAction[Any]) -> None:
    init = commands.add_parser(
        "init", help="write a new project: schemas, models, a service, a saga, tests"
    )
    init.add_argument("directory", type=Path, help="where to write it (new or empty)")
    init.add_argument(
        "--name", help="Python package and event namespace (default: the directory's name)"
    )
    init.set_defaults(handler=_init)


def _init(args: argparse.Namespace) -> int:
    written = create_project(args.directory, args.name)
    root = args.directory
    print(f"wrote {len(written)} files into {root}/:")
    for path in sorted(written):
        print(f"  {path.relative_to(root)}")
    print(f"\nnext: cd {root} && pip install -e . && make test")
    return 0
