"""Scrub known secret values out of text that leaves the process: logs, dead letters, errors.

Secrets are ``SecretStr`` in the config, so choreo never formats one on
purpose; this catches the ones that arrive some other way, such as a handler's
exception that quotes a connection string. Values shorter than
``MIN_LENGTH`` are left alone: replacing every "a" would wreck the text and
hide nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from choreo._transport.base import Headers, Producer

MIN_LENGTH = 4
MASK = "**********"


class Redactor:
    """``redactor(text)`` is ``text`` with every known secret replaced by ``MASK``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_LENGTH}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message and exception text, scrubbed."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._redact(record.getMessage()), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self._redact(text)
        return True


def redact_logs(redact: Redactor) -> None:
    """Scrub every line the root logger's handlers write (installed by ``choreo run``)."""
    if redact:
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter(redact))


class ScrubbingProducer:
    """A producer whose header values are scrubbed before sending.

    The runtime hands it to the dead-letter and retry stages only: their
    headers quote the handler's error message and stack trace, the one place
    text from outside choreo lands in a record. Emitted events are sent as
    they are.
    """

    def __init__(self, producer: Producer, redact: Redactor) -> None:
        self._producer = producer
        self._redact = redact

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[None]:
        redact = self._redact
        scrubbed = [
            (name, redact(data.decode("utf-8", "replace")).encode() if data else data)
            for name, data in headers
        ]
        return await self._producer.send(topic, key, value, scrubbed)

    async def flush(self) -> None:
        await self._producer.flush()

    async def close(self) -> None:
        """The wrapped producer belongs to the runner, which closes it."""
