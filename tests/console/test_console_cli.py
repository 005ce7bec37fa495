"""``choreo console`` as a user starts it: on 127.0.0.1, every page answering over the real
stack, changes refused without the page's CSRF value, and SIGTERM ends it with exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from choreo._console.trace import PLACEHOLDER, jaeger_ui_present
from choreo.pytest_plugin import JaegerEndpoints

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]


def fetch(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=20) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_the_console_command_serves_every_page_and_stops_on_sigterm(
    kafka: str, jaeger: JaegerEndpoints, unique_name: Callable[[str], str]
) -> None:
    env = {**os.environ, "CHOREO_KAFKA__BOOTSTRAP_SERVERS": kafka}
    saga = unique_name("nosaga")
    command = [sys.executable, "-m", "choreo", "console", "--port", "0", "--saga", saga,
               "--jaeger", jaeger.query]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("choreo console on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[-1]
        status, headers, body = fetch(f"{url}/?saga={saga}")
        assert status == 200 and "0 matching" in body
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "choreo_csrf=" in headers["set-cookie"]
        status, _, body = fetch(f"{url}/topology")
        assert status == 200 and "<svg" in body and "choreo-saga-order" in body
        status, _, body = fetch(f"{url}/dlq?q=choreo.dlq.{saga}.*")
        assert status == 200 and 'class="dlq"' in body
        status, _, _ = fetch(f"{url}/saga?saga={saga}&id=none")
        assert status == 404
        status, _, body = fetch(f"{url}/dlq/purge/send", b"topic=choreo.dlq.x.y")
        assert status == 403 and "CSRF" in body
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0

    with urllib.request.urlopen(f"{jaeger.query}/", timeout=10) as answer:
        placeholder = PLACEHOLDER in answer.read().decode(errors="replace")
    assert jaeger_ui_present(jaeger.query) is not placeholder
    assert jaeger_ui_present("http://127.0.0.1:9") is False  # nothing listens: no UI
