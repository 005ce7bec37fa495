"""Typed settings for a running service, read from a TOML file and ``CHOREO_*`` env vars.

Env vars win over the file so a container can override one value without
shipping a new file. Secrets are ``SecretStr``: they never show in ``repr``,
logs or the start-up summary.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)

from choreo._errors import ConfigError

SECRET_WORDS = ("password", "secret", "token", "jaas", "credential")
"""A client option whose name holds one of these carries a secret (``ssl.key.password``...)."""


def is_secret_option(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def default_instance_id() -> str:
    """``<host>-<pid>``: unique per process, so two instances started on one host never
    share a transactional id (and fence each other) unless the deployment says so."""
    return f"{socket.gethostname()}-{os.getpid()}"


NAME_CHARACTERS = "ASCII letters, digits, '-' or '_'"
"""What :func:`is_plain_name` accepts, for error messages."""


def transactional_prefix(group_id: str) -> str:
    """``choreo.<group>.``: a group name (a service's, or a tracker's ``choreo-saga-<saga>``)
    holds no ``.``, so an ACL on this prefix reaches this group's transactional ids and no
    other group's (``a`` never reaches ``a-b``)."""
    return f"choreo.{group_id}."


def transactional_id(group_id: str, instance: str) -> str:
    """One instance's transactional id, under its group's prefix."""
    return transactional_prefix(group_id) + instance


def is_plain_name(name: str) -> bool:
    """ASCII letters, digits, ``-`` and ``_`` only, at least one letter or digit: never a
    ``.``, which choreo uses to separate a group from an instance id, so one name's ACL prefix
    cannot reach another's ids; and nothing Kafka refuses in the topic and group names made
    from it (``str.isalnum`` alone takes ``é`` or ``订``)."""
    return bool(name) and name.isascii() and name.replace("-", "").replace("_", "").isalnum()


class KafkaConfig(BaseModel):
    """How to reach the brokers; the same fields map onto every transport's own options.

    Every secret (passwords, the OAuth client secret, secret-looking
    ``client_options``) is hidden in ``repr`` and listed by ``secrets()`` so
    logs and dead letters can be scrubbed of it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How clients talk to the brokers."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    """SASL mechanism when the protocol is SASL_*."""
    sasl_username: str | None = None
    """SASL user name (PLAIN, SCRAM)."""
    sasl_password: SecretStr | None = None
    """SASL password (hidden in repr and logs)."""
    oauth_token_endpoint_url: str | None = None
    """OAUTHBEARER: the OIDC token endpoint tokens are fetched from (client credentials grant)."""
    oauth_client_id: str | None = None
    """OAUTHBEARER: the client id sent to the token endpoint."""
    oauth_client_secret: SecretStr | None = None
    """OAUTHBEARER: the client secret sent to the token endpoint (hidden)."""
    oauth_scope: str | None = None
    """OAUTHBEARER: the scope asked for, if the identity provider wants one."""
    ssl_cafile: Path | None = None
    """CA bundle that signed the brokers' certificates (default: the system's)."""
    ssl_certfile: Path | None = None
    """Client certificate for mutual TLS (PEM; may hold the key too)."""
    ssl_keyfile: Path | None = None
    """Client private key for mutual TLS (PEM)."""
    ssl_key_password: SecretStr | None = None
    """Password of an encrypted ``ssl_keyfile`` (hidden)."""
    ssl_check_hostname: bool = True
    """Check that the broker's certificate names the host connected to."""
    client_options: dict[str, str] = Field(default_factory=dict)
    """Raw options passed to the client library as they are (escape hatch)."""

    @model_validator(mode="after")
    def _complete(self) -> KafkaConfig:
        """Settings that cannot work fail here, naming the field, before any connection."""
        sasl = self.security_protocol.startswith("SASL")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl_mechanism")
        password_mechanism = self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if sasl and password_mechanism and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"{self.sasl_mechanism} needs sasl_username and sasl_password")
        if sasl and self.sasl_mechanism == "OAUTHBEARER":
            oidc = (self.oauth_token_endpoint_url, self.oauth_client_id, self.oauth_client_secret)
            raw = any("oauthbearer" in name for name in self.client_options)
            if None in oidc and not raw:
                raise ValueError(
                    "OAUTHBEARER needs oauth_token_endpoint_url, oauth_client_id and "
                    "oauth_client_secret (or the client's own sasl.oauthbearer.* client_options)"
                )
        if "SSL" in self.security_protocol:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = getattr(self, name)
                if path is not None and not path.is_file():
                    raise ValueError(f"{name} {path} is not a readable file")
        return self

    def secrets(self) -> list[str]:
        """Every secret value set here, for scrubbing text that might quote one."""
        values = [
            secret.get_secret_value()
            for secret in (self.sasl_password, self.oauth_client_secret, self.ssl_key_password)
            if secret is not None
        ]
        values += [v for k, v in self.client_options.items() if is_secret_option(k)]
        return [v for v in values if v]

    @field_serializer("client_options")
    def _masked_options(self, options: dict[str, str]) -> dict[str, str]:
        """``model_dump()`` shows secret-looking values as ``'**********'``, like SecretStr's;
        the clients read the attribute itself, which keeps the real values."""
        return {k: "**********" if is_secret_option(k) else v for k, v in options.items()}

    def __repr_args__(self) -> Any:
        """``client_options`` values that look secret show as ``'**********'``, like SecretStr."""
        for name, value in super().__repr_args__():
            yield name, self._masked_options(value) if name == "client_options" else value


