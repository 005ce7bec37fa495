"""The transport on aiokafka, a pure-asyncio client (``transport = "aiokafka"``).

This module is imported only when the transport is chosen (see
``registry.py``), so aiokafka stays an optional install.

Behaviour matches the confluent transport where the runtime can tell:
manual commits only, eager rebalances, ``on_revoked`` before a close, pauses
limited to owned partitions, listener errors re-raised by the next ``poll``.
The difference: aiokafka runs rebalance callbacks on its own coordinator
task, concurrently with (not inside) ``poll``; on the same loop, so no
thread is involved.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from choreo._config import KafkaConfig
from choreo._errors import ConfigError, TransportError
from choreo._security.diagnose import refused_or_unreachable
from choreo._security.tls_files import check_client_tls
from choreo._transport.base import (
    WATERMARKS_TIMEOUT_S,
    Headers,
    Membership,
    RebalanceListener,
    Record,
    TopicConfig,
    TopicPartition,
)
from choreo._transport.shared import (
    COORDINATOR_MOVING,
    CoordinatorMoving,
    ensure_topics_with,
    topic_settings,
    unreachable,
    while_coordinator_moves,
)

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
    from aiokafka import TopicPartition as AioPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, for_code
    from aiokafka.helpers import create_ssl_context

    from choreo._transport.aiokafka_oauth import ClientCredentialsTokens
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ConfigError(
        f"the aiokafka transport needs the aiokafka package ({missing}): pip install aiokafka"
    ) from None

PROBE_TIMEOUT_S = 10.0
"""How long the one diagnostic connection after a failed bootstrap may take."""
_TOPIC_ALREADY_EXISTS = 36
_GROUP_ID_NOT_FOUND = 69
_CLIENT_CLASSES: tuple[type[Any], ...] = (AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaAdminClient)


def aiokafka_settings(config: KafkaConfig) -> dict[str, Any]:
    """``KafkaConfig`` in aiokafka's keyword names (the password included: never log it)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "security_protocol": config.security_protocol,
    }
    if config.sasl_mechanism == "OAUTHBEARER":
        url, client, secret = (
            config.oauth_token_endpoint_url,
            config.oauth_client_id,
            config.oauth_client_secret,
        )
        if url is None or client is None or secret is None:
            raise ConfigError(
                "the aiokafka transport takes OAUTHBEARER tokens from oauth_token_endpoint_url "
                "with oauth_client_id and oauth_client_secret (sasl.oauthbearer.* options are "
                "librdkafka's: use transport = 'confluent' for those)"
            )
        settings["sasl_mechanism"] = "OAUTHBEARER"
        settings["sasl_oauth_token_provider"] = ClientCredentialsTokens(
            url, client, secret, config.oauth_scope
        )
    elif config.sasl_mechanism is not None:
        settings["sasl_mechanism"] = config.sasl_mechanism
        settings["sasl_plain_username"] = config.sasl_username
        if config.sasl_password is not None:
            settings["sasl_plain_password"] = config.sasl_password.get_secret_value()
    if config.security_protocol in ("SSL", "SASL_SSL"):
        password = config.ssl_key_password
        context = create_ssl_context(
            cafile=config.ssl_cafile,
            certfile=config.ssl_certfile,
            keyfile=config.ssl_keyfile,
            password=None if password is None else password.get_secret_value(),
        )
        context.check_hostname = config.ssl_check_hostname
        settings["ssl_context"] = context
    return settings


def _parameters(cls: type[Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls.__init__).parameters)


def _coerce(name: str, value: str, default: object) -> object:
    """A string option as a Python value, typed like the keyword's default.

    aiokafka takes Python values, not strings. A keyword defaulting to None
    gets the value's own look: an int, a float, true/false, else the string.
    """
    text = value.strip()
    if isinstance(default, bool) or (default is None and text.lower() in ("true", "false")):
        return text.lower() in ("1", "true", "yes", "on")
    kinds: tuple[type[int] | type[float], ...] = (int, float) if default is None else ()
    if isinstance(default, int):
        kinds = (int,)
    elif isinstance(default, float):
        kinds = (float,)
    for kind in kinds:
        try:
            return kind(text)
        except ValueError:
            continue
    if kinds and default is not None:
        wanted = kinds[0].__name__
        raise ConfigError(f"client option {name}={value!r}: not a valid {wanted}")
    return value


