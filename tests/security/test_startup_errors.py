"""Credentials or certificates that cannot work: one start-up line naming the problem and the
setting to fix, and no secret anywhere in the output."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Secured

from choreo._dev.tls import ensure_ca, issue

pytestmark = pytest.mark.stack


def _fails(secured: Secured, env: dict[str, str]) -> str:
    """Run the stock service, expect it to stop at start-up; its one ``choreo:`` line."""
    done = secured.choreo("run", "secure_services:stock", env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    for secret in [*secured.passwords.values(), "wrong-pw-1234"]:
        assert secret not in output
    [line] = [line for line in output.splitlines() if line.startswith("choreo: ")]
    return line


@pytest.mark.parametrize("transport", ["confluent", "aiokafka"])
def test_a_wrong_password_names_the_user_and_mechanism(secured: Secured, transport: str) -> None:
    stock = secured.user("stock")
    env = secured.as_user(stock, sasl_password="wrong-pw-1234")
    line = _fails(secured, {**env, "CHOREO_TRANSPORT": transport})
    assert "refused us" in line
    assert f"check sasl_username '{stock}' and sasl_password for SCRAM-SHA-512" in line


def test_an_expired_client_certificate_is_named_before_connecting(
    secured: Secured, tmp_path: Path
) -> None:
    stock = secured.user("stock")
    expired = issue(secured.secure.tls_dir, "expired", stock, days=-1, into=tmp_path)
    line = _fails(secured, secured.as_user(stock, ssl_certfile=expired))
    assert f"ssl_certfile {expired}: the client certificate expired on" in line


def test_a_broker_certificate_from_another_ca_is_not_trusted(
    secured: Secured, tmp_path: Path
) -> None:
    stock = secured.user("stock")
    other_ca = ensure_ca(tmp_path / "other-ca")
    line = _fails(secured, secured.as_user(stock, ssl_cafile=other_ca))
    assert "certificate verify failed" in line
    assert f"not signed by ssl_cafile ({other_ca})" in line


def test_a_valid_client_certificate_is_accepted_beside_scram(
    secured: Secured, tmp_path: Path
) -> None:
    """Mutual TLS: the broker checks a presented certificate against its CA and lets it in."""
    stock = secured.user("stock")
    applied = secured.admin("acl", "apply", "secure_services:stock")
    assert applied.returncode == 0, applied.stderr
    client = issue(secured.secure.tls_dir, "client", stock, into=tmp_path)
    process = secured.start(
        "run", "secure_services:stock", env=secured.as_user(stock, ssl_certfile=client)
    )
    secured.wait(lambda: ": assigned " in secured.output(process), "the service to be assigned")
    assert process.poll() is None
