"""Loopback ports for a second stack that must meet no other listener."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 20000
"""Above the well-known defaults the shared stack listens on (9092, 16686, ...)."""
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free now (all bound at once, so none repeats).

    Taken below the kernel's ephemeral range when there is room: a stack is
    started some time after its ports are chosen, and a port from that range
    may meanwhile be the local end of any client connection (a Kafka client's,
    a broker's own), which no listener can then bind. CI met exactly that.
    Within the range left, ports are random, so runs side by side rarely meet.
    """
    sockets: list[socket.socket] = []
    try:
        for port in _candidates():
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            if len(sockets) == count:
                return [sock.getsockname()[1] for sock in sockets]
        raise OSError(f"no {count} free loopback ports")
    finally:
        for sock in sockets:
            sock.close()


def _candidates() -> list[int]:
    """Ports below the ephemeral range in random order, then 0 (the kernel's pick) as a fallback."""
    below = range(_LOWEST, _ephemeral_start())
    return [*random.sample(below, len(below)), *([0] * 64)]


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _LOWEST  # not Linux: no room known, the kernel picks
