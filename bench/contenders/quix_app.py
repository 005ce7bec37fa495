"""Quix Streams: a ``StreamingDataFrame`` over the topic with one ``update`` step.

The topic is read with the ``bytes`` deserializer and the step decodes the value itself, as the
others do. Quix Streams commits through its checkpoints, every ``commit_interval`` (its default,
5 s) and at the end; ``app.stop()`` from inside the step ends ``app.run()``.
"""

from __future__ import annotations

from typing import Any


def run(args: Any, meter: Any) -> None:
    from _common import make_decoder
    from quixstreams import Application

    decode = make_decoder()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        auto_create_topics=False,
    )
    topic = app.topic(args.topic, value_deserializer="bytes")

    def step(value: bytes) -> None:
        handle(decode(value))
        if meter.seen():
            app.stop()

    app.dataframe(topic).update(step)
    app.run()


def handle(event: Any) -> None:
    """The no-op handler every contender calls."""