def client_options(options: Mapping[str, str]) -> dict[type[Any], dict[str, Any]]:
    """The user's ``client_options`` split per aiokafka client class.

    Names may be Kafka-style (``max.poll.records``) or keyword-style
    (``max_poll_records``). Each goes to every client that takes it; one that
    no client takes is a ``ConfigError``, not a silent no-op.
    """
    split: dict[type[Any], dict[str, Any]] = {cls: {} for cls in _CLIENT_CLASSES}
    for raw_name, value in options.items():
        name = raw_name.replace(".", "_")
        taken = False
        for cls in _CLIENT_CLASSES:
            parameter = _parameters(cls).get(name)
            if parameter is not None:
                split[cls][name] = _coerce(raw_name, value, parameter.default)
                taken = True
        if not taken:
            raise ConfigError(f"client option {raw_name!r} is not an aiokafka client setting")
    return split


_NOBODYS = AioPartition("", -1)
"""A partition no member is assigned: what ``poll`` waits on while all of its are paused."""


def _aio(partitions: Iterable[TopicPartition]) -> list[Any]:
    return [AioPartition(tp.topic, tp.partition) for tp in partitions]


def _ours(partitions: Iterable[Any]) -> list[TopicPartition]:
    return sorted(TopicPartition(tp.topic, tp.partition) for tp in partitions)


