"""``choreo dlq ls | show | replay | purge``: see why messages were parked and send them back."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from choreo._config import load_config
from choreo._dlq.naming import parse
from choreo._dlq.purge import purge
from choreo._dlq.reader import DeadLetter, dlq_topics, read
from choreo._dlq.reasons import check_reason
from choreo._dlq.replay import Selection, replay
from choreo._errors import TransportError
from choreo._runtime import dead_letters as dlq
from choreo._transport.confluent import librdkafka_settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    group = commands.add_parser("dlq", help="inspect, replay and purge dead-letter topics")
    actions = group.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("ls", help="DLQ topics with counts and top errors")
    listing.add_argument("pattern", nargs="?", help="glob on the topic name, e.g. '*.shop.*'")
    listing.add_argument("--service", help="only this service's (or saga tracker's) DLQ topics")
    listing.set_defaults(handler=_ls)

    show = actions.add_parser("show", help="parked records with their failure headers")
    show.add_argument("topic")
    show.add_argument("-n", "--limit", type=int, default=20)
    show.add_argument("--reason", help="only records parked for this reason, e.g. not-avro")
    show.add_argument("--preview", type=int, default=PREVIEW_BYTES, help="value bytes shown")
    show.set_defaults(handler=_show)

    again = actions.add_parser("replay", help="send parked records back to their topic")
    again.add_argument("topic")
    again.add_argument("--partition", type=int)
    again.add_argument("--from-offset", type=int)
    again.add_argument("--to-offset", type=int, help="inclusive")
    again.add_argument("--error-type", help="e.g. ValueError or builtins.ValueError")
    again.add_argument("--reason", help="e.g. handler-error, not-avro, invalid")
    again.add_argument("--since", type=_when, help="ISO time (UTC if no zone), failed at or after")
    again.add_argument("--until", type=_when, help="ISO time (UTC if no zone), failed at or before")
    again.add_argument("--limit", type=int, help="replay at most this many now")
    again.add_argument("--to-topic", help="send them here instead of the topic the name says")
    again.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    again.set_defaults(handler=_replay)

    empty = actions.add_parser("purge", help="delete every record of a DLQ topic")
    empty.add_argument("topic")
    empty.add_argument("--dry-run", action="store_true")
    empty.set_defaults(handler=_purge)


PREVIEW_BYTES = 64


def _when(text: str) -> datetime:
    """An ISO time; one without a zone is UTC, as the ``choreo_dlq_failed_at`` headers are."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _settings() -> dict[str, Any]:
    return librdkafka_settings(load_config().kafka)


def _ls(args: argparse.Namespace) -> int:
    settings = _settings()
    topics = [
        topic
        for topic in dlq_topics(settings)
        if (args.pattern is None or fnmatchcase(topic, args.pattern))
        and (args.service is None or _owner(topic) == args.service)
    ]
    if not topics:
        print("no dead-letter topics")
        return 0
    errors: dict[str, Counter[str]] = {topic: Counter() for topic in topics}
    for r in read(settings, *topics):  # all at once: a cluster can have hundreds
        errors[r.topic][f"{r.reason}:{r.error_type.rsplit('.', 1)[-1]}"] += 1
    width = max(len("topic"), *(len(_safe(t)) for t in topics))
    print(f"{'topic':<{width}} {'records':>8}  top errors")
    for topic, counts in errors.items():
        top = ", ".join(f"{name} x{count}" for name, count in counts.most_common(3))
        print(f"{_safe(topic):<{width}} {counts.total():>8}  {_safe(top)}")
    return 0


def _owner(topic: str) -> str | None:
    """The service a DLQ topic belongs to; None for a name that only starts like one."""
    try:
        return parse(topic).owner
    except TransportError:
        return None


def _safe(text: object) -> str:
    """``text`` with control characters escaped: header bytes come from whoever wrote the
    record, and a terminal must not act on escape sequences hidden in them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _preview(value: bytes | None, size: int) -> str:
    """The value's first ``size`` bytes: as text if they are UTF-8, else as hex."""
    if value is None:
        return "null (tombstone)"
    head = value[:size]
    more = f" ... ({len(value)} bytes)" if len(value) > size else ""
    try:
        return f"{_safe(repr(head.decode()))}{more}"
    except UnicodeDecodeError:
        return f"hex {head.hex(' ')}{more}"


def _describe(record: DeadLetter, preview: int) -> str:
    lines = [
        f"{record.topic}[{record.partition}]@{record.offset}  key={record.key!r}",
        f"  from     {record.source_topic}[{record.header(dlq.PARTITION)}]"
        f"@{record.header(dlq.OFFSET)}  group {record.header(dlq.GROUP)}",
        f"  failed   {record.failed_at.isoformat()} after {record.header(dlq.ATTEMPTS)} attempt(s)",
        f"  reason   {record.reason}: {record.error_type}: {record.header(dlq.ERROR_MESSAGE)}",
    ]
    event = {
        k: v.decode(errors="replace")
        for k, v in record.original_headers
        if k.startswith("ce_") and v is not None
    }
    if event:
        lines.append(
            f"  event    {event.get('ce_type')} id {event.get('ce_id')}"
            f" from {event.get('ce_source')}"
        )
    lines.append(f"  value    {_preview(record.value, preview)}")
    return "\n".join(_safe(line) for line in lines)


def _show(args: argparse.Namespace) -> int:
    shown, reasons = 0, set()
    for record in read(_settings(), args.topic):
        reasons.add(record.reason)
        if args.reason is not None and record.reason != args.reason:
            continue
        if shown == args.limit:
            print(f"... (showing {args.limit}; use --limit)")
            break
        print(_describe(record, args.preview))
        shown += 1
    check_reason(args.reason, reasons)
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
    report = replay(
        _settings(),
        args.topic,
        selection,
        to_topic=args.to_topic,
        dry_run=args.dry_run,
        limit=args.limit,
    )
    verb = "would replay" if args.dry_run else "replayed"
    if args.dry_run:
        for record in report.sent:
            print(
                _safe(
                    f"  {record.topic}[{record.partition}]@{record.offset}  key={record.key!r}"
                    f"  {record.reason}: {record.error_type}  -> {report.destination}"
                )
            )
    for line in report.refused:
        print(_safe(line), file=sys.stderr)
    print(
        f"{report.selected} selected, {verb} {report.replayed} to {report.destination}, "
        f"{report.already_replayed} already replayed before"
        + (f", {len(report.refused)} refused" if report.refused else "")
    )
    return 1 if report.refused else 0


def _purge(args: argparse.Namespace) -> int:
    count = purge(_settings(), args.topic, dry_run=args.dry_run)
    print(f"{'would delete' if args.dry_run else 'deleted'} {count} records from {args.topic}")
    return 0
