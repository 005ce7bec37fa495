"""``choreo dlq ls | show | replay | purge``: see why messages were parked and send them back."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime
from typing import Any

from choreo._config import load_config
from choreo._dlq.purge import purge
from choreo._dlq.reader import DeadLetter, dlq_topics, read
from choreo._dlq.replay import Selection, replay
from choreo._runtime import dead_letters as dlq
from choreo._transport.confluent import librdkafka_settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    group = commands.add_parser("dlq", help="inspect, replay and purge dead-letter topics")
    actions = group.add_subparsers(dest="action", required=True)
    actions.add_parser("ls", help="DLQ topics with counts and top errors").set_defaults(handler=_ls)

    show = actions.add_parser("show", help="parked records with their failure headers")
    show.add_argument("topic")
    show.add_argument("-n", "--limit", type=int, default=20)
    show.set_defaults(handler=_show)

    again = actions.add_parser("replay", help="send parked records back to their topic")
    again.add_argument("topic")
    again.add_argument("--partition", type=int)
    again.add_argument("--from-offset", type=int)
    again.add_argument("--to-offset", type=int, help="inclusive")
    again.add_argument("--error-type", help="e.g. ValueError or builtins.ValueError")
    again.add_argument("--reason", help="e.g. handler-error, not-avro, invalid")
    again.add_argument("--since", type=datetime.fromisoformat, help="ISO time, failed at or after")
    again.add_argument("--until", type=datetime.fromisoformat, help="ISO time, failed at or before")
    again.add_argument("--limit", type=int, help="replay at most this many now")
    again.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    again.set_defaults(handler=_replay)

    empty = actions.add_parser("purge", help="delete every record of a DLQ topic")
    empty.add_argument("topic")
    empty.add_argument("--dry-run", action="store_true")
    empty.set_defaults(handler=_purge)


def _settings() -> dict[str, Any]:
    return librdkafka_settings(load_config().kafka)


def _ls(args: argparse.Namespace) -> int:
    settings = _settings()
    topics = dlq_topics(settings)
    if not topics:
        print("no dead-letter topics")
        return 0
    errors: dict[str, Counter[str]] = {topic: Counter() for topic in topics}
    for r in read(settings, *topics):  # all at once: a cluster can have hundreds
        errors[r.topic][f"{r.reason}:{r.error_type.rsplit('.', 1)[-1]}"] += 1
    print(f"{'topic':<48} {'records':>8}  top errors")
    for topic, counts in errors.items():
        top = ", ".join(f"{name} x{count}" for name, count in counts.most_common(3))
        print(f"{topic:<48} {counts.total():>8}  {top}")
    return 0


def _describe(record: DeadLetter) -> str:
    lines = [
        f"{record.topic}[{record.partition}]@{record.offset}  key={record.key!r}",
        f"  from     {record.source_topic}[{record.header(dlq.PARTITION)}]"
        f"@{record.header(dlq.OFFSET)}  group {record.header(dlq.GROUP)}",
        f"  failed   {record.failed_at.isoformat()} after {record.header(dlq.ATTEMPTS)} attempt(s)",
        f"  reason   {record.reason}: {record.error_type}: {record.header(dlq.ERROR_MESSAGE)}",
    ]
    event = {
        k: v.decode(errors="replace") for k, v in record.original_headers if k.startswith("ce_")
    }
    if event:
        lines.append(
            f"  event    {event.get('ce_type')} id {event.get('ce_id')}"
            f" from {event.get('ce_source')}"
        )
    size = len(record.value) if record.value is not None else 0
    lines.append(f"  value    {size} bytes")
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    for index, record in enumerate(read(_settings(), args.topic)):
        if index >= args.limit:
            print(f"... (showing {args.limit}; use --limit)")
            break
        print(_describe(record))
    return 0


def _replay(args: argparse.Namespace) -> int:
    selection = Selection(
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        error_type=args.error_type,
        reason=args.reason,
        since=args.since,
        until=args.until,
    )
    report = replay(_settings(), args.topic, selection, dry_run=args.dry_run, limit=args.limit)
    verb = "would replay" if args.dry_run else "replayed"
    where = ", ".join(f"{count} to {topic}" for topic, count in report.destinations.items())
    print(
        f"{report.selected} selected, {verb} {report.replayed}"
        f"{f' ({where})' if where else ''}, {report.already_replayed} already replayed before"
    )
    return 0


def _purge(args: argparse.Namespace) -> int:
    count = purge(_settings(), args.topic, dry_run=args.dry_run)
    print(f"{'would delete' if args.dry_run else 'deleted'} {count} records from {args.topic}")
    return 0
