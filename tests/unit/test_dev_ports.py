"""Ports for a test's own stack: free, distinct, and out of the way of client connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from choreo._dev import ports
from choreo._dev.ports import free_ports


def _ephemeral() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_ports_are_distinct_bindable_and_outside_the_range_client_connections_take() -> None:
    if _ephemeral().start <= 20_040:
        pytest.skip("this host leaves no room below its ephemeral range")
    ports = free_ports(40)
    assert len(set(ports)) == 40
    assert not set(ports) & set(_ephemeral())
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_with_a_listener_is_skipped_and_a_full_range_falls_back_to_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for three ports below the range and one of them listened on, the other two."""
    lowest = _three_free_in_a_row()
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text(f"{lowest + 3}\t60999\n")
    monkeypatch.setattr(ports, "_LOWEST", lowest)
    monkeypatch.setattr(ports, "_RANGE_FILE", range_file)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", lowest + 1))
        listener.listen()
        assert sorted(free_ports(2)) == [lowest, lowest + 2]
        more = free_ports(3)  # only two left below: the third is the kernel's
        assert len(set(more)) == 3 and lowest + 1 not in more


def _three_free_in_a_row() -> int:
    for lowest in range(21000, 30000, 3):
        try:
            with socket.socket() as a, socket.socket() as b, socket.socket() as c:
                for sock, port in ((a, lowest), (b, lowest + 1), (c, lowest + 2)):
                    sock.bind(("127.0.0.1", port))
            return lowest
        except OSError:
            continue
    raise AssertionError("no three free ports in a row")
