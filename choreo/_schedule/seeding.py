"""At a service's start: create its schedule topics and propose each schedule's next alarm.

A plain producer of its own, not the service's: with exactly-once the
service's producer is transactional, and an alarm waiting in a transaction
that only commits once some offset moves would never be read by a service
whose only input is that alarm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from choreo._runtime.clock import current_clock
from choreo._schedule.schedule import Schedule
from choreo._transport.base import Transport


async def start_schedules(
    schedules: Sequence[Schedule], transport: Transport, client_id: str
) -> None:
    """Return once every proposed alarm is acknowledged (before anything is consumed); their
    topics exist by then, created with the service's others (``ServiceRunner.topic_configs``)."""
    if not schedules:
        return
    now = current_clock().now()
    producer = transport.producer(client_id)
    try:
        deliveries = [await producer.send(*schedule.seed(now)) for schedule in schedules]
        await asyncio.gather(*deliveries)
    finally:
        await producer.close()
