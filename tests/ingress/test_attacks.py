"""The ingress attacked on the real broker and PostgreSQL: replays across restarts and
replicas, slow and oversized requests, smuggling framing, unsigned headers, SIGTERM
mid-request. Each test is the attack and asserts the refusal and that nothing was published
that should not be."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from builders import received
from conftest import SECRET, Ingress, Published, StartIngress, signed

pytestmark = pytest.mark.stack

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _order(order_id: str) -> bytes:
    return received(order_id).model_dump_json().encode()


def _head(body: bytes, *, length: int | None = None, extra: str = "") -> bytes:
    """A signed request head for ``POST /orders`` as raw bytes."""
    headers = {**signed(body), "Content-Type": "application/json"}
    lines = ["POST /orders HTTP/1.1", "Host: ingress"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" if it closed without a word)."""
    chunks = []
    try:
        while chunk := connection.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b'"}' in chunk:
                break
    except ConnectionResetError:
        pass
    return b"".join(chunks)


@pytest.fixture(scope="module")
def replica(
    start_ingress: StartIngress, kafka: str, module_schemas: Path, postgres: str
) -> Callable[[], Ingress]:
    """Starts one more ingress whose seen signatures are in the shared PostgreSQL store."""
    return lambda: start_ingress(kafka, module_schemas, CHOREO_INGRESS__REPLAY_DSN=postgres)


@pytest.fixture(scope="module")
def shared(replica: Callable[[], Ingress]) -> Ingress:
    return replica()


def test_a_replay_to_a_second_replica_and_after_a_restart_is_refused(
    shared: Ingress, replica: Callable[[], Ingress], published: Published
) -> None:
    body = _order("replayed-shared")
    headers = signed(body)
    assert shared.request("POST", "/orders", body, headers).status == 202
    second = replica()
    at_replica = second.request("POST", "/orders", body, headers)
    assert (at_replica.status, at_replica.body["error"]) == (
        409,
        "this signed request was already received (replay)",
    )
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=60) == 0
    restarted = replica()
    assert restarted.request("POST", "/orders", body, headers).status == 409
    assert len(published("replayed-shared")) == 1


def test_copies_racing_into_two_replicas_are_accepted_once(
    shared: Ingress, replica: Callable[[], Ingress], published: Published
) -> None:
    body = _order("raced")
    headers = signed(body)
    targets = [shared, replica()] * 5
    with ThreadPoolExecutor(len(targets)) as pool:
        replies = list(pool.map(lambda i: i.request("POST", "/orders", body, headers), targets))
    assert sorted(r.status for r in replies) == [202] + [409] * 9
    assert len(published("raced")) == 1


def test_with_the_memory_store_a_replay_elsewhere_repeats_the_event_id_consumers_drop(
    start_ingress: StartIngress, kafka: str, module_schemas: Path, published: Published
) -> None:
    one, two = (start_ingress(kafka, module_schemas) for _ in range(2))
    body = _order("replayed-memory")
    headers = signed(body)
    first = one.request("POST", "/orders", body, headers)
    second = two.request("POST", "/orders", body, headers)
    assert (first.status, second.status) == (202, 202)
    ids = {r.header("ce_id") for r in published("replayed-memory")}
    assert ids == {first.body["event_id"]} == {second.body["event_id"]}


