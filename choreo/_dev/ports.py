"""Loopback ports the kernel hands out, for a second stack that must meet no other listener."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free a moment ago (all bound at once, so none repeats).

    Used where a test starts a stack of its own beside the shared one: ports
    the kernel picked cannot collide with the shared stack's or another run's.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