class AiokafkaTransport:
    """Consumers, producers and admin calls on aiokafka."""

    name = "aiokafka"

    def __init__(self, config: KafkaConfig) -> None:
        check_client_tls(config)
        self._config = config
        self._servers = config.bootstrap_servers
        self._settings = aiokafka_settings(config)
        self._options = client_options(config.client_options)

    def _kwargs(self, cls: type[Any], defaults: Mapping[str, Any], **fixed: Any) -> dict[str, Any]:
        """Connection settings, our defaults, the user's options, then what must not change."""
        return {**self._settings, **defaults, **self._options[cls], **fixed}

    def consumer(
        self, group_id: str, client_id: str, membership: Membership | None = None
    ) -> AiokafkaConsumer:
        """aiokafka has only eager assignors: every rebalance revokes every member's
        partitions, so a join or leave pauses the whole group for the rebalance."""
        membership = membership or Membership()
        kwargs = self._kwargs(
            AIOKafkaConsumer,
            {
                "auto_offset_reset": "earliest",
                "session_timeout_ms": round(membership.session_timeout_s * 1000),
                "heartbeat_interval_ms": round(membership.heartbeat_interval_s * 1000),
                "group_instance_id": membership.static_id,
            },
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
        )
        return AiokafkaConsumer(kwargs, group_id, self._servers)

    def transactional_producer(self, client_id: str, transactional_id: str) -> Any:
        """Exactly-once mode is built on confluent-kafka's transactional producer."""
        raise ConfigError(
            "exactly_once needs the confluent transport (CHOREO_TRANSPORT=confluent), not aiokafka"
        )

    def producer(self, client_id: str) -> AiokafkaProducer:
        kwargs = self._kwargs(
            AIOKafkaProducer,
            {"acks": "all", "enable_idempotence": True, "linger_ms": 5},
            client_id=client_id,
        )
        return AiokafkaProducer(kwargs, client_id, self._servers)

    async def _admin(self) -> Any:
        """A started admin client; callers close it (the Transport has no close of its own)."""
        admin = AIOKafkaAdminClient(
            **self._kwargs(AIOKafkaAdminClient, {}, client_id="choreo-admin")
        )
        try:
            await admin.start()
        except (KafkaError, OSError) as error:
            await admin.close()
            detail = await self._connection_error() or str(error)
            raise refused_or_unreachable(self._servers, detail, self._config) from None
        return admin

    async def _connection_error(self) -> str | None:
        """Why one connection to the first broker fails (TLS, SASL), which aiokafka's
        bootstrap only logs before it says "Unable to bootstrap"."""
        host, _, port = self._servers.split(",")[0].strip().rpartition(":")
        security = {k: v for k, v in self._settings.items() if k != "bootstrap_servers"}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                connection = await create_conn(host, int(port), **security)
        except (KafkaError, OSError, TimeoutError, ValueError) as error:
            return f"{type(error).__name__}: {error}"
        connection.close()
        return None

    async def ensure_topics(self, topics: Sequence[TopicConfig]) -> None:
        admin = await self._admin()
        try:
            await ensure_topics_with(
                topics,
                existing=partial(self._topic_partitions, admin),
                create=partial(self._create_topics, admin),
                bootstrap_servers=self._servers,
            )
        finally:
            await admin.close()

    async def _topic_partitions(self, admin: Any) -> dict[str, int]:
        topics = await admin.describe_topics()
        return {t["topic"]: len(t["partitions"]) for t in topics if t["error_code"] == 0}

    async def _create_topics(self, admin: Any, topics: list[TopicConfig]) -> None:
        # CreateTopics <= v3 cannot ask for the broker's default replication factor (-1).
        brokers = len((await admin.describe_cluster())["brokers"])
        replicas = max(1, min(3, brokers))
        new = [
            NewTopic(
                t.name,
                t.partitions,
                t.replication_factor or replicas,
                topic_configs=topic_settings(t),
            )
            for t in topics
        ]
        response = await admin.create_topics(new)
        for result in response.to_object()["topic_errors"]:
            code = result["error_code"]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                detail = result.get("error_message") or for_code(code).description
                raise TransportError(
                    f"cannot create topic {result['topic']} on {self._servers}: {detail}"
                )

    async def check_reachable(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                admin = await self._admin()
        except TimeoutError:
            raise unreachable(self._servers, f"no answer within {timeout_s:g}s") from None
        await admin.close()

    async def group_members(self, group_id: str) -> list[str]:
        what = f"cannot describe group {group_id} on {self._servers}"
        return await while_coordinator_moves(partial(self._group_members, group_id, what), what)

    async def _group_members(self, group_id: str, what: str) -> list[str]:
        admin = await self._admin()
        try:
            responses = await admin.describe_consumer_groups([group_id])
        except KafkaError as error:
            moving = getattr(error, "errno", None) in COORDINATOR_MOVING
            raise (CoordinatorMoving if moving else TransportError)(f"{what}: {error}") from None
        finally:
            await admin.close()
        members: list[str] = []
        for response in responses:
            for group in response.to_object()["groups"]:
                code = group["error_code"]
                if code == _GROUP_ID_NOT_FOUND:
                    continue
                if code:
                    moving = code in COORDINATOR_MOVING
                    raise (CoordinatorMoving if moving else TransportError)(
                        f"{what}: {for_code(code).description}"
                    )
                members.extend(member["client_id"] for member in group["members"])
        return members


class _Bridge(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener protocol → ours; errors are kept for the next ``poll``."""

    def __init__(self, consumer: AiokafkaConsumer, listener: RebalanceListener) -> None:
        self._consumer = consumer
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            if revoked:  # aiokafka also calls this with nothing before the first join
                await self._consumer._run_listener(self._listener.on_revoked(_ours(revoked)))
        finally:
            self._consumer._release(revoked)  # after: finishing, the runtime may pause them

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._consumer._release(assigned)  # a partition assigned (again) starts unpaused
        await self._consumer._run_listener(self._listener.on_assigned(_ours(assigned)))


class AiokafkaConsumer:
    """An aiokafka group member; the client is created on the loop, at ``subscribe``."""

    def __init__(self, kwargs: dict[str, Any], group_id: str, servers: str) -> None:
        self._kwargs = kwargs
        self._group = group_id
        self._servers = servers
        self._consumer: Any = None
        self._listener: RebalanceListener | None = None
        self._listener_error: BaseException | None = None
        self._closed = False
        self._held: set[Any] = set()
        """Paused partitions. Not aiokafka's ``pause``: its next ``getmany`` finds the
        partition paused and throws away what was fetched for it (up to
        ``max_partition_fetch_bytes``), so every backpressure pause read that again after the
        resume while the service waited: 21-26 pauses per 100,000 records in the consume
        bench, and a steady rate that swung 23,000-53,000 msgs/s between runs. Held partitions
        are left out of ``getmany`` instead; what was fetched for them waits in aiokafka,
        which fetches a partition again only once its records are taken."""

    async def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self._kwargs)
            try:
                await consumer.start()
            except (KafkaError, OSError) as error:
                await consumer.stop()
                raise unreachable(self._servers, f"group {self._group}: {error}") from None
            self._consumer = consumer
        self._listener = listener
        self._consumer.subscribe(topics=list(topics), listener=_Bridge(self, listener))

    async def _run_listener(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as error:  # aiokafka would only log it
            if self._listener_error is None:
                self._listener_error = error

    def _raise_listener_error(self) -> None:
        error, self._listener_error = self._listener_error, None
        if error is not None:
            raise error

    def _client(self) -> Any:
        if self._consumer is None or self._closed:
            raise TransportError(f"group {self._group}: consumer is not subscribed or is closed")
        return self._consumer

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        self._raise_listener_error()
        client = self._client()
        wanted: list[Any] = []
        if self._held:
            assigned = client.assignment()
            self._held.intersection_update(assigned)
            # With all of them held, a partition nobody has: ``getmany()`` of none reads them
            # all, and not calling it would go unseen by ``max.poll.interval.ms`` (aiokafka
            # counts its calls) until the member left the group.
            wanted = [tp for tp in assigned if tp not in self._held] or [_NOBODYS]
        try:
            batches = await client.getmany(
                *wanted, timeout_ms=int(timeout_s * 1000), max_records=max_records
            )
            for tp in self._held.intersection(batches):  # paused during getmany, by a listener
                client.seek(tp, batches.pop(tp)[0].offset)  # not handed out: read them later
        except KafkaError as error:
            raise TransportError(f"group {self._group}: fetch failed: {error}") from None
        records: list[Record] = []
        append = records.append
        for messages in batches.values():
            for m in messages:
                append(
                    Record(
                        m.topic,
                        m.partition,
                        m.offset,
                        m.key,
                        m.value,
                        list(m.headers),
                        m.timestamp,
                    )
                )
        if not records:
            self._raise_listener_error()  # with records, the next poll raises it
        return records

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        committed = {AioPartition(tp.topic, tp.partition): o for tp, o in offsets.items()}
        try:
            await self._client().commit(committed)
        except KafkaError as error:
            where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in offsets)
            raise TransportError(
                f"group {self._group}: commit of {where} failed: {error}"
            ) from None

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        owned = set(self.assignment())
        self._held.update(_aio(tp for tp in partitions if tp in owned))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._held.difference_update(_aio(partitions))

    def _release(self, partitions: Iterable[Any]) -> None:
        """Forget pauses of partitions revoked or assigned (aiokafka's pauses end there too)."""
        self._held.difference_update(partitions)

    def assignment(self) -> list[TopicPartition]:
        if self._consumer is None or self._closed:
            return []
        return _ours(self._consumer.assignment())

    async def positions(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found: dict[TopicPartition, int] = {}
        owned = set(self.assignment())
        for tp, aio in zip(partitions, _aio(partitions), strict=True):
            if tp not in owned:
                continue
            try:
                async with asyncio.timeout(WATERMARKS_TIMEOUT_S):
                    found[tp] = await self._client().position(aio)
            except (KafkaError, TimeoutError):
                continue  # no position yet: nothing read there to skip past
        return found

    async def high_watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        try:
            async with asyncio.timeout(WATERMARKS_TIMEOUT_S):
                ends = await self._client().end_offsets(_aio(partitions))
        except (KafkaError, TimeoutError):
            return {}  # lag is left unknown for this scrape
        return {TopicPartition(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def close(self) -> None:
        """Revoke first, as librdkafka does, so the listener commits; then leave the group."""
        if self._closed:
            return
        consumer = self._consumer
        try:
            owned = self.assignment()
            if owned and self._listener is not None:
                await self._listener.on_revoked(owned)  # may commit: still a member here
        finally:
            self._closed = True
            self._consumer = None
            if consumer is not None:
                await consumer.stop()


class AiokafkaProducer:
    """An idempotent aiokafka producer, started on the loop at the first send."""

    def __init__(self, kwargs: dict[str, Any], client_id: str, servers: str) -> None:
        self._kwargs = kwargs
        self._client_id = client_id
        self._servers = servers
        self._producer: Any = None
        self._starting: asyncio.Lock | None = None
        self._closed = False

    async def _started(self) -> Any:
        if self._producer is not None:
            return self._producer
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._kwargs)
                try:
                    await producer.start()
                except (KafkaError, OSError) as error:
                    await producer.stop()
                    detail = f"producer {self._client_id}: {error}"
                    raise unreachable(self._servers, detail) from None
                self._producer = producer
        return self._producer

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[None]:
        if self._closed:
            raise TransportError(f"producer {self._client_id} is closed (sending to {topic})")
        producer = await self._started()
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            acked = await producer.send(topic, value, key=key, headers=headers)
        except KafkaError as error:  # refused before sending, e.g. too large
            delivered.set_exception(TransportError(f"cannot send to topic {topic}: {error}"))
        else:
            acked.add_done_callback(partial(_settle, delivered, topic))
        return delivered

    async def flush(self) -> None:
        """Return once every record sent so far is acknowledged (its future settled)."""
        if self._producer is not None:
            await self._producer.flush()
            await asyncio.sleep(0)  # let the ``_settle`` callbacks of the last batch run

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            await self._producer.stop()


def _settle(delivered: asyncio.Future[None], topic: str, acked: asyncio.Future[Any]) -> None:
    """aiokafka's delivery future → ours, with the error as a ``TransportError``."""
    if delivered.done():
        return
    if acked.cancelled():
        delivered.set_exception(TransportError(f"delivery to topic {topic} was cancelled"))
    elif (error := acked.exception()) is not None:
        delivered.set_exception(TransportError(f"delivery to topic {topic} failed: {error}"))
    else:
        delivered.set_result(None)
