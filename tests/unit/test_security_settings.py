"""Security settings: mapped to each client's option names, checked before connecting, and
never printed (repr, start-up summary, logs, dead-letter headers)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from choreo import ConfigError, load_config
from choreo._cli.run import security_line
from choreo._config import KafkaConfig
from choreo._dev.tls import issue
from choreo._security.diagnose import explain
from choreo._security.redact import Redactor, ScrubbingProducer, redact_logs
from choreo._security.tls_files import check_client_tls, validity
from choreo._transport.aiokafka import aiokafka_settings
from choreo._transport.base import Headers
from choreo._transport.confluent import librdkafka_settings

SCRAM = {
    "CHOREO_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "CHOREO_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "CHOREO_KAFKA__SASL_USERNAME": "orders",
    "CHOREO_KAFKA__SASL_PASSWORD": "s3cret-pw",
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a valid client certificate and an expired one, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    issue(folder, "client", "orders")
    issue(folder, "expired", "orders", days=-1)
    return folder


def test_scram_over_tls_maps_to_both_clients_option_names(tls: Path) -> None:
    config = load_config(
        environ={
            **SCRAM,
            "CHOREO_KAFKA__SSL_CAFILE": str(tls / "ca.pem"),
            "CHOREO_KAFKA__SSL_CERTFILE": str(tls / "client.pem"),
        }
    ).kafka
    rd = librdkafka_settings(config)
    assert rd["security.protocol"] == "sasl_ssl"
    assert (rd["sasl.mechanism"], rd["sasl.username"], rd["sasl.password"]) == (
        "SCRAM-SHA-512",
        "orders",
        "s3cret-pw",
    )
    assert rd["ssl.ca.location"] == str(tls / "ca.pem")
    assert rd["ssl.key.location"] == rd["ssl.certificate.location"] == str(tls / "client.pem")
    assert rd["ssl.endpoint.identification.algorithm"] == "https"
    aio = aiokafka_settings(config)
    assert (aio["sasl_mechanism"], aio["sasl_plain_username"], aio["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "orders",
        "s3cret-pw",
    )
    assert aio["ssl_context"].check_hostname


def test_oauthbearer_maps_to_librdkafka_oidc_and_an_aiokafka_token_provider() -> None:
    config = KafkaConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        oauth_token_endpoint_url="https://idp.example/token",
        oauth_client_id="orders",
        oauth_client_secret="client-s3cret",  # type: ignore[arg-type]
        oauth_scope="kafka",
    )
    rd = librdkafka_settings(config)
    assert rd["sasl.oauthbearer.method"] == "oidc"
    assert rd["sasl.oauthbearer.client.secret"] == "client-s3cret"
    assert rd["sasl.oauthbearer.scope"] == "kafka"
    assert type(aiokafka_settings(config)["sasl_oauth_token_provider"]).__name__ == (
        "ClientCredentialsTokens"
    )


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CHOREO_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "needs a sasl_mechanism"),
        (
            {**SCRAM, "CHOREO_KAFKA__SASL_PASSWORD": ""} | {"CHOREO_KAFKA__SASL_USERNAME": ""},
            "SCRAM-SHA-512 needs sasl_username and sasl_password",
        ),
        (
            {
                "CHOREO_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                "CHOREO_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
            },
            "OAUTHBEARER needs oauth_token_endpoint_url",
        ),
        ({**SCRAM, "CHOREO_KAFKA__SSL_CAFILE": "/nowhere/ca.pem"}, "ssl_cafile /nowhere/ca.pem"),
    ],
)
def test_settings_that_cannot_work_fail_at_load_naming_the_field(
    env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        load_config(environ=env)
    assert "s3cret-pw" not in str(caught.value)


def test_an_expired_client_certificate_is_named_before_connecting(tls: Path) -> None:
    not_before, not_after = validity(tls / "expired.pem")
    assert not_after < not_before
    config = KafkaConfig(
        security_protocol="SSL",
        ssl_cafile=tls / "ca.pem",
        ssl_certfile=tls / "expired.pem",
    )
    with pytest.raises(ConfigError, match=r"expired\.pem: the client certificate expired on"):
        check_client_tls(config)
    check_client_tls(config.model_copy(update={"ssl_certfile": tls / "client.pem"}))


def test_a_key_that_is_not_the_certificates_is_named(tls: Path) -> None:
    config = KafkaConfig(
        security_protocol="SSL",
        ssl_certfile=tls / "client.pem",
        ssl_keyfile=tls / "ca.key",
    )
    with pytest.raises(ConfigError, match=r"cannot load the client certificate and key"):
        check_client_tls(config)


def test_client_errors_get_the_setting_to_fix_and_no_secret() -> None:
    config = load_config(environ=SCRAM).kafka
    text = explain(
        "SASL authentication error: Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-512",
        config,
    )
    assert "check sasl_username 'orders' and sasl_password for SCRAM-SHA-512" in text
    assert "s3cret-pw" not in text
    assert "not trusted" in explain("SSL handshake failed: certificate verify failed", config)
    assert explain("Connection refused", config) == "Connection refused"


def test_secrets_stay_out_of_repr_summary_logs_and_failure_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load_config(environ=SCRAM).kafka.model_copy(
        update={"client_options": {"ssl.key.password": "key-pw-123", "linger.ms": "5"}}
    )
    assert config.secrets() == ["s3cret-pw", "key-pw-123"]
    shown = repr(config) + security_line(config)
    assert "s3cret-pw" not in shown and "key-pw-123" not in shown
    assert "SCRAM-SHA-512 as 'orders' (password set)" in shown
    assert "'linger.ms': '5'" in shown

    redact = Redactor(config.secrets())
    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    try:
        redact_logs(redact)
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "dsn %s", ("u:s3cret-pw@h",), None)
        assert handler.filter(record)
        assert record.getMessage() == "dsn u:**********@h"
    finally:
        logging.getLogger().removeHandler(handler)

    sent: list[Headers] = []

    class Recorder:
        async def send(
            self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
        ) -> asyncio.Future[None]:
            sent.append(headers)
            return asyncio.get_running_loop().create_future()

        async def flush(self) -> None: ...

        async def close(self) -> None: ...

    async def park() -> None:
        producer = ScrubbingProducer(Recorder(), redact, frozenset({"choreo_dlq_error_message"}))
        await producer.send(
            "dlq",
            b"k",
            b"v",
            [("bin", b"\xff\xfe\x00\x80"), ("choreo_dlq_error_message", b"pw=key-pw-123")],
        )

    asyncio.run(park())
    assert sent == [[("bin", b"\xff\xfe\x00\x80"), ("choreo_dlq_error_message", b"pw=**********")]]
