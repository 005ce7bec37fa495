"""The default transport, on confluent-kafka (librdkafka).

Consumer: librdkafka blocks, and confluent-kafka 2.x admits one thread at a
time into a ``Consumer``, so each consumer owns one worker thread that makes
every call on it (consume, commit, pause, close) as a queued job. Rebalance
callbacks fire inside ``consume`` on that thread; they run the async
``RebalanceListener`` on the event loop and block until it finishes (running
the commits it queues meanwhile), so ``on_revoked`` commits before the
partitions move. Partitions *lost* (the session timed out, the member was fenced) go through
``on_revoked`` too, but nothing is committed meanwhile: they may be someone else's already.
A static member fenced by the echo of its own session timeout (librdkafka #3437, see
``SessionWatch``) loses its partitions that way and joins again with a new librdkafka
consumer.

Producer: not gated, so ``produce`` runs on the loop; one background thread
calls ``poll`` to serve delivery reports and hands each batch of them to the
loop in one ``call_soon_threadsafe``, not one per record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import queue
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # public as admin.OffsetSpec, untyped
from confluent_kafka.cimpl import NewTopic
from pydantic import SecretStr

from choreo._config import KafkaConfig
from choreo._errors import ConfigError, SecurityError, TransportError
from choreo._security.diagnose import AUTHORIZATION_HINT, explain, refused_or_unreachable
from choreo._security.tls_files import check_client_tls
from choreo._transport.base import (
    WATERMARKS_TIMEOUT_S,
    Consumer,
    Headers,
    Membership,
    RebalanceListener,
    Record,
    TopicConfig,
    TopicPartition,
    TransactionAborted,
)
from choreo._transport.shared import (
    COORDINATOR_MOVING,
    CoordinatorMoving,
    ThrottledLog,
    ensure_topics_with,
    topic_settings,
    unreachable,
    while_coordinator_moves,
)
from choreo._transport.txn_calls import (
    CallWatch,
    Hung,
    kafka_error,
    request_timeout_s,
    resumed,
    settled,
    started,
)

_log = logging.getLogger("choreo.transport.confluent")
_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # the high watermark

ADMIN_TIMEOUT_S = 15.0
FLUSH_STEP_S = 0.5
"""``flush`` waits in steps so a cancelled flush frees its thread soon after."""
PRODUCER_POLL_S = 0.1
TRANSACTION_TIMEOUT_MS = 60_000
"""librdkafka's default ``transaction.timeout.ms``, set so the producer knows it: the
coordinator aborts a transaction open longer, and bumps the producer's epoch."""
WAIT_SLICE_S = 0.1
"""Longest a queued consumer job (commit, pause) waits while a poll waits for records."""

T = TypeVar("T")


def librdkafka_settings(config: KafkaConfig) -> dict[str, Any]:
    """``KafkaConfig`` in librdkafka's option names (the password included: never log it)."""
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "security.protocol": config.security_protocol.lower(),
    }
    key = config.ssl_keyfile or config.ssl_certfile  # a PEM file may hold both
    optional: dict[str, Any] = {
        "sasl.mechanism": config.sasl_mechanism,
        "sasl.username": config.sasl_username,
        "sasl.password": _secret(config.sasl_password),
        "ssl.ca.location": config.ssl_cafile and str(config.ssl_cafile),
        "ssl.certificate.location": config.ssl_certfile and str(config.ssl_certfile),
        "ssl.key.location": key and str(key),
        "ssl.key.password": _secret(config.ssl_key_password),
    }
    if "SSL" in config.security_protocol:
        check = "https" if config.ssl_check_hostname else "none"
        optional["ssl.endpoint.identification.algorithm"] = check
    if config.sasl_mechanism == "OAUTHBEARER" and config.oauth_token_endpoint_url:
        optional |= {
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.token.endpoint.url": config.oauth_token_endpoint_url,
            "sasl.oauthbearer.client.id": config.oauth_client_id,
            "sasl.oauthbearer.client.secret": _secret(config.oauth_client_secret),
            "sasl.oauthbearer.scope": config.oauth_scope,
        }
    settings.update({name: value for name, value in optional.items() if value is not None})
    return settings


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


