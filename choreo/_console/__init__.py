"""``choreo console``: sagas, dead letters, traces and the topology in a browser.

Read-only pages over the saga changelogs, the DLQ topics, consumer group offsets and
Jaeger's query API; replays and purges behind a POST with a CSRF guard (and a token when set).
"""

from choreo._console.server import DEFAULT_JAEGER, ConsoleServer, sources

__all__ = ["DEFAULT_JAEGER", "ConsoleServer", "sources"]
