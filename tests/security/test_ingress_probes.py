"""An unauthenticated caller reads the ingress's probes while it talks SASL_SSL to the broker:
it learns ready or not, never the broker address, listener, mechanism or user (issue 23.4)."""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request

import pytest
from conftest import Secured, kafka_env

pytestmark = pytest.mark.stack


def _probe(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _start_ingress(secured: Secured, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """The ingress process and its URL."""
    process = secured.start(
        "ingress",
        "--route",
        "POST /orders=shop.orders.OrderReceived",
        "--port",
        "0",
        env={
            **env,
            "CHOREO_INGRESS__SECRET": "probe-test-secret",
            "CHOREO_INGRESS__MODELS": "services.events",
        },
    )
    listening = re.compile(r"choreo ingress listening on (http://\S+)")
    found: list[str] = []

    def started() -> bool:
        assert process.poll() is None, secured.output(process)
        found[:] = listening.findall(secured.output(process))
        return bool(found)

    secured.wait(started, "the ingress to listen")
    return process, found[0]


@pytest.mark.parametrize("password_ok", [True, False], ids=["ready", "wrong-password"])
def test_the_public_probes_say_ready_or_not_and_nothing_else(
    secured: Secured, password_ok: bool
) -> None:
    secure = secured.secure
    password = secure.admin_password if password_ok else "not-the-password"
    process, url = _start_ingress(secured, kafka_env(secure.config(secure.admin_user, password)))
    status, body = _probe(f"{url}/readyz")
    expected = (200, b'{"status": "ready"}') if password_ok else (503, b'{"status": "not ready"}')
    assert (status, body) == expected  # no address, listener, mechanism or user
    assert _probe(f"{url}/healthz") == (200, b'{"status": "ok"}')
    if not password_ok:  # the reason is the operator's, in the log
        secured.wait(lambda: "not ready: " in secured.output(process), "the reason in the log")
    assert password not in secured.output(process)  # the log is redacted