class IngressConfig(BaseModel):
    """How ``choreo ingress`` turns signed HTTP requests into events (its ``[ingress]`` table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    """Address to listen on (a container needs 0.0.0.0)."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port to listen on; 0 lets the kernel pick one (printed at start-up)."""
    routes: dict[str, str] = Field(default_factory=dict)
    """``"POST /orders" = "shop.orders.OrderReceived"``: the body of each route is that event."""
    models: str | None = None
    """Module holding the event models (default: the catalog's ``[codegen] module``)."""
    secret: SecretStr | None = None
    """Shared HMAC-SHA256 key of the signed requests (hidden in repr and logs; set it with
    ``CHOREO_INGRESS__SECRET`` rather than in a file)."""
    tolerance_s: float = Field(default=300.0, gt=0)
    """How far a request's timestamp may be from now; older ones are replays."""
    max_body_bytes: int = Field(default=262_144, gt=0)
    """Larger bodies get 413 before they are read in full."""
    publish_timeout_s: float = Field(default=10.0, gt=0)
    """How long a request waits for the broker's acknowledgement before it gets 503."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A connection whose request line and headers are not in by then is closed."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """A body not received in full by then gets 408 (slow senders hold a connection)."""
    max_header_bytes: int = Field(default=16_384, gt=0)
    """Larger request heads are refused (431, or 400 while still arriving)."""
    max_connections: int = Field(default=100, gt=0)
    """Open connections at most; a request beyond it gets 503 at once."""
    replay_dsn: SecretStr | None = None
    """PostgreSQL DSN of the seen-signature store every replica shares; unset: in memory,
    right for one process only (a restart forgets). Set it with ``CHOREO_INGRESS__REPLAY_DSN``."""
    accept_v1: bool = False
    """Also accept ``v1=`` signatures (method, path and query unsigned) while senders move."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve ``/metrics`` and a ``/readyz`` that says why on 127.0.0.1 at this port (0: any)."""
    source: str = "ingress"
    """``ce_source`` of the events published."""


