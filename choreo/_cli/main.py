"""Entry point of the ``choreo`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from choreo._cli import acl, cdc, dev, dlq, docs, ingress, run, saga, schemas
from choreo._errors import ChoreoError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="choreo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (acl, cdc, dev, dlq, docs, ingress, run, saga, schemas):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; choreo's own errors print as one line and exit 1, not as a traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ChoreoError as error:
        print(f"choreo: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
