"""What the ingress answered, for Prometheus on the loopback port (``[ingress] metrics_port``).

The public port says only ready or not; operators read counts and the reason for
not being ready here, where only the host can reach. Labels are bounded: the
configured paths (anything else counts as ``other``) and the status code.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest


class IngressMetrics:
    """Counts answers by path and status, in a registry of its own."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = frozenset(paths) | {"/healthz", "/readyz"}
        self._registry = CollectorRegistry()
        self._answers = Counter(
            "choreo_ingress_requests",
            "Requests answered, by path (configured ones; others are 'other') and status",
            ["path", "status"],
            registry=self._registry,
        )

    def answered(self, path: str, status: int) -> None:
        label = path if path in self._paths else "other"
        self._answers.labels(label, str(status)).inc()

    def scrape(self) -> bytes:
        return generate_latest(self._registry)