class SchemaRegistryConfig(BaseModel):
    """Where the Confluent-compatible schema registry answers (its ``[schema_registry]`` table).

    The default is the local stack's Apicurio, as ``kafka.bootstrap_servers`` defaults to its
    broker. ``timeout_s`` is always set: ``SchemaRegistryClient`` has no timeout of its own,
    and a registry that never answers would hang a service's start for ever.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "http://127.0.0.1:8085/apis/ccompat/v7"
    """Base URL of the Confluent-compatible API (Apicurio's is ``/apis/ccompat/v7``)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """How long one registry call may take before it fails, naming the URL."""
    auto_register: bool = False
    """Let services register a schema version missing from the registry (dev and tests only;
    in production ``choreo schemas push`` registers the repo's versions)."""

    def client_conf(self) -> dict[str, Any]:
        """Options for ``confluent_kafka.schema_registry.SchemaRegistryClient``."""
        return {"url": self.url, "timeout": self.timeout_s}


class ServiceConfig(BaseModel):
    """How ``choreo run`` runs one service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    """Broker connection."""
    transport: Literal["confluent", "aiokafka"] = "confluent"
    """Which client library moves the bytes."""
    schemas_dir: Path = Path("schemas")
    """Where the Avro schemas and ``catalog.toml`` live."""
    group_id: str | None = None
    """Consumer group; defaults to the service name (one group per service). Letters, digits,
    ``-`` and ``_``: it names the transactional ids too (``choreo.<group>.<instance>``)."""
    max_in_flight: int = 10_000
    """Records buffered or being handled before partitions are paused (backpressure)."""
    max_poll_records: int = 500
    """Records fetched per poll."""
    exactly_once: bool = False
    """Consume, emit and commit in one Kafka transaction (confluent transport); outputs are
    visible to ``read_committed`` readers once, even across crashes."""
    instance_id: str | None = None
    """This instance's identity (``CHOREO_INSTANCE_ID``; default ``<host>-<pid>``, unique per
    process). Names the transactional id (``choreo.<group>.<instance>``) and, with
    ``static_membership``, the group member: give it a value stable across restarts of one
    instance (a StatefulSet pod name) and different between instances."""
    static_membership: bool = False
    """Join the group as a static member (``group.instance.id`` = ``instance_id``): a
    restarted instance takes its partitions back without a rebalance, but a stopped one
    does not leave, so its partitions wait ``session_timeout_s`` (see "Scaling out")."""
    session_timeout_s: float = Field(default=10.0, ge=6.0, le=300.0)
    """How long a member may go silent (crashed) before its partitions move to the others;
    the broker's ``group.min.session.timeout.ms`` (6 s) is the floor."""
    key_concurrency: int = Field(default=0, ge=0)
    """0: one record of a partition at a time. N: up to N keys of a partition at once,
    each key still in order (for slow, I/O-bound handlers; not with batch handlers)."""
    commit_interval_s: float = 1.0
    """How often finished offsets are committed (and always on revoke and shutdown)."""
    shutdown_grace_s: float = 30.0
    """SIGTERM/SIGINT: how long the records being handled may take before the service exits."""
    max_record_bytes: int = 1_048_576
    """Larger records are dead-lettered without decoding."""
    create_topics: bool = True
    """Create the catalog's topics (and the service's DLQ topics) when missing."""
    tune_gc: bool = True
    """``choreo run`` / ``choreo saga run``: once started, freeze the start-up heap out of
    Python's collections and collect the young generation every 20,000 new objects instead of
    700 (13-16% less CPU per event in the saga tracker). A saga tracker also fixes glibc's malloc
    thresholds, small during each restore so what it frees leaves the process, large after it
    (unless the environment sets them). Process-wide: false keeps Python's and glibc's
    defaults, for handlers that make reference cycles at a high rate."""
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    """Settings of ``choreo ingress`` (unused by ``choreo run``)."""
    schema_registry: SchemaRegistryConfig = Field(default_factory=SchemaRegistryConfig)
    """The registry of topics in the registry wire format (``CHOREO_SCHEMA_REGISTRY__URL``)."""

    @model_validator(mode="after")
    def _identity(self) -> ServiceConfig:
        """Names that become ACL prefixes stay plain; a static member needs a given id."""
        if self.group_id is not None and not is_plain_name(self.group_id):
            raise ValueError(f"group_id {self.group_id!r} must be {NAME_CHARACTERS}")
        if self.static_membership and not self.instance_id:
            raise ValueError(
                "static_membership needs a stable instance_id per instance "
                "(CHOREO_INSTANCE_ID, e.g. the StatefulSet pod name)"
            )
        return self

    def instance(self) -> str:
        """The configured ``instance_id``, else one unique to this process."""
        return self.instance_id or default_instance_id()


_NESTED = ("kafka", "ingress", "schema_registry")
"""Settings tables that env vars reach with a double underscore."""


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``CHOREO_TRANSPORT`` → transport; ``CHOREO_KAFKA__SASL_USERNAME`` → kafka.sasl_username
    (likewise ``CHOREO_INGRESS__PORT`` → ingress.port, ``CHOREO_SCHEMA_REGISTRY__URL`` →
    schema_registry.url)."""
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("CHOREO_"):
            continue
        path = name.removeprefix("CHOREO_").lower().split("__")
        if path[0] in _NESTED and len(path) == 2:
            overrides.setdefault(path[0], {})[path[1]] = value
        elif len(path) == 1 and path[0] in ServiceConfig.model_fields and path[0] not in _NESTED:
            overrides[path[0]] = value
    if "BOOTSTRAP_SERVERS" in {n.removeprefix("CHOREO_") for n in environ}:
        overrides.setdefault("kafka", {})["bootstrap_servers"] = environ["CHOREO_BOOTSTRAP_SERVERS"]
    return overrides


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> ServiceConfig:
    """File (if given) then env; a bad value names the setting and where it came from."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from None
    overrides = _env_overrides(dict(os.environ if environ is None else environ))
    nested = {name: {**data.get(name, {}), **overrides.pop(name, {})} for name in _NESTED}
    merged = {**data, **overrides, **nested}
    try:
        return ServiceConfig.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid settings ({path or 'env'}): {problems}") from None
