"""``choreo console``: sagas, dead letters, traces and the topology in a browser.

Read-only pages over the saga changelogs, the DLQ topics, consumer group offsets and
Jaeger's query API; replays and purges behind a POST with a CSRF guard (and a token when set).
"""

from choreo._console.server import DEFAULT_JAEGER, DEFAULT_URL, ConsoleServer, saga_url, sources
from choreo._console.trace import jaeger_ui_present

__all__ = [
    "DEFAULT_JAEGER",
    "DEFAULT_URL",
    "ConsoleServer",
    "jaeger_ui_present",
    "saga_url",
    "sources",
]
