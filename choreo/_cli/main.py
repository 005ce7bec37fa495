"""Entry point of the ``choreo`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from choreo._cli import (
    acl,
    cdc,
    console,
    dev,
    dlq,
    docs,
    ingress,
    init,
    run,
    saga,
    schemas,
    topics,
)
from choreo._errors import ChoreoError

_DESCRIPTION = """\
Event-driven choreography on Apache Kafka: run typed-event services and saga
trackers, manage dead letters, CDC connectors, ACLs and the local stack.
"""

_EPILOG = """\
first steps:
  choreo dev up                         start Kafka, PostgreSQL, Connect, a registry, Jaeger
  choreo run services.orders            run a service module as a consumer group
  choreo saga run services.order_saga   run a saga tracker
  choreo dlq ls                         what sits in the dead-letter topics

'choreo COMMAND --help' describes each command.
"""


def _version() -> str:
    """The installed distribution's version: one number for pip, the image and the CLI."""
    try:
        return metadata.version("choreo")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="choreo",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"choreo {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (acl, cdc, console, dev, dlq, docs, ingress, init, run, saga, schemas, topics):
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