AUTHORIZATION_ERRORS = {
    ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
    ck.KafkaError.GROUP_AUTHORIZATION_FAILED,
    ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
"""Broker answers no retry can change: the principal lacks an ACL."""


def denied(what: str, error: ck.KafkaError) -> SecurityError:
    """The one wording for an authorization error, naming what was refused and the fix."""
    return SecurityError(f"{what}: not authorized ({error.str()}); {AUTHORIZATION_HINT}")


def _describe(error: ck.KafkaError | BaseException | None) -> str:
    """A KafkaError's text (``str(KafkaException)`` is a tuple repr)."""
    if isinstance(error, ck.KafkaException) and error.args:
        error = error.args[0]
    if isinstance(error, ck.KafkaError):
        return str(error.str())
    return str(error)


def _serving(call: Callable[[float], int], timeout_s: float) -> int:
    """A producer's ``poll`` or ``flush``, raising a fatal error as ``KafkaException`` only.

    confluent-kafka raises a fatal error once, from the call that serves it; a delivery
    callback it serves after that in the same call runs with the exception set, and comes
    out as a ``SystemError`` ("returned a result with an exception set") caused by it."""
    try:
        return call(timeout_s)
    except SystemError as error:
        if isinstance(error.__cause__, ck.KafkaException):
            raise error.__cause__ from None
        raise


def _error_code(error: BaseException) -> int | None:
    found = kafka_error(error)
    return None if found is None else int(found.code())


_CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")
"""Group settings of the classic protocol that ``group.protocol=consumer`` leaves to the broker."""


def _membership_settings(membership: Membership) -> dict[str, Any]:
    """Cooperative incremental assignment: a member joining or leaving moves only the
    partitions that change owner; the others keep flowing through the rebalance."""
    settings: dict[str, Any] = {
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": round(membership.session_timeout_s * 1000),
        "heartbeat.interval.ms": round(membership.heartbeat_interval_s * 1000),
    }
    if membership.static_id is not None:
        settings["group.instance.id"] = membership.static_id
    return settings


def _incremental(settings: Mapping[str, Any]) -> bool:
    """Whether the group hands out partitions incrementally (cooperative or KIP-848)."""
    strategy = str(settings.get("partition.assignment.strategy", ""))
    protocol = str(settings.get("group.protocol", "classic")).lower()
    return "cooperative" in strategy or protocol == "consumer"


class _LibrdkafkaLog:
    """librdkafka's ``logger``: its lines in Python logging, each facility throttled.

    While a broker is down librdkafka logs a FAIL line on every reconnect
    attempt; ``error_cb`` already reports that, so one line per facility per
    interval is enough.
    """

    def __init__(self) -> None:
        self._throttled = ThrottledLog(logging.getLogger("choreo.transport.librdkafka"))

    def log(self, level: int, message: str, *args: object) -> None:
        facility = args[0] if args else message
        self._throttled(facility, level, message % args if args else message)


class SessionWatch(_LibrdkafkaLog):
    """One consumer's librdkafka log, which also notes when the client timed out its own
    group session.

    A static member (``group.instance.id``) whose coordinator died and whose new one answered
    too late times its session out, rejoins under a new member id, and a request still carrying
    the old id comes back ``FENCED_INSTANCE_ID``: librdkafka makes that a fatal error
    (librdkafka #3437), the same fatal error a real twin (another process with the same
    instance id) causes. Only that session timeout, just before, tells the two apart.
    """

    SELF_FENCE_S = 120.0
    """How long after a session timeout a fence is taken for its echo: the stale request
    returns within librdkafka's request timeouts (60 s by default)."""

    def __init__(self) -> None:
        super().__init__()
        self._timed_out_at: float | None = None
        self.last_timeout_at = -math.inf
        """When the client last timed its session out (``time.monotonic()``), never reset."""

    def log(self, level: int, message: str, *args: object) -> None:
        if args and args[0] == "SESSTMOUT":
            self._timed_out_at = self.last_timeout_at = time.monotonic()
        super().log(level, message, *args)

    def twin_fence(self, fatal: str) -> bool:
        """Whether a fatal consumer error is a fence by a twin; raises ``FencedByItself`` when
        the fence follows this client's own session timeout (once: the note is used up)."""
        if "fenced" not in fatal.lower():
            return False
        at, self._timed_out_at = self._timed_out_at, None
        if at is not None and time.monotonic() - at <= self.SELF_FENCE_S:
            raise FencedByItself(fatal)
        return True


class FencedByItself(Exception):
    """A consumer's fatal fence followed its own session timeout (``SessionWatch``): replace
    the consumer, do not stop."""


def _names(partitions: Iterable[Any]) -> str:
    """``topic[partition], ...`` for ours or confluent's TopicPartitions."""
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class ConfluentTransport:
    """Consumers, producers and admin calls on confluent-kafka."""

    name = "confluent"

    def __init__(self, config: KafkaConfig) -> None:
        check_client_tls(config)
        self._config = config
        self._servers = config.bootstrap_servers
        self._settings = librdkafka_settings(config)
        self._last_error: str | None = None
        self._options: dict[str, Any] = dict(config.client_options)
        self._errors = ThrottledLog(_log)
        self._librdkafka_log = _LibrdkafkaLog()
        self._admin: AdminClient | None = None

    def _on_error(self, error: ck.KafkaError) -> None:
        """librdkafka's ``error_cb``: it retries on its own, so log (throttled), never raise."""
        if error.code() != ck.KafkaError._ALL_BROKERS_DOWN:  # keep the reason, not the tally
            self._last_error = error.str()
        text = f"kafka client error ({self._servers}): {explain(error.str(), self._config)}"
        if error.fatal():
            _log.error("%s (fatal: this client is unusable)", text)
        else:
            self._errors(error.code(), logging.WARNING, text)

    def _client_settings(self, defaults: Mapping[str, Any], **fixed: Any) -> dict[str, Any]:
        """Connection settings, our defaults, the user's options, then what must not change."""
        return {
            **self._settings,
            **defaults,
            **self._options,
            **fixed,
            "error_cb": self._on_error,
            "logger": self._librdkafka_log,
        }

    def consumer(
        self, group_id: str, client_id: str, membership: Membership | None = None
    ) -> ConfluentConsumer:
        settings = self._client_settings(
            {"auto.offset.reset": "earliest", **_membership_settings(membership or Membership())},
            **{
                "group.id": group_id,
                "client.id": client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            },
        )
        if str(settings.get("group.protocol", "")).lower() == "consumer":
            # KIP-848: the broker assigns and times sessions; librdkafka refuses these.
            for name in _CLASSIC_ONLY:
                settings.pop(name, None)
        return ConfluentConsumer(settings, group_id, client_id, self._errors, self._admin_client)

    def producer(self, client_id: str) -> ConfluentProducer:
        settings = self._client_settings(
            {
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # Java's and aiokafka's default: one key, one partition number, whichever client.
                "partitioner": "murmur2_random",
            },
            **{"client.id": client_id},
        )
        return ConfluentProducer(settings, client_id)

    def transactional_producer(
        self, client_id: str, transactional_id: str
    ) -> ConfluentTransactionalProducer:
        settings = self._client_settings(
            {
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            },
            **{"client.id": client_id, "transactional.id": transactional_id},
        )
        return ConfluentTransactionalProducer(settings, client_id)

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self._client_settings({}, **{"client.id": "choreo-admin"}))
        return self._admin

    async def ensure_topics(self, topics: Sequence[TopicConfig]) -> None:
        await ensure_topics_with(
            topics,
            existing=self._topic_partitions,
            create=self._create_topics,
            bootstrap_servers=self._servers,
        )

    async def _topic_partitions(self) -> dict[str, int]:
        admin = self._admin_client()
        try:
            metadata = await asyncio.to_thread(admin.list_topics, timeout=ADMIN_TIMEOUT_S)
        except ck.KafkaException as error:
            raise unreachable(self._servers, _describe(error)) from None
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None
        }

    async def _create_topics(self, topics: list[TopicConfig]) -> None:
        new = [
            # replication_factor=-1: the broker's default.replication.factor.
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=t.replication_factor or -1,
                config=topic_settings(t),
            )
            for t in topics
        ]
        futures = self._admin_client().create_topics(
            new, operation_timeout=ADMIN_TIMEOUT_S, request_timeout=ADMIN_TIMEOUT_S
        )
        for name, future in futures.items():
            try:
                await asyncio.wrap_future(future)
            except ck.KafkaException as error:
                if _error_code(error) != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TransportError(
                        f"cannot create topic {name} on {self._servers}: {_describe(error)}"
                    ) from None

    async def check_reachable(self, timeout_s: float) -> None:
        """A refused login or TLS handshake is named (with the setting to fix), not a timeout."""
        admin = self._admin_client()
        try:
            await asyncio.to_thread(admin.list_topics, timeout=timeout_s)
        except ck.KafkaException as error:
            admin.poll(0)  # serve error_cb: it holds why the connection failed
            detail = self._last_error or f"{_describe(error)} ({timeout_s:g}s)"
            raise refused_or_unreachable(self._servers, detail, self._config) from None

    async def group_members(self, group_id: str) -> list[str]:
        what = f"cannot describe group {group_id} on {self._servers}"
        return await while_coordinator_moves(partial(self._group_members, group_id, what), what)

    async def _group_members(self, group_id: str, what: str) -> list[str]:
        futures = self._admin_client().describe_consumer_groups(
            [group_id], request_timeout=ADMIN_TIMEOUT_S
        )
        try:
            description = await asyncio.wrap_future(futures[group_id])
        except ck.KafkaException as error:
            code = _error_code(error)
            if code == ck.KafkaError.GROUP_ID_NOT_FOUND:
                return []
            moving = code in COORDINATOR_MOVING
            raise (CoordinatorMoving if moving else TransportError)(
                f"{what}: {_describe(error)}"
            ) from None
        return [member.client_id for member in description.members]


