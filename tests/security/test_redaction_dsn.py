"""A handler's exception quotes connection strings: a database URL with ``user:password@``, a
libpq DSN's ``password=``, and the service's own SASL password URL-encoded. None of them may
reach the dead letter's headers or the service's log; ``ServiceConfig.model_dump()`` must not
show secret-looking client options either."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
from conftest import Secured, kafka_env

import choreo
from choreo._config import KafkaConfig, ServiceConfig
from choreo._dlq.reader import read
from choreo._runtime import dead_letters as dlq
from choreo._schemas import Catalog
from choreo._security.redact import MASK, Redactor
from choreo._transport.confluent import librdkafka_settings
from services.events import OrderPlaced

pytestmark = pytest.mark.stack
DB_PASSWORD = "db-pw-Kq7-secret"
"""Known to nobody but the handler: masked by its shape alone."""

leaky = choreo.Service(f"{os.environ.get('CHOREO_TEST_PREFIX', '')}leaky")


@leaky.on(OrderPlaced, retry=choreo.RetryPolicy(max_attempts=1))
def connect(event: OrderPlaced, ctx: choreo.Context) -> None:
    sasl = quote(os.environ["CHOREO_KAFKA__SASL_PASSWORD"] + "/@ x", safe="")
    raise ConnectionError(
        f"postgresql://orders:{DB_PASSWORD}@db:5432/orders refused; "
        f"retried with host=db password='{DB_PASSWORD}' user=orders; "
        f"broker said kafka://admin:{sasl}@broker"
    )


def test_passwords_in_an_exception_reach_neither_the_dead_letter_nor_the_log(
    secured: Secured, kafka: str
) -> None:
    admin = secured.secure.admin()
    assert admin.sasl_password is not None
    sasl = admin.sasl_password.get_secret_value()
    env = {**kafka_env(admin), "CHOREO_CREATE_TOPICS": "true"}
    service = secured.start("run", "test_redaction_dsn:leaky", env=env)
    catalog = Catalog.load(secured.schemas)
    parked = dlq.dlq_topic(f"{secured.prefix}leaky", catalog.topic_of(OrderPlaced.event_type).name)
    from test_secured_saga import publish_placed  # not at the top: `choreo run` imports this

    publish_placed(kafka, secured.schemas, f"leak-{uuid.uuid4().hex[:8]}")
    settings = librdkafka_settings(admin)
    secured.wait(lambda: service.poll() is not None or _parked(settings, parked), "a dead letter")
    assert service.poll() is None, secured.output(service)
    [letter] = list(read(settings, parked))
    secured.stop()

    text = "\n".join(v.decode() for k, v in letter.headers if k.startswith("choreo_dlq_"))
    log = secured.output(service)
    for where in (text, log):
        assert DB_PASSWORD not in where and sasl not in where
        assert quote(sasl + "/@ x", safe="") not in where
    assert f"postgresql://orders:{MASK}@db" in (letter.header(dlq.ERROR_MESSAGE) or "")
    assert f"password={MASK} user=orders" in text
    assert f"kafka://admin:{MASK}@broker" in log


def _parked(settings: dict[str, object], topic: str) -> bool:
    try:
        return any(True for _ in read(settings, topic))
    except choreo.ChoreoError:
        return False  # not created yet


def test_model_dump_masks_secret_looking_client_options() -> None:
    options = {"sasl.oauthbearer.client.secret": "oauth-s3cret", "linger.ms": "5"}
    config = ServiceConfig(kafka=KafkaConfig(client_options=options))
    for dumped in (str(config.model_dump()), config.model_dump_json(), repr(config)):
        assert "oauth-s3cret" not in dumped and "linger.ms" in dumped
    assert config.kafka.client_options == options  # the client still gets the real value


def test_url_encoded_and_dsn_shaped_passwords_are_masked() -> None:
    redact = Redactor(["p@ss w/rd!"])
    cases = {
        "mysql://u:p%40ss%20w%2Frd%21@h": f"mysql://u:{MASK}@h",
        "q=p%40ss+w%2frd%21": f"q={MASK}",
        "redis://:only@h:6379/0": f"redis://:{MASK}@h:6379/0",
        "Server=x;UID=u;PWD=abc;": f"Server=x;UID=u;PWD={MASK};",
        'password: "two words" next': f"password: {MASK} next",
        "https://example.com:8443/path stays": "https://example.com:8443/path stays",
    }
    assert {text: redact(text) for text in cases} == cases
