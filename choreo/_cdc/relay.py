"""The connector relaying outbox rows to Kafka: Debezium's EventRouter, set up so a relayed
record has the topic, partition, key, value bytes and headers of a direct produce.

How each part of the record is made:

* topic: the row's ``topic`` column (``route.by.field=topic``,
  ``route.topic.replacement=${routedByValue}``), the event's catalog topic;
* key: ``aggregateid`` (the topic's key field), written by ``StringConverter``
  as plain UTF-8, and partitioned by Connect's murmur2 like the confluent
  transport's ``murmur2_random``, so one aggregate stays on one partition;
* value: the ``payload`` bytea. With no envelope fields EventRouter emits the
  column's value alone; ``binary.handling.mode=bytes`` keeps it a byte array
  and ``ByteArrayConverter`` writes it untouched: the Avro single-object bytes;
* headers: the columns named in ``outbox_table.COLUMNS``, placed by
  ``table.fields.additional.placement`` and written by ``StringConverter``
  (the JSON converter would wrap each in quotes). EventRouter's own ``id``
  header is dropped (``ce_id`` carries the id) and so are Debezium's
  ``__debezium.context.*`` headers (``extended.headers.enabled=false``).

What still differs, invisible to handlers: a NULL ``causation_id`` or
``traceparent`` is published as a header with a null value, where a direct
produce leaves the header out (``Record.header`` returns None either way; code
reading ``record.headers`` directly must skip None values), and the record
timestamp is when Debezium processed the row rather than when it was sent.

``snapshot_mode`` defaults to ``no_data``: an initial snapshot would publish
every row already in the table again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from choreo._cdc.outbox_table import DEFAULT_TABLE, header_placement
from choreo._cdc.source import PostgresConnector, check_table

EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"
DROP_HEADERS = "org.apache.kafka.connect.transforms.DropHeaders"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
BYTES_CONVERTER = "org.apache.kafka.connect.converters.ByteArrayConverter"


@dataclass(frozen=True, kw_only=True)
class OutboxRelay(PostgresConnector):
    """A connector publishing each row inserted into ``table`` as the event it holds."""

    table: str = DEFAULT_TABLE
    snapshot_mode: str = "no_data"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_table(self.name, self.table)

    def _captured(self) -> Sequence[str]:
        return (self.table,)

    def _shaping(self) -> dict[str, str]:
        router = "transforms.outbox."
        return {
            "key.converter": STRING_CONVERTER,
            "value.converter": BYTES_CONVERTER,
            "header.converter": STRING_CONVERTER,
            "binary.handling.mode": "bytes",
            "tombstones.on.delete": "false",
            "extended.headers.enabled": "false",
            "transforms": "outbox,dropid",
            f"{router}type": EVENT_ROUTER,
            f"{router}table.field.event.id": "id",
            f"{router}table.field.event.key": "aggregateid",
            f"{router}table.field.event.payload": "payload",
            f"{router}route.by.field": "topic",
            f"{router}route.topic.replacement": "${routedByValue}",
            f"{router}table.fields.additional.placement": header_placement(),
            f"{router}table.expand.json.payload": "false",
            "transforms.dropid.type": DROP_HEADERS,
            "transforms.dropid.headers": "id",
        }
