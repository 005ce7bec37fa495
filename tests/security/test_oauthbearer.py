"""OAUTHBEARER with tokens from an OIDC token endpoint (client credentials), on both transports.

The identity provider is this test's: it checks the client secret and issues unsecured JWTs
whose ``sub`` is the client id, which the local broker's development validator accepts (a real
cluster validates signed tokens against its IdP's keys; the client side is the same).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import Secured

pytestmark = pytest.mark.stack

SECRET = "idp-client-secret-9876"


def _part(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class _TokenEndpoint(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        client, _, secret = base64.b64decode(encoded or "").decode().partition(":")
        if scheme != "Basic" or secret != SECRET:
            self.send_response(401)
            self.end_headers()
            return
        now = int(time.time())
        claims = {"sub": client, "iat": now, "exp": now + 3600}
        token = f"{_part({'alg': 'none'})}.{_part(claims)}."
        body = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()


def _oauth(secured: Secured, client: str, url: str, secret: str) -> dict[str, str]:
    return {
        "CHOREO_BOOTSTRAP_SERVERS": secured.secure.bootstrap_servers,
        "CHOREO_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "CHOREO_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
        "CHOREO_KAFKA__OAUTH_TOKEN_ENDPOINT_URL": url,
        "CHOREO_KAFKA__OAUTH_CLIENT_ID": client,
        "CHOREO_KAFKA__OAUTH_CLIENT_SECRET": secret,
        "CHOREO_KAFKA__SSL_CAFILE": str(secured.secure.ca_file),
    }


@pytest.mark.parametrize("transport", ["confluent", "aiokafka"])
def test_a_service_runs_as_its_token_subject(
    secured: Secured, token_url: str, transport: str
) -> None:
    applied = secured.admin("acl", "apply", "secure_services:stock")
    assert applied.returncode == 0, applied.stderr
    env = {**_oauth(secured, f"{secured.prefix}stock", token_url, SECRET)}
    process = secured.start(
        "run", "secure_services:stock", env=env | {"CHOREO_TRANSPORT": transport}
    )
    secured.wait(lambda: ": assigned " in secured.output(process), "the service to be assigned")
    output = secured.output(process)
    assert f"OAUTHBEARER as client '{secured.prefix}stock' via {token_url}" in output
    assert SECRET not in output


@pytest.mark.parametrize("transport", ["confluent", "aiokafka"])
def test_a_wrong_client_secret_is_a_clear_start_up_error(
    secured: Secured, token_url: str, transport: str
) -> None:
    env = _oauth(secured, f"{secured.prefix}stock", token_url, "not-the-secret-42")
    done = secured.choreo("run", "secure_services:stock", env=env | {"CHOREO_TRANSPORT": transport})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "not-the-secret-42" not in output
    [line] = [line for line in output.splitlines() if line.startswith("choreo: ")]
    assert "oauth_client_secret" in line and (
        "Failed to acquire SASL OAUTHBEARER token" in line or "refused client" in line
    )
