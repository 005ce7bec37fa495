"""Where a manager works the approval queue: list, approve, reject.

    python -m services.approval_desk ls
    python -m services.approval_desk approve ORDER_ID [--by NAME]
    python -m services.approval_desk reject ORDER_ID --comment "why" [--by NAME]

A decision is an ``ApprovalDecision`` event published with the order's saga as correlation
(``POST /approvals`` on ``choreo ingress`` publishes the same). The approvals service turns it
into ``OrderApproved``/``OrderRejected`` only if the order is still waiting; the desk refuses
orders that are not waiting up front, so the manager hears it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

import choreo
from services.approvals import Pending, decision, pending
from services.settings import DSN


def desk_publisher(config: choreo.ServiceConfig | None = None) -> choreo.Publisher:
    return choreo.Publisher(source="approval-desk", config=config)


async def publish_decision(
    publisher: choreo.Publisher, order_id: str, approver: str, comment: str | None
) -> str:
    """Publish a person's answer for ``order_id`` (whose saga id is the order id)."""
    return await publisher.publish(decision(order_id, approver, comment), correlation_id=order_id)


async def _answer(order_id: str, approver: str, comment: str | None) -> str:
    async with desk_publisher() as publisher:
        return await publish_decision(publisher, order_id, approver, comment)


def _waiting(order_id: str) -> Pending | None:
    return next((p for p in pending(DSN) if p.order_id == order_id), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.approval_desk")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ls", help="orders waiting for a decision")
    for name in ("approve", "reject"):
        command = commands.add_parser(name)
        command.add_argument("order_id")
        command.add_argument("--by", default=getpass.getuser(), help="who decides")
        command.add_argument("--comment", required=name == "reject")
    args = parser.parse_args(argv)
    if args.command == "ls":
        for p in pending(DSN):
            print(f"{p.order_id}  {p.customer_id}  {p.total} {p.currency}  since {p.requested_at}")
        return 0
    if _waiting(args.order_id) is None:
        print(f"order {args.order_id} is not waiting for approval", file=sys.stderr)
        return 1
    comment = args.comment if args.command == "reject" else None
    event_id = asyncio.run(_answer(args.order_id, args.by, comment))
    print(f"{args.command} {args.order_id}: published event {event_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
