"""How often and how patiently a failed handler is tried again before its message is parked."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Two stages: a few quick tries in place, then (optionally) delayed retry topics.

    In place, the partition waits while a record is retried with exponential
    backoff and jitter: fine for a blip, and it keeps order. With ``delays_s``
    the record then moves to retry topic 1, 2, ... (one per delay) and is tried
    once more when its delay is up, while its source partition keeps flowing;
    such records lose their order relative to later ones with the same key.
    The defaults retry in place for about a second in total and then
    dead-letter the message, so one bad record never blocks a partition for long.
    """

    max_attempts: int = 3
    """Tries in total, the first included; 1 means no retry."""
    initial_interval_s: float = 0.1
    """Wait before the second try."""
    multiplier: float = 2.0
    """Each wait is this much longer than the one before."""
    max_interval_s: float = 5.0
    """No single wait is longer than this."""
    jitter: float = 0.2
    """Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    non_retryable: tuple[type[BaseException], ...] = ()
    """Exceptions that go to the dead-letter topic at once (retrying cannot help)."""
    delays_s: tuple[float, ...] = ()
    """Non-blocking stage: one retry topic per delay, one try after each (e.g. ``(5, 60)``)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_interval_s < 0 or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid retry policy: {self}")
        if any(delay <= 0 for delay in self.delays_s):
            raise ValueError(f"retry delays must be positive, got {self.delays_s}")

    def delay_s(self, attempt: int) -> float:
        """The wait after failed try number ``attempt`` (1-based)."""
        base = min(self.initial_interval_s * self.multiplier ** (attempt - 1), self.max_interval_s)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def retryable(self, error: BaseException) -> bool:
        return not isinstance(error, self.non_retryable)
