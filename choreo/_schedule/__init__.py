"""Durable schedules (``Service.every``): ticks are Kafka records; see ``schedule.py``."""

from choreo._schedule.cadence import cadence
from choreo._schedule.records import PREFIX, Tick
from choreo._schedule.schedule import Schedule
from choreo._schedule.seeding import start_schedules

__all__ = ["PREFIX", "Schedule", "Tick", "cadence", "start_schedules"]
