"""Who may change things: read-only pages are open, replays and purges are guarded.

Every POST (the confirmation pages, which only read, and the changes) must carry

- the CSRF value of the browser's ``choreo_csrf`` cookie as a form field (double submit: a
  page on another site can make the browser send the cookie but cannot read it to copy it),
  and, when the request says where it comes from (``Origin``, ``Sec-Fetch-Site``), come from
  the console's own origin;
and a change (the replay or purge itself) must also carry

- the console's token, when one is set (``--token`` / ``CHOREO_CONSOLE_TOKEN``): typed into
  the form once, then held in an HttpOnly cookie.

Cookies are ``SameSite=Strict``, so another site's form post arrives without them at all.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

CSRF_COOKIE = "choreo_csrf"
TOKEN_COOKIE = "choreo_token"
CSRF_FIELD = "csrf"
TOKEN_FIELD = "token"


def cookies(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq:
            found.setdefault(name, value)
    return found


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def set_cookie(name: str, value: str) -> str:
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str = ""
    set_cookies: tuple[str, ...] = ()


class Guard:
    def __init__(self, token: str | None) -> None:
        self._token = token or None

    @property
    def needs_token(self) -> bool:
        return self._token is not None

    def has_token(self, jar: Mapping[str, str]) -> bool:
        return self._token is None or _same(jar.get(TOKEN_COOKIE), self._token)

    @staticmethod
    def csrf_for(jar: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
        """The browser's CSRF value, and the Set-Cookie for a new one if it had none."""
        current = jar.get(CSRF_COOKIE)
        if current:
            return current, ()
        fresh = secrets.token_urlsafe(24)
        return fresh, (set_cookie(CSRF_COOKIE, fresh),)

    def check_post(
        self,
        headers: Mapping[str, str],
        jar: Mapping[str, str],
        form: Mapping[str, str],
        *,
        changes: bool,
    ) -> Verdict:
        host = headers.get("host", "")
        origin = headers.get("origin")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return Verdict(False, f"cross-origin request from {origin!r} refused")
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return Verdict(False, "cross-site request refused")
        if not _same(form.get(CSRF_FIELD), jar.get(CSRF_COOKIE)):
            return Verdict(False, "missing or wrong CSRF value: reload the page and try again")
        if not changes or self._token is None or self.has_token(jar):
            return Verdict(True)
        if _same(form.get(TOKEN_FIELD), self._token):
            return Verdict(True, set_cookies=(set_cookie(TOKEN_COOKIE, self._token),))
        return Verdict(False, "this console needs its token for changes (--token)")
