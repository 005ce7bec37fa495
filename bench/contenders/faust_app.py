"""faust-streaming: one ``@app.agent`` iterating the topic's stream of raw values.

Values are read with the ``raw`` serializer and decoded by the agent, as the others do; faust
acks each event as the stream moves on and commits acked offsets every
``broker_commit_interval`` (its default, 2.8 s). No tables, so ``memory://`` store and no web
server. faust has no clean way to stop a worker from inside an agent, so once the meter has
printed the result the child exits at once (no contender's shutdown is measured).

``relay`` iterates ``stream.events()`` (for the headers), runs ``make_relay`` and awaits
``sink.send(...)``, which queues the output on faust's producer; faust commits an input's
offset once it is acked, and flushes its producer before committing. The ``:eos`` variant sets
``processing_guarantee="exactly_once"`` (a transactional producer per assigned partition).
"""

from __future__ import annotations

import os
from typing import Any


def _app(args: Any) -> Any:
    import faust

    eos = {"processing_guarantee": "exactly_once"} if args.variant == "eos" else {}
    return faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        value_serializer="raw",
        **eos,
    )


def _work(app: Any) -> None:
    import faust

    faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


def run(args: Any, meter: Any) -> None:
    from _common import make_decoder

    decode = make_decoder()
    app = _app(args)
    topic = app.topic(args.topic, value_type=bytes, value_serializer="raw")

    @app.agent(topic)
    async def process(stream: Any) -> None:
        async for value in stream:
            handle(decode(value))
            if meter.seen():
                os._exit(0)

    _work(app)


def relay(args: Any, meter: Any) -> None:
    from _common import make_relay

    step = make_relay()
    app = _app(args)
    topic = app.topic(args.topic, value_type=bytes, value_serializer="raw")
    sink = app.topic(args.sink, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def process(stream: Any) -> None:
        async for event in stream.events():
            key, value, headers = step(event.value, event.headers)
            await sink.send(key=key, value=value, headers=headers)
            if meter.seen():
                os._exit(0)

    _work(app)


def handle(event: Any) -> None:
    """The no-op handler every contender calls."""
