"""A small client for the Confluent-compatible schema registry API (Confluent, Apicurio, Karapace).

Only the calls choreo makes, on the standard library: every call has a timeout (a registry that
never answers must not hang a service's start), and every failure names the URL it was calling.
Nothing here is on the per-record path: callers cache what they get.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from choreo._errors import ChoreoError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(ChoreoError):
    """The registry answered with an error (``status`` is the HTTP status)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RegistryUnavailable(ChoreoError):
    """The registry could not be reached or did not answer in time."""


class RegistryClient:
    """One registry, at ``url`` (the base of the Confluent-compatible API)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def ping(self) -> None:
        """Raise :class:`RegistryUnavailable` (one line naming the URL) unless it answers."""
        self._call("GET", "/subjects")

    def schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        return str(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of ``schema`` under ``subject``, or None when it is not registered there."""
        try:
            answer = self._call("POST", f"/subjects/{_quote(subject)}", {"schema": schema})
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return int(answer["id"])

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` as ``subject``'s next version (the registry checks compatibility)."""
        answer = self._call("POST", f"/subjects/{_quote(subject)}/versions", {"schema": schema})
        return int(answer["id"])

    def latest(self, subject: str) -> str | None:
        """The schema text of ``subject``'s latest version, or None for an unknown subject."""
        try:
            answer = self._call("GET", f"/subjects/{_quote(subject)}/versions/latest")
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return str(answer["schema"])

    def version_count(self, subject: str) -> int:
        """How many versions ``subject`` holds (0 for an unknown subject)."""
        try:
            return len(self._call("GET", f"/subjects/{_quote(subject)}/versions"))
        except RegistryError as exc:
            if exc.status == 404:
                return 0
            raise

    def set_compatibility(self, subject: str, level: str) -> None:
        """Set ``subject``'s compatibility level (``BACKWARD``, ``NONE``...)."""
        self._call("PUT", f"/config/{_quote(subject)}", {"compatibility": level})

    def compatible(self, subject: str, schema: str) -> bool:
        """Whether ``schema`` may become ``subject``'s next version under its rule."""
        path = f"/compatibility/subjects/{_quote(subject)}/versions/latest"
        return bool(self._call("POST", path, {"schema": schema})["is_compatible"])

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", CONTENT_TYPE)
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RegistryError(
                f"schema registry {method} {url}: HTTP {exc.code}: {_detail(exc)}", exc.code
            ) from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad JSON
            raise RegistryUnavailable(f"schema registry {url} is unavailable: {exc}") from None


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _detail(exc: urllib.error.HTTPError) -> str:
    """The registry's own message (``{"error_code": .., "message": ..}``), else the reason."""
    try:
        return str(json.loads(exc.read())["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(exc.reason)