class _Worker:
    """The one thread that makes every call on a librdkafka consumer.

    confluent-kafka 2.x lets one thread at a time into a ``Consumer``; a call
    from a second thread spins until the first stops calling, which a poll
    loop never does (a commit would wait for shutdown). So calls are jobs run
    here, in order. Long waits for records are cut into slices so jobs queued
    meanwhile (a commit, a pause) run within ``WAIT_SLICE_S``, and while a
    rebalance callback waits for the listener this thread keeps running jobs,
    which is how ``on_revoked`` can commit.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue ``call``; its result or error arrives on the returned future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as error:
                    future.set_exception(error)

        if not self._enqueue(job):
            future.set_exception(TransportError(f"{self._name} has stopped"))
        return future

    def post(self, call: Callable[[], object]) -> None:
        """Queue ``call`` without waiting for it (``pause``/``resume`` are not async)."""
        self._enqueue(call)

    def _enqueue(self, job: Callable[[], object]) -> bool:
        with self._lock:
            if not self._stopped:
                self._jobs.put(job)
            return not self._stopped

    def run_pending(self) -> None:
        """On this thread: run the jobs queued so far."""
        while not self._jobs.empty():
            self._jobs.get_nowait()()

    def run_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        """On this thread: run jobs as they come until ``done()`` or the timeout."""
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                job = self._jobs.get(timeout=remaining)
            except queue.Empty:
                return
            job()

    def stop(self) -> None:
        """Finish the queued jobs, then end the thread."""
        self.post(self._halt)

    def _halt(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        while not self._stopping:
            self._jobs.get()()
        with self._lock:
            self._stopped = True
        self.run_pending()  # queued while stopping: they fail on the closed consumer


def _nothing() -> None:
    """A job that only wakes the worker."""


class ConfluentConsumer:
    """A librdkafka consumer whose every call runs on its own worker thread."""

    def __init__(
        self,
        settings: dict[str, Any],
        group_id: str,
        client_id: str,
        errors: ThrottledLog,
        admin: Callable[[], AdminClient],
    ) -> None:
        self._group = group_id
        self._admin = admin  # the transport's, for read-only queries off this client
        self._incremental = _incremental(settings)
        self._errors = errors
        self._settings = settings
        try:
            self._consumer = self._new_consumer()
        except (ck.KafkaException, ValueError, TypeError) as error:
            raise ConfigError(f"consumer of group {group_id}: {_describe(error)}") from None
        self._topics: list[str] = []
        self._lost = False
        """Lost partitions are being revoked (worker thread): commits are refused meanwhile."""
        self._worker = _Worker(f"choreo-consumer-{client_id}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: RebalanceListener | None = None
        self._listener_error: BaseException | None = None
        self._revoked: set[tuple[str, int]] = set()  # worker thread only
        # Kept here, so assignment() needs no trip to the worker thread.
        self._assigned: list[TopicPartition] = []
        self._closed = False

    def _new_consumer(self) -> ck.Consumer:
        """A librdkafka consumer with the settings, whose log a new ``SessionWatch`` reads."""
        self._session = SessionWatch()
        return ck.Consumer({**self._settings, "logger": self._session})

    @property
    def lost(self) -> bool:
        """Lost partitions are being revoked: a transaction must not commit their offsets."""
        return self._lost

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._worker.submit(call))

    async def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        self._topics = list(topics)
        try:
            await self._call(self._subscribe)
        except (ck.KafkaException, RuntimeError) as error:
            raise TransportError(
                f"group {self._group}: cannot subscribe to {', '.join(topics)}: {_describe(error)}"
            ) from None

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        self._raise_listener_error()
        records = await self._call(partial(self._consume, max_records, timeout_s))
        if not records:
            self._raise_listener_error()  # with records, the next poll raises it
        return records

    def _consume(self, max_records: int, timeout_s: float) -> list[Record]:
        """Worker thread: one batch of messages turned into ``Record``s."""
        records: list[Record] = []
        append = records.append
        try:
            for m in self._messages(max_records, timeout_s):
                failure = m.error()
                if failure is None:
                    append(
                        Record(
                            m.topic(),
                            m.partition(),
                            m.offset(),
                            m.key(),
                            m.value(),
                            m.headers() or [],
                            m.timestamp()[1],
                        )
                    )
                else:
                    self._message_error(m, failure)
        except FencedByItself as fenced:
            self._rejoin(str(fenced))
            return []  # the records taken belong to partitions just lost: read again
        return records

    def _messages(self, max_records: int, timeout_s: float) -> list[Any]:
        """Up to ``max_records`` messages, returned as soon as any arrive.

        librdkafka's ``consume(n, t)`` waits for all ``n`` records or the whole
        timeout, so take what is buffered; if nothing is, wait (in slices, for
        queued jobs) for one record, then take what arrived with it.
        librdkafka drops records outdated by a rebalance within one call;
        across calls we do it: a record held from an earlier call whose
        partition is revoked in a later one was never seen by the listener,
        so it is not committed and its next owner (maybe us) reads it again.

        Typed ``Any`` so the hot loop in ``_consume`` needs no per-message casts.
        """
        consume = self._consumer.consume
        self._worker.run_pending()  # a pause queued before this poll applies to it
        try:
            messages: list[Any] = consume(max_records, 0)
            if messages:
                return messages
            deadline = time.monotonic() + timeout_s
            while not messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return messages
                self._worker.run_pending()
                messages = consume(1, min(remaining, WAIT_SLICE_S))
            if max_records == 1:
                return messages
            self._revoked.clear()
            more = consume(max_records - 1, 0)
        except (ck.KafkaException, RuntimeError) as error:
            detail = _describe(error)
            raise TransportError(f"group {self._group}: consume failed: {detail}") from None
        if self._revoked:
            gone = self._revoked
            messages = [m for m in messages if (m.topic(), m.partition()) not in gone]
        messages.extend(more)
        return messages

    def _message_error(self, message: ck.Message, error: ck.KafkaError) -> None:
        where = f"group {self._group}, topic {message.topic()}[{message.partition()}]"
        if error.code() in AUTHORIZATION_ERRORS:
            raise denied(f"reading {where}", error)
        if is_fatal(error):
            # Left running, a fenced consumer never reads again: a live-looking zombie.
            text = error.str()
            twin = self._session.twin_fence(text)
            raise TransportError(
                f"{where}: fatal consumer error: {text}"
                + (
                    "; another instance joined with the same CHOREO_INSTANCE_ID: give every "
                    "instance its own"
                    if twin
                    else ""
                )
            )
        self._errors((self._group, error.code()), logging.WARNING, f"{where}: {error.str()}")

    def _subscribe(self) -> None:
        """Worker thread: the current consumer joins the group for the topics.

        Only a static member is told of lost partitions apart from revoked ones: its commit
        of them after a session timeout is what comes back fenced, a fatal error. A dynamic
        member is never fenced fatally; its lost partitions go through ``on_revoke`` as they
        always have (with ``on_lost`` for every member, the exactly-once relay of the broker
        failover test stopped emitting in one CI run)."""
        lost = {"on_lost": self._on_lost} if "group.instance.id" in self._settings else {}
        self._consumer.subscribe(
            self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, **lost
        )

    def _rejoin(self, why: str) -> None:
        """Worker thread: replace a consumer fenced by the echo of its own session timeout
        (``SessionWatch``). Its partitions are lost: the listener drains them and commits
        nothing (an exactly-once transaction aborts); the new consumer joins with the same
        settings and subscription and reads on from the committed offsets (at least once)."""
        _log.warning(
            "group %s: %s, just after its group session timed out (librdkafka #3437, not a "
            "twin): its partitions are lost, a new consumer joins and reads on from the last "
            "commit",
            self._group,
            why,
        )
        old = self._consumer
        self._on_lost(old, [ck.TopicPartition(tp.topic, tp.partition) for tp in self._assigned])
        try:
            self._consumer = self._new_consumer()
        except (ck.KafkaException, ValueError, TypeError) as error:
            raise TransportError(
                f"group {self._group}: no new consumer after a fence: {_describe(error)}"
            ) from None
        try:  # the old one's callbacks (closing) find it replaced, and leave the listener be
            old.close()
        except (ck.KafkaException, RuntimeError) as error:
            _log.warning("group %s: closing the fenced consumer: %s", self._group, _describe(error))
        try:
            self._subscribe()
        except (ck.KafkaException, RuntimeError) as error:
            raise TransportError(
                f"group {self._group}: cannot subscribe again after a fence: {_describe(error)}"
            ) from None

    def _on_lost(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """Worker thread: revoke partitions taken away without a rebalance (the session timed
        out, the member was fenced) with commits refused: their next owner, maybe our next
        generation, reads on from the last commit."""
        self._lost = True
        try:
            self._on_revoke(consumer, partitions)  # a replaced consumer's: unassigned only
        finally:
            self._lost = False

    def _on_assign(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """Worker thread: take the partitions first, so the listener may pause them."""
        if consumer is not self._consumer:
            return  # replaced (closing): the new consumer joins for itself
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        if self._incremental:
            consumer.incremental_assign(partitions)
            self._assigned = sorted({*self._assigned, *tps})
        else:
            consumer.assign(partitions)
            self._assigned = sorted(tps)
        # librdkafka keeps a partition's pause through its revocation and assignment again,
        # while a runtime forgets its pauses of the partitions revoked: left paused, one that
        # comes back (a member came and went) was never read again.
        consumer.resume(partitions)
        self._call_listener(True, tps)

    def _on_revoke(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """Worker thread: the listener commits while the partitions are still ours."""
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        current = consumer is self._consumer  # else replaced: closing, nothing of ours
        if current:
            self._revoked.update(tps)
        try:
            if tps and current:
                self._call_listener(False, tps)
        finally:
            try:
                if self._incremental:
                    consumer.incremental_unassign(partitions)
                else:
                    consumer.unassign()
            except (ck.KafkaException, RuntimeError) as error:
                if current and not self._lost:
                    raise
                _log.debug("group %s: unassigning: %s", self._group, _describe(error))
            if current and self._incremental:
                self._assigned = [tp for tp in self._assigned if tp not in tps]
            elif current:
                self._assigned = []

    def _call_listener(self, assigned: bool, tps: list[TopicPartition]) -> None:
        """Run the listener on the loop; meanwhile run its jobs here; keep its error."""
        loop, listener = self._loop, self._listener
        if loop is None or listener is None or loop.is_closed():
            return
        callback = listener.on_assigned if assigned else listener.on_revoked
        try:
            future = asyncio.run_coroutine_threadsafe(callback(tps), loop)
            future.add_done_callback(lambda _: self._worker.post(_nothing))
            while not future.done():
                self._worker.run_until(future.done, 1.0)
                if not future.done() and not loop.is_running():
                    future.cancel()
                    raise TransportError(f"group {self._group}: event loop stopped in a rebalance")
            future.result()
        except BaseException as error:
            if self._listener_error is None:
                self._listener_error = error

    def _raise_listener_error(self) -> None:
        error, self._listener_error = self._listener_error, None
        if error is not None:
            raise error

    async def group_metadata(self) -> Any:
        """What a transactional producer sends with the offsets, on the consumer's thread."""
        return await self._call(self._consumer.consumer_group_metadata)

    async def committed_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of ``tps``, stable ones (a transaction's count once it
        ended); those the broker cannot give now are left out."""
        wanted = [ck.TopicPartition(tp.topic, tp.partition) for tp in tps]
        committed = partial(self._consumer.committed, wanted, timeout=ADMIN_TIMEOUT_S)
        try:
            found = await self._call(committed)
        except (ck.KafkaException, RuntimeError):
            return {}
        return {TopicPartition(tp.topic, tp.partition): tp.offset for tp in found if not tp.error}

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if offsets:
            tps = [ck.TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
            await self._call(partial(self._commit, tps))

    def _commit(self, tps: list[ck.TopicPartition]) -> None:
        if self._lost:
            raise TransportError(
                f"group {self._group}: {_names(tps)} lost, not committed: "
                "their next owner reads them again from the last commit"
            )
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except (ck.KafkaException, RuntimeError) as error:
            raise TransportError(
                f"group {self._group}: commit of {_names(tps)} failed: {_describe(error)}"
            ) from None
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise TransportError(
                f"group {self._group}: commit failed for "
                + ", ".join(f"{tp.topic}[{tp.partition}] ({_describe(tp.error)})" for tp in failed)
            )

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Takes effect before the next wait for records, even one already under way."""
        self._flow("pause", partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._flow("resume", partitions)

    def _flow(self, verb: str, partitions: Iterable[TopicPartition]) -> None:
        tps = [ck.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        if tps:
            self._worker.post(partial(self._apply_flow, verb, tps))

    def _apply_flow(self, verb: str, tps: list[ck.TopicPartition]) -> None:
        try:
            getattr(self._consumer, verb)(tps)
        except (ck.KafkaException, RuntimeError) as error:  # nobody to raise to: log it
            _log.warning("group %s: cannot %s %s: %s", self._group, verb, _names(tps), error)

    def assignment(self) -> list[TopicPartition]:
        return list(self._assigned)

    async def positions(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """On the worker thread, like every call on the consumer."""
        asked = [ck.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        try:
            found = await self._call(partial(self._consumer.position, asked))
        except (ck.KafkaException, RuntimeError):
            return {}
        return {TopicPartition(p.topic, p.partition): p.offset for p in found if p.offset >= 0}

    async def high_watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Asked through the transport's admin client, not this consumer.

        The consumer's connection may hold a fetch that waits for data
        (``fetch.wait.max.ms``) and the broker answers in order, so a query
        there would wait behind it, on the worker thread that commits.
        """
        futures = self._admin().list_offsets(
            {ck.TopicPartition(tp.topic, tp.partition): _LATEST for tp in partitions},
            request_timeout=WATERMARKS_TIMEOUT_S,
        )
        ends: dict[TopicPartition, int] = {}
        for tp, future in futures.items():
            try:
                found = await asyncio.wait_for(asyncio.wrap_future(future), WATERMARKS_TIMEOUT_S)
            except (ck.KafkaException, TimeoutError) as error:
                _log.debug("group %s: no watermark for %s: %s", self._group, tp, error)
                continue
            ends[TopicPartition(tp.topic, tp.partition)] = found.offset
        return ends

    async def close(self) -> None:
        """Leave the group; librdkafka calls ``on_revoked`` first (on the worker thread)."""
        if self._closed:
            return
        self._closed = True
        closing = self._worker.submit(self._consumer.close)
        self._worker.stop()  # after close(), whose on_revoked may still queue a commit
        try:
            await asyncio.wrap_future(closing)
        except (ck.KafkaException, RuntimeError) as error:
            raise TransportError(f"group {self._group}: close failed: {_describe(error)}") from None
        self._raise_listener_error()


_Delivery = tuple["asyncio.Future[None]", TransportError | None]


class Abandoned(TransportError):
    """A send failed for a reason reported once elsewhere, or for nobody: sends purged at
    close, or all of a fenced producer's sends. Not logged per future when nobody awaits it."""


class FencedError(Abandoned):
    """Another process took this instance's transactional id."""


def _fail(delivered: asyncio.Future[None], failure: TransportError) -> None:
    delivered.set_exception(failure)
    if isinstance(failure, Abandoned):
        delivered.exception()  # seen: no "Future exception was never retrieved" for each


class ConfluentProducer:
    """An idempotent librdkafka producer; a background thread serves delivery reports."""

    def __init__(self, settings: dict[str, Any], client_id: str) -> None:
        self._client_id = client_id
        self._settings = settings
        self._producer = self._new_client()
        self._reports: deque[_Delivery] = deque()
        self._settle_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._closed = False

    def _new_client(self) -> ck.Producer:
        try:
            return ck.Producer(self._settings)
        except (ck.KafkaException, ValueError, TypeError) as error:
            raise ConfigError(f"producer {self._client_id}: {_describe(error)}") from None

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The loop delivery futures belong to; starts the poller on first use."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._poller = threading.Thread(
                target=self._serve_reports, name=f"choreo-producer-{self._client_id}", daemon=True
            )
            self._poller.start()
        elif self._loop is not loop:
            raise TransportError(f"producer {self._client_id} is bound to another event loop")
        return loop

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[None]:
        if self._closed:
            raise TransportError(f"producer {self._client_id} is closed (sending to {topic})")
        delivered: asyncio.Future[None] = self._bind().create_future()
        on_delivery = partial(self._on_delivery, delivered)
        produce: Any = self._producer.produce  # its stub wants a wider list type than Headers
        while True:
            try:
                produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return delivered
            except BufferError:
                await asyncio.sleep(0.005)  # local queue full; the poller drains it
            except ck.KafkaException as error:  # refused locally, e.g. too large
                _fail(delivered, self._refused(topic, error))
                return delivered

    def _refused(self, topic: str, error: ck.KafkaException) -> TransportError:
        """Why ``produce`` refused a record before sending it."""
        return TransportError(f"cannot send to topic {topic}: {_describe(error)}")

    def _on_delivery(
        self, delivered: asyncio.Future[None], error: ck.KafkaError | None, message: ck.Message
    ) -> None:
        """A librdkafka thread (poller or flush): queue the report for the loop."""
        failure: TransportError | None = None
        if error is not None:
            topic, partition = message.topic(), message.partition()
            where = topic if partition is None or partition < 0 else f"{topic}[{partition}]"
            if error.code() in AUTHORIZATION_ERRORS:
                failure = denied(f"producer {self._client_id}: writing to topic {where}", error)
            elif self._abandons(error):
                failure = Abandoned(f"delivery to topic {where} failed: {error.str()}")
            else:
                failure = TransportError(f"delivery to topic {where} failed: {error.str()}")
        self._reports.append((delivered, failure))

    def _abandons(self, error: ck.KafkaError) -> bool:
        """Purged by ``close()``: nobody waits for these sends any more."""
        return bool(error.code() == ck.KafkaError._PURGE_QUEUE)

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            try:  # self._producer read each turn: a fatal error renews it
                _serving(self._producer.poll, PRODUCER_POLL_S)
            except ck.KafkaException as error:  # fatal (fenced): reports still come, keep serving
                _log.debug("producer %s: %s", self._client_id, _describe(error))
            self._schedule_settle()

    def _schedule_settle(self) -> None:
        loop = self._loop
        if self._reports and not self._settle_scheduled and loop is not None:
            self._settle_scheduled = True
            try:
                loop.call_soon_threadsafe(self._settle)
            except RuntimeError:  # the loop is closed; nobody is waiting any more
                self._settle_scheduled = False

    def _settle(self) -> None:
        """On the loop: resolve every queued delivery future at once."""
        self._settle_scheduled = False
        reports = self._reports
        while reports:
            delivered, failure = reports.popleft()
            if delivered.done():
                continue
            if failure is None:
                delivered.set_result(None)
            else:
                _fail(delivered, failure)

    async def flush(self) -> None:
        """Return once every record sent so far is acknowledged (its future settled)."""
        await self._flushed(None)

    async def _flushed(self, deadline: float | None) -> bool:
        """Flush until every record is acknowledged (True) or ``deadline`` passed (False)."""
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, _serving, self._producer.flush, FLUSH_STEP_S):
            if deadline is not None and time.monotonic() > deadline:
                return False
        if self._loop is loop:
            self._settle()
        return True

    async def close(self) -> None:
        """Flush, then stop; records still unsent if the flush is cancelled are purged."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._flushed(None)  # unbounded: the caller bounds a close
        except ck.KafkaException as error:  # fatal: the purge below fails what is unsent
            _log.debug("producer %s: closing: %s", self._client_id, _describe(error))
        finally:
            self._stop.set()
            if self._poller is not None:
                await asyncio.to_thread(self._poller.join)
            if len(self._producer):
                self._producer.purge()
                self._producer.poll(0)  # the purged records' reports fail their futures
            if self._loop is asyncio.get_running_loop():
                self._settle()


FENCED_ERRORS = {
    ck.KafkaError._FENCED,
    ck.KafkaError.PRODUCER_FENCED,
    ck.KafkaError.INVALID_PRODUCER_EPOCH,
}
"""Another producer initialised our transactional id: this one may never send again."""


_GROUP_METADATA = "CGMDv2:"
_GENERATION = struct.Struct("=i")  # librdkafka copies it in the host's byte order


def group_membership(consumer: ck.Consumer) -> tuple[int, str] | None:
    """The consumer's group generation and member id, read from its group metadata (librdkafka's
    ``rd_kafka_consumer_group_metadata_write``); None when that is not the format known here."""
    data = consumer.consumer_group_metadata()
    magic = _GROUP_METADATA.encode()
    if not isinstance(data, bytes) or not data.startswith(magic) or len(data) < 12:
        return None
    (generation,) = _GENERATION.unpack_from(data, len(magic))
    _group, _, rest = data[len(magic) + _GENERATION.size :].partition(b"\0")
    member, found, _ = rest.partition(b"\0")
    return (generation, member.decode(errors="replace")) if found else None


def is_fatal(error: ck.KafkaError) -> bool:
    """This client is unusable: librdkafka delivers a fatal error to a consumer as an event of
    code ``_FATAL`` whose ``fatal()`` is False, and a client left polling after it never reads
    again (a live-looking zombie)."""
    return bool(error.fatal()) or error.code() == ck.KafkaError._FATAL


def is_fence(error: ck.KafkaError) -> bool:
    """A fatal error that says another producer took the transactional id (librdkafka's
    generic ``_FATAL`` follows a fence). Other fatal errors, such as ``INVALID_TXN_STATE``
    from an abort after a record timed out while its leader moved (librdkafka #3297), leave
    the id free: a new producer for it carries on."""
    return error.code() in FENCED_ERRORS or error.code() == ck.KafkaError._FATAL


class ConfluentTransactionalProducer(ConfluentProducer):
    """Sends inside Kafka transactions; ``commit`` also commits the consumer's offsets.

    Every transactional call has a timeout, and its error decides what follows, as
    librdkafka's transactional API requires (a call left hanging or answered wrongly
    leaves the transaction open until the coordinator expires it, and the service stalls):

    - retriable (a timeout, a coordinator moving to another broker): the same call again;
      librdkafka resumes it, and anything else meanwhile would conflict with it.
    - abortable (the member dropped from its group, a record that could not be written):
      ``abort_transaction``, then ``TransactionAborted``: the runner handles the records
      since the last commit again, in a new transaction.
    - fatal after the transaction was open for its whole ``transaction.timeout.ms``: the
      coordinator expired it and bumped the epoch, which librdkafka reports as fenced. A
      new producer takes the same transactional id (its ``init_transactions`` closes the
      old transaction), then ``TransactionAborted`` as above.
    - fatal sooner, and a fence: another live instance initialised the id; renewing
      would fence it back, so every pending send fails with one ``FencedError`` naming
      the id and the fix, and the service stops. Any other fatal error (``is_fence``)
      renews the producer as after an expiry.

    librdkafka raises a fatal error once, from whichever call serves it first: the
    reports thread's ``poll`` (then the next transactional call fails) or ``flush``.
    """

    def __init__(self, settings: dict[str, Any], client_id: str) -> None:
        self._fenced = FencedError(
            f"producer {client_id}: transactional id {settings['transactional.id']!r} was "
            "taken over by another instance with the same instance id (fenced); give every "
            "instance its own CHOREO_INSTANCE_ID, or leave it unset for one per process"
        )
        self._fatal = False
        """error_cb reported a fatal error: the sends librdkafka purges next are part of it."""
        report = settings.get("error_cb")

        def on_error(error: ck.KafkaError) -> None:
            """Served before the reports of the sends librdkafka purges after a fence."""
            self._fatal = self._fatal or error.fatal()
            if report is not None:
                report(error)

        super().__init__({**settings, "error_cb": on_error}, client_id)
        self._initialised = False
        self._expiry_s = int(settings.get("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)) / 1e3
        self._request_s = request_timeout_s(settings)
        self._stuck_s = self._expiry_s / 3
        """A flush or an abort waits this long, then the transaction counts as stuck (its
        coordinator or a leader unreachable for librdkafka), well before it would expire."""
        self._begun_at = time.monotonic()

    def _on_delivery(
        self, delivered: asyncio.Future[None], error: ck.KafkaError | None, message: ck.Message
    ) -> None:
        if error is not None and (
            error.code() in FENCED_ERRORS
            or error.fatal()
            or (self._fatal and error.code() == ck.KafkaError._PURGE_QUEUE)
        ):
            self._reports.append((delivered, self._fenced))
        else:
            super()._on_delivery(delivered, error, message)

    def _refused(self, topic: str, error: ck.KafkaException) -> TransportError:
        """After a fence every ``produce`` fails with librdkafka's generic fatal error (a
        transactional producer's fatal errors are, in practice, fences)."""
        if _error_code(error) in (*FENCED_ERRORS, ck.KafkaError._FATAL):
            return self._fenced
        if _error_code(error) == ck.KafkaError._STATE:  # the transaction failed: it aborts
            return Abandoned(f"cannot send to topic {topic}: {_describe(error)}")
        return super()._refused(topic, error)

    def _abandons(self, error: ck.KafkaError) -> bool:
        """Every failed send fails its transaction, which is aborted and reported once
        (``TransactionAborted``); the records are handled again, so nobody awaits these."""
        return True

    async def begin(self) -> None:
        if not self._initialised:
            try:  # retried while the coordinator loads or moves (a fresh or failing cluster)
                init = self._producer.init_transactions
                await self._resumed("init", init)
            except ck.KafkaException as error:
                raise self._failed("init", error) from None
            self._initialised = True
        try:
            await asyncio.to_thread(self._producer.begin_transaction)
        except ck.KafkaException as error:
            raise self._failed("begin", error) from None
        self._begun_at = time.monotonic()

    async def flush(self) -> None:
        """Bounded: records not acknowledged within ``_stuck_s`` abort the transaction
        (``TransactionAborted``) before the coordinator expires it. librdkafka raises the
        fence of a send answered "old epoch" from ``flush`` itself (a transaction the
        coordinator expired while the process was frozen): that goes the way of a failed
        commit, not up to the runner as a library error that stops the service."""
        try:
            flushed = await self._flushed(time.monotonic() + self._stuck_s)
        except ck.KafkaException as error:
            raise await self._recover(error) from None
        if not flushed:
            raise await self._unstick(f"records unacknowledged after {self._stuck_s:.0f}s")

    async def commit(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        confluent = _confluent(consumer)
        await self.flush()
        if confluent.lost:  # no longer ours: their records are read again from the commits
            await self.abort()
            raise self._aborted(f"the consumer lost {_names(offsets)}")
        try:
            if offsets:
                metadata = await confluent.group_metadata()
                tps = [ck.TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
                send = self._producer.send_offsets_to_transaction
                await self._bounded("send offsets", send, tps, metadata, may_hang=True)
            commit = self._producer.commit_transaction
            try:
                await self._bounded("commit", commit)
            except TransactionAborted:
                if not offsets or not await self._took(offsets, confluent):
                    raise
                _log.warning(
                    "producer %s: the transaction given up had committed (its offsets are the "
                    "group's): its records are not handled again",
                    self._client_id,
                )
        except ck.KafkaException as error:
            raise await self._recover(error) from None

    async def _took(
        self, offsets: Mapping[TopicPartition, int], consumer: ConfluentConsumer
    ) -> bool:
        """Whether a commit given up (its call never returned) was taken by the broker all the
        same: handled again, its records' outputs would be sent twice. The new producer's
        ``init_transactions`` returns once the coordinator ended the old transaction, either
        way; then the group's committed offsets tell (the runner commits only offsets that
        moved). Not known (the broker cannot be asked now): counted as aborted, as before."""
        try:
            await self._resumed("init", self._producer.init_transactions)
        except ck.KafkaException:
            return False  # the next begin() tries again, and says why it cannot
        self._initialised = True
        found = await consumer.committed_offsets(offsets)
        return all(found.get(tp) == offset for tp, offset in offsets.items())

    async def abort(self) -> None:
        """Abort the open transaction (made again while retriable); a producer left unable
        to abort (fatal, or in no state to) is replaced, as after a failed commit."""
        try:
            await self._resumed("abort", self._producer.abort_transaction)
        except ck.KafkaException as error:
            self._replace(error)

    async def _resumed(self, what: str, call: Callable[..., Any], *args: Any) -> None:
        await asyncio.to_thread(
            resumed, f"producer {self._client_id}: transaction {what}", call, *args
        )

    async def _bounded(
        self, what: str, call: Callable[..., Any], *args: Any, may_hang: bool = False
    ) -> None:
        """``_resumed`` in a thread of its own (``started``), given up once hung or after
        ``STUCK_S`` (``settled``): the producer is renewed (an abort would conflict with the
        call still going on) and the transaction counts as aborted."""
        watch = CallWatch(self._request_s)
        name = f"producer {self._client_id}: transaction {what}"
        work = partial(resumed, name, call, *args, watch=watch, may_hang=may_hang)
        try:
            await settled(started(f"choreo-txn-{self._client_id}", work), watch)
        except Hung as hung:
            self._renew(str(hung))
            raise self._aborted(str(hung)) from None

    async def _unstick(self, reason: str) -> TransactionAborted:
        """Abort within ``_stuck_s``, else renew the producer: a new one finds the
        coordinator afresh, and its ``init_transactions`` aborts the stuck transaction."""
        what = f"producer {self._client_id}: transaction abort"
        until = time.monotonic() + self._stuck_s
        abort = self._producer.abort_transaction
        try:
            await asyncio.to_thread(resumed, what, abort, until=until)
        except ck.KafkaException as error:
            self._replace(error)
        return self._aborted(reason)

    def _aborted(self, reason: str) -> TransactionAborted:
        return TransactionAborted(
            f"producer {self._client_id}: transaction aborted, its records are read again: {reason}"
        )

    async def _recover(self, failure: ck.KafkaException) -> TransportError:
        """After a failed commit: abort (or renew the producer), and say what happened."""
        error = kafka_error(failure)
        if error is not None and error.code() in AUTHORIZATION_ERRORS:
            return denied(f"producer {self._client_id}: transaction", error)
        if error is not None and error.fatal():
            self._replace(failure)
        else:
            await self.abort()
        return self._aborted(_describe(failure))

    def _replace(self, failure: ck.KafkaException) -> None:
        """Renew the producer, unless a fence came too soon to be an expiry."""
        error = kafka_error(failure)
        expired = time.monotonic() - self._begun_at >= self._expiry_s
        if error is not None and error.fatal() and is_fence(error) and not expired:
            raise self._fenced  # another live instance initialised the id
        self._renew(_describe(failure))

    def _renew(self, cause: str) -> None:
        """A new librdkafka producer for the same transactional id (``init_transactions``
        at the next ``begin`` closes the old one's transaction); the old one's sends fail."""
        _log.warning(
            "producer %s: transaction expired or stuck (%s); a new producer takes over its "
            "transactional id",
            self._client_id,
            cause,
        )
        old, self._producer = self._producer, self._new_client()
        self._initialised = False
        old.purge()
        with contextlib.suppress(ck.KafkaException):  # a fatal error, raised once more
            _serving(old.poll, 0)  # the purged sends' reports fail their futures
        self._fatal = False
        if self._loop is not None:
            self._settle()

    def _failed(self, what: str, error: ck.KafkaException) -> TransportError:
        if _error_code(error) in FENCED_ERRORS:
            return self._fenced
        return TransportError(
            f"producer {self._client_id}: transaction {what} failed: {_describe(error)}"
        )


def _confluent(consumer: Consumer) -> ConfluentConsumer:
    """Offsets go into a transaction with the consumer's group metadata: the same library."""
    if not isinstance(consumer, ConfluentConsumer):
        raise ConfigError("exactly-once needs a confluent consumer beside the producer")
    return consumer
