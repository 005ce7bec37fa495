"""Operating dead-letter topics: list, inspect, replay (at most once per record) and purge."""
