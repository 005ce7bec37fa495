"""The dead-letter pages: what sits in each DLQ topic, each record, and a picked replay.

Reading and replaying are ``choreo dlq``'s own (``choreo._dlq``): the console adds a
selection of picked records (by partition and offset) and the views. A replay is the CLI's
transactional one, so a record replayed from here is never replayed again from either.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO

from fastavro import schemaless_reader

from choreo._console.html import esc, hidden, table, when
from choreo._dlq.reader import DeadLetter
from choreo._dlq.replay import ReplayReport, Selection
from choreo._runtime import dead_letters as dlq
from choreo._schemas import Catalog

PREVIEW_BYTES = 256
AVRO_MAGIC = b"\xc3\x01"
AVRO_HEADER = 10


@dataclass(frozen=True)
class Picked(Selection):
    """Exactly the records picked on the page, by (partition, offset)."""

    records: frozenset[tuple[int, int]] = frozenset()

    def matches(self, record: DeadLetter) -> bool:
        return (record.partition, record.offset) in self.records and super().matches(record)


def parse_picks(values: list[str]) -> frozenset[tuple[int, int]]:
    """``"partition:offset"`` form values; anything else is ignored (it names no record)."""
    picks = set()
    for value in values:
        partition, _, offset = value.partition(":")
        if partition.isdigit() and offset.isdigit():
            picks.add((int(partition), int(offset)))
    return frozenset(picks)


@dataclass
class TopicSummary:
    topic: str
    records: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def summarize(topics: list[str], records: list[DeadLetter]) -> list[TopicSummary]:
    found = {t: TopicSummary(t) for t in topics}
    for record in records:
        summary = found[record.topic]
        summary.records += 1
        summary.reasons[record.reason] += 1
        summary.errors[record.error_type.rsplit(".", 1)[-1]] += 1
    return list(found.values())


def decoded(value: bytes | None, catalog: Catalog | None) -> str:
    """The value as its event's fields (Avro the catalog knows), else text, else hex."""
    if value is None:
        return "null (a tombstone)"
    if catalog is not None and value[:2] == AVRO_MAGIC:
        writer = catalog.fingerprints.get(value[2:AVRO_HEADER])
        if writer is not None:
            try:
                fields = schemaless_reader(BytesIO(value[AVRO_HEADER:]), writer.schema)
                text = json.dumps(fields, indent=1, default=str)
                return f"{writer.label}\n{text}"
            except Exception:
                pass
    head = value[:PREVIEW_BYTES]
    more = f"\n... ({len(value)} bytes)" if len(value) > PREVIEW_BYTES else ""
    try:
        return head.decode() + more
    except UnicodeDecodeError:
        return f"hex {head.hex(' ')}{more}"


def record_rows(records: list[DeadLetter], catalog: Catalog | None) -> list[list[str]]:
    rows = []
    for r in records:
        event = {
            k: (v or b"").decode(errors="replace")
            for k, v in r.original_headers
            if k.startswith("ce_")
        }
        stack = r.header(dlq.STACKTRACE)
        rows.append(
            [
                f'<input type="checkbox" name="pick" value="{r.partition}:{r.offset}">',
                f"[{r.partition}]@{r.offset}<br>key {esc(repr(r.key))}",
                f"{esc(r.source_topic)}[{esc(r.header(dlq.PARTITION))}]"
                f"@{esc(r.header(dlq.OFFSET))}<br>group {esc(r.header(dlq.GROUP))}",
                f"{esc(when(r.failed_at.timestamp()))}<br>after {esc(r.header(dlq.ATTEMPTS))}"
                " attempt(s)",
                f'<span class="reason">{esc(r.reason)}</span>: {esc(r.error_type)}<br>'
                f"{esc(r.header(dlq.ERROR_MESSAGE) or '')}"
                + (
                    f"<details><summary>stack</summary><pre>{esc(stack)}</pre></details>"
                    if stack
                    else ""
                ),
                esc(f"{event.get('ce_type', '-')} id {event.get('ce_id', '-')}"),
                f"<pre>{esc(decoded(r.value, catalog))}</pre>",
            ]
        )
    return rows


def records_table(records: list[DeadLetter], catalog: Catalog | None) -> str:
    return table(
        ["", "where", "origin", "failed", "reason / error", "event", "value"],
        record_rows(records, catalog),
        "records",
    )


def confirmation(
    topic: str, report: ReplayReport, picks: list[str], csrf: str, ask_token: bool
) -> str:
    """What a replay will send, and the button that sends it."""
    sent = table(
        ["record", "to", "key", "headers sent", "value"],
        (
            [
                f"[{r.partition}]@{r.offset}",
                esc(report.destination),
                esc(repr(r.key)),
                esc(", ".join(k for k, _ in r.original_headers)),
                f"<pre>{esc(decoded(r.value, None)[:400])}</pre>",
            ]
            for r in report.sent
        ),
        "to-send",
    )
    refused = "".join(f'<p class="warn">{esc(line)}</p>' for line in report.refused)
    fields = (
        hidden("topic", topic) + hidden("csrf", csrf) + "".join(hidden("pick", p) for p in picks)
    )
    token = '<label>token <input type="password" name="token"></label>' if ask_token else ""
    button = (
        f'<form method="post" action="/dlq/replay/send">{fields}{token}'
        f'<button id="send">Send {report.replayed} record(s) to {esc(report.destination)}'
        "</button></form>"
        if report.sent
        else "<p>Nothing to send.</p>"
    )
    return (
        f"<p>{report.selected} picked, {report.already_replayed} already replayed before; "
        f"these {report.replayed} will be written back, each with its original key and headers "
        f"(plus <code>choreo_replayed_from</code>), in one transaction with their marks in "
        f"the replay ledger:</p>{sent}{refused}{button}"
    )
