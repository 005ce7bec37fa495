"""faust-streaming: one ``@app.agent`` iterating the topic's stream of raw values.

Values are read with the ``raw`` serializer and decoded by the agent, as the others do; faust
acks each event as the stream moves on and commits acked offsets every
``broker_commit_interval`` (its default, 2.8 s). No tables, so ``memory://`` store and no web
server. faust has no clean way to stop a worker from inside an agent, so once the meter has
printed the result the child exits at once (no contender's shutdown is measured).
"""

from __future__ import annotations

import os
from typing import Any


def run(args: Any, meter: Any) -> None:
    import faust
    from _common import make_decoder

    decode = make_decoder()
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        value_serializer="raw",
    )
    topic = app.topic(args.topic, value_type=bytes, value_serializer="raw")

    @app.agent(topic)
    async def process(stream: Any) -> None:
        async for value in stream:
            handle(decode(value))
            if meter.seen():
                os._exit(0)

    faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


def handle(event: Any) -> None:
    """The no-op handler every contender calls."""