def test_without_its_replay_store_the_ingress_refuses_rather_than_skip_the_check(
    start_ingress: StartIngress, kafka: str, module_schemas: Path, published: Published
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = f"postgresql://choreo:pw@127.0.0.1:{probe.getsockname()[1]}/choreo"
    ingress = start_ingress(kafka, module_schemas, CHOREO_INGRESS__REPLAY_DSN=nowhere)
    body = _order("store-down")
    reply = ingress.request("POST", "/orders", body, signed(body))
    assert (reply.status, reply.body["error"]) == (
        503,
        "the replay check is unavailable; send it again later",
    )
    assert published("store-down") == []


def test_sigterm_answers_the_request_in_flight_then_exits_0(
    start_ingress: StartIngress, kafka: str, module_schemas: Path, published: Published
) -> None:
    ingress = start_ingress(kafka, module_schemas)
    body = _order("in-flight")
    with ingress.connect() as connection:
        connection.sendall(_head(body) + body[:10])
        time.sleep(1)  # the server accepted it and the app is reading the body
        ingress.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert ingress.process.poll() is None, "exited with a request in flight"
        connection.sendall(body[10:])
        answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 202"), answer
    assert ingress.process.wait(timeout=60) == 0
    assert len(published("in-flight")) == 1
    with pytest.raises(OSError):  # the listener is gone
        ingress.request("GET", "/healthz")


def test_slow_heads_are_cut_off_and_do_not_lock_others_out(
    start_ingress: StartIngress, kafka: str, module_schemas: Path
) -> None:
    ingress = start_ingress(
        kafka,
        module_schemas,
        CHOREO_INGRESS__HEADER_TIMEOUT_S="1",
        CHOREO_INGRESS__MAX_CONNECTIONS="10",
    )
    slow = [ingress.connect() for _ in range(30)]
    started = time.monotonic()
    for connection in slow:
        connection.sendall(b"POST /orders HTTP/1.1\r\nHost: ingress\r\n")
    for _ in range(5):  # a byte at a time, never finishing the head
        time.sleep(0.2)
        for connection in slow:
            with contextlib.suppress(OSError):  # already closed: what we want
                connection.sendall(b"X")
    for connection in slow:
        assert _answer(connection) == b""  # closed without an answer
        connection.close()
    assert time.monotonic() - started < 30
    body = _order("after-slowloris")
    assert ingress.request("POST", "/orders", body, signed(body)).status == 202


def test_a_slow_body_gets_408_and_publishes_nothing(
    start_ingress: StartIngress, kafka: str, module_schemas: Path, published: Published
) -> None:
    ingress = start_ingress(kafka, module_schemas, CHOREO_INGRESS__BODY_TIMEOUT_S="1")
    body = _order("slow-body")
    with ingress.connect() as connection:
        connection.sendall(_head(body) + body[:10])
        answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert published("slow-body") == []


def test_connections_over_the_cap_get_503(
    start_ingress: StartIngress, kafka: str, module_schemas: Path
) -> None:
    ingress = start_ingress(kafka, module_schemas, CHOREO_INGRESS__MAX_CONNECTIONS="4")
    idle = [ingress.connect() for _ in range(4)]
    time.sleep(0.5)  # accepted by the server
    try:
        assert ingress.request("GET", "/healthz").status == 503
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.5)
    body = _order("under-the-cap")
    assert ingress.request("POST", "/orders", body, signed(body)).status == 202


@pytest.mark.parametrize("size", [20_000, 64_000])
def test_oversized_headers_are_refused(ingress_plain: Ingress, size: int) -> None:
    body = _order(f"big-head-{size}")
    with ingress_plain.connect() as connection:
        connection.sendall(_head(body, extra=f"X-Padding: {'p' * size}\r\n") + body)
        answer = _answer(connection)
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:200]


def test_content_length_with_transfer_encoding_is_refused(
    ingress_plain: Ingress, published: Published
) -> None:
    body = _order("smuggled")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with ingress_plain.connect() as connection:
        connection.sendall(_head(body, extra="Transfer-Encoding: chunked\r\n") + chunked)
        answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Content-Length and Transfer-Encoding together are refused" in answer
    assert published("smuggled") == []


def test_only_trace_context_reaches_kafka(ingress_plain: Ingress, published: Published) -> None:
    body = _order("baggage")
    reply = ingress_plain.request(
        "POST",
        "/orders",
        body,
        {
            **signed(body),
            "traceparent": TRACEPARENT,
            "tracestate": "v=" + "x" * 600,  # over the W3C bound: dropped, not cut
            "baggage": "k=" + "v" * 7800,
            "X-Anything": "unsigned",
        },
    )
    assert reply.status == 202, reply.body
    [record] = published("baggage")
    names = {name for name, _ in record.headers}
    assert "baggage" not in names and "x-anything" not in names
    assert "tracestate" not in names
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in (record.header("traceparent") or "")


def test_the_ingress_log_is_redacted(ingress_plain: Ingress) -> None:
    body = b'{"' + SECRET.encode() + b'": 1, "' + SECRET.encode() + b'": 2}'
    reply = ingress_plain.request("POST", "/orders", body, signed(body))
    assert reply.status == 400  # the refusal is logged, quoting the key
    time.sleep(0.5)
    log = ingress_plain.log.read_text()
    assert "more than once" in log and SECRET not in log


@pytest.fixture(scope="module")
def ingress_plain(start_ingress: StartIngress, kafka: str, module_schemas: Path) -> Ingress:
    return start_ingress(kafka, module_schemas)
