"""Quix Streams: a ``StreamingDataFrame`` over the topic with one ``update`` step.

The topic is read with the ``bytes`` deserializer and the step decodes the value itself, as the
others do. Quix Streams commits through its checkpoints, every ``commit_interval`` (its default,
5 s) and at the end; ``app.stop()`` from inside the step ends ``app.run()``.

``relay``: an ``apply`` step runs ``make_relay`` (with the message's headers), ``set_headers``
puts the output's headers on, a second ``apply`` leaves the encoded value, ``to_topic`` produces
it (keyed, as the input, by order id). At least once by default; the ``:eos`` variant sets
``processing_guarantee="exactly-once"`` (each checkpoint one transaction).
"""

from __future__ import annotations

from typing import Any


def _app(args: Any) -> Any:
    from quixstreams import Application

    return Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        processing_guarantee="exactly-once" if args.variant == "eos" else "at-least-once",
    )


def run(args: Any, meter: Any) -> None:
    from _common import make_decoder

    decode = make_decoder()
    app = _app(args)
    topic = app.topic(args.topic, value_deserializer="bytes")

    def step(value: bytes) -> None:
        handle(decode(value))
        if meter.seen():
            app.stop()

    app.dataframe(topic).update(step)
    app.run()


def relay(args: Any, meter: Any) -> None:
    from _common import make_relay

    step = make_relay()
    app = _app(args)
    source = app.topic(args.topic, value_deserializer="bytes")
    sink = app.topic(args.sink, key_serializer="bytes", value_serializer="bytes")

    def produce(value: bytes, key: Any, timestamp: int, headers: Any) -> Any:
        out = step(value, headers)
        if meter.seen():
            app.stop()
        return out

    sdf = app.dataframe(source).apply(produce, metadata=True)
    sdf = sdf.set_headers(lambda out, key, timestamp, headers: out[2])
    sdf.apply(lambda out: out[1]).to_topic(sink)
    app.run()


def handle(event: Any) -> None:
    """The no-op handler every contender calls."""
