"""Scrub known secret values out of text that leaves the process: logs, dead letters, errors.

Secrets are ``SecretStr`` in the config, so choreo never formats one on
purpose; this catches the ones that arrive some other way, such as a handler's
exception that quotes a connection string. Known secrets are masked as they
are and URL-encoded (how they appear inside a URL). Secrets choreo was never
told about are masked where their shape gives them away: the password of a
URL's ``user:password@`` and a ``password=`` (``pwd=``, ``passwd=``) setting
of a DSN or query string. Known values shorter than ``MIN_LENGTH`` are left
alone: replacing every "a" would wreck the text and hide nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from choreo._transport.base import Headers, Producer

MIN_LENGTH = 4
MASK = "**********"


URL_PASSWORD = re.compile(
    r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/@]{0,256}:)[^\s@]{1,512}(?=@)"
)
"""``scheme://user:password@``: everything between the user's colon and the ``@``. Each part
is bounded so a long line without a URL costs linear time, not quadratic."""
SETTING_PASSWORD = re.compile(
    r"""(?P<keep>\b(?:password|passwd|pwd)\s*[=:]\s*)(?:'(?:[^'\\]|\\.)*'|"[^"]*"|[^\s;&,'"]+)""",
    re.IGNORECASE,
)
"""``password=...`` in a libpq/ODBC DSN or a query string, quoted or not."""


def _spellings(secret: str) -> set[str]:
    """The secret and how URLs write it (``%40`` for ``@``, upper and lower case hex)."""
    encoded = {quote(secret, safe=""), quote_plus(secret, safe="")}
    lower = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), e) for e in encoded}
    return {secret, *encoded, *lower}


class Redactor:
    """``redactor(text)`` is ``text`` with every known secret (as it is or URL-encoded) and
    every password-shaped part of a URL or DSN replaced by ``MASK``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        spellings = {v for s in secrets if len(s) >= MIN_LENGTH for v in _spellings(s)}
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(spellings, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = URL_PASSWORD.sub(rf"\g<keep>{MASK}", text)
        return SETTING_PASSWORD.sub(rf"\g<keep>{MASK}", text)


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
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(redact))


class ScrubbingProducer:
    """A producer whose header values are scrubbed before sending.

    The runtime hands it to the dead-letter and retry stages only: their
    headers quote the handler's error message and stack trace, the one place
    text from outside choreo lands in a record. Emitted events are sent as
    they are.
    """

    def __init__(self, producer: Producer, redact: Redactor, names: frozenset[str]) -> None:
        self._producer = producer
        self._redact = redact
        self._names = names
        """The text headers choreo writes with outside text in them; the others (the
        consumed record's own, binary ones included) are sent byte for byte."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[None]:
        redact, names = self._redact, self._names
        scrubbed = [
            (name, redact(data.decode("utf-8", "replace")).encode())
            if data and name in names
            else (name, data)
            for name, data in headers
        ]
        return await self._producer.send(topic, key, value, scrubbed)

    async def flush(self) -> None:
        await self._producer.flush()

    async def close(self) -> None:
        """The wrapped producer belongs to the runner, which closes it."""
