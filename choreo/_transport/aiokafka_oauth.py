"""OAUTHBEARER for aiokafka: tokens from an OIDC token endpoint (client credentials grant).

librdkafka does this itself (``sasl.oauthbearer.method=oidc``); aiokafka asks
a token provider instead, so this is that provider, fed by the same settings.
A token is reused until ``REFRESH_MARGIN_S`` before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from pydantic import SecretStr

from choreo._errors import SecurityError

REFRESH_MARGIN_S = 30.0
TIMEOUT_S = 10.0


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    def __init__(
        self, url: str, client_id: str, client_secret: SecretStr, scope: str | None
    ) -> None:
        self._url = url
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires - REFRESH_MARGIN_S:
                fresh, self._expires = await asyncio.to_thread(self._fetch)
                self._token = fresh
                return fresh
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            **({"scope": self._scope} if self._scope else {}),
        }
        basic = f"{self._client_id}:{self._secret.get_secret_value()}".encode()
        request = urllib.request.Request(
            self._url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Authorization": f"Basic {base64.b64encode(basic).decode()}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:
            raise SecurityError(
                f"token endpoint {self._url} refused client {self._client_id!r}: HTTP "
                f"{error.code} (check oauth_client_id and oauth_client_secret)"
            ) from None
        except (OSError, ValueError) as error:
            raise SecurityError(f"token endpoint {self._url}: {error}") from None
        return str(answer["access_token"]), time.time() + float(answer.get("expires_in", 300))
