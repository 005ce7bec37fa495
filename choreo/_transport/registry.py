"""Pick a transport by name.

Backends are looked up in a dict of factories that import their module only
when chosen, so ``memory`` never loads a Kafka client and a missing optional
client (aiokafka) only matters to the service that asks for it. What the
backends share is in ``shared.py``: they never import this module back.
"""

from __future__ import annotations

from collections.abc import Callable

from choreo._config import KafkaConfig
from choreo._errors import ConfigError
from choreo._transport.base import Transport

TransportFactory = Callable[[KafkaConfig], Transport]


def _confluent(config: KafkaConfig) -> Transport:
    from choreo._transport.confluent import ConfluentTransport

    return ConfluentTransport(config)


def _aiokafka(config: KafkaConfig) -> Transport:
    from choreo._transport.aiokafka import AiokafkaTransport

    return AiokafkaTransport(config)


def _memory(config: KafkaConfig) -> Transport:
    from choreo._transport.memory import MemoryTransport

    return MemoryTransport()


_BACKENDS: dict[str, TransportFactory] = {
    "confluent": _confluent,
    "aiokafka": _aiokafka,
    "memory": _memory,
}


def register_transport(name: str, factory: TransportFactory) -> None:
    """Add (or replace) a backend; the factory should import its client lazily."""
    _BACKENDS[name] = factory


def transport_names() -> list[str]:
    return sorted(_BACKENDS)


def make_transport(name: str, config: KafkaConfig) -> Transport:
    """The transport called ``name``, configured from ``config``."""
    try:
        factory = _BACKENDS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in transport_names())
        raise ConfigError(f"unknown transport {name!r}; choose one of {valid}") from None
    return factory(config)
