"""Read, create and delete ACLs through the Kafka Admin API (confluent-kafka's AdminClient).

Only ALLOW rules on host ``*`` are choreo's; ``describe`` still returns every
rule of the principals asked about, so ``plan`` can show (and ``apply``
remove) what no declaration explains.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient

# Public as confluent_kafka.admin.*, but the package's stubs do not re-export them.
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from choreo._config import KafkaConfig
from choreo._errors import SecurityError, TransportError
from choreo._security.acl import Acl
from choreo._transport.confluent import ADMIN_TIMEOUT_S, ConfluentTransport, librdkafka_settings

_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_NAMES = {value: key for key, value in _TYPES.items()}
_OPERATIONS = {"READ": AclOperation.READ, "WRITE": AclOperation.WRITE}


class AclAdmin:
    """ACL calls on one cluster, as a principal allowed to describe and alter ACLs."""

    def __init__(self, config: KafkaConfig) -> None:
        ConfluentTransport(config)  # checks the TLS files before anything connects
        self._servers = config.bootstrap_servers
        self._admin = AdminClient({**librdkafka_settings(config), **config.client_options})

    def describe(self, principals: Iterable[str]) -> tuple[list[Acl], list[str]]:
        """These principals' rules: the ones in choreo's terms, and the others as text."""
        found: list[Acl] = []
        unmanaged: list[str] = []
        for principal in sorted(set(principals)):
            anything: Any = None  # a filter's None matches every name and host
            rule = AclBindingFilter(
                ResourceType.ANY, anything, ResourcePatternType.ANY, principal, anything,
                AclOperation.ANY, AclPermissionType.ANY,
            )  # fmt: skip
            bindings: list[Any] = self._wait(self._admin.describe_acls(rule), "describe ACLs")
            for binding in bindings:
                acl = _acl(binding)
                if acl is None:
                    unmanaged.append(str(binding))
                else:
                    found.append(acl)
        return found, unmanaged

    def create(self, acls: Iterable[Acl]) -> None:
        bindings = [_binding(acl) for acl in acls]
        if bindings:
            for future in self._admin.create_acls(bindings).values():
                self._wait(future, "create ACLs")

    def delete(self, acls: Iterable[Acl]) -> None:
        rules = [_binding(acl, AclBindingFilter) for acl in acls]
        if rules:
            for future in self._admin.delete_acls(rules).values():
                self._wait(future, "delete ACLs")

    def _wait(self, future: Future[Any], what: str) -> Any:
        try:
            return future.result(ADMIN_TIMEOUT_S)
        except ck.KafkaException as error:
            failure = error.args[0] if error.args else error
            text = failure.str() if isinstance(failure, ck.KafkaError) else str(failure)
            if isinstance(failure, ck.KafkaError) and failure.code() in (
                ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                ck.KafkaError.SECURITY_DISABLED,
            ):
                raise SecurityError(
                    f"cannot {what} on {self._servers}: {text} (run this as a super user or a "
                    "principal with ALTER on the cluster, on a broker with an authorizer)"
                ) from None
            raise TransportError(f"cannot {what} on {self._servers}: {text}") from None
        except TimeoutError:
            raise TransportError(
                f"cannot {what} on {self._servers}: no answer in {ADMIN_TIMEOUT_S:g}s"
            ) from None


def _binding(acl: Acl, kind: type[Any] = AclBinding) -> Any:
    pattern = ResourcePatternType.PREFIXED if acl.prefixed else ResourcePatternType.LITERAL
    return kind(
        _TYPES[acl.resource], acl.name, pattern, acl.principal, "*",
        _OPERATIONS[acl.operation], AclPermissionType.ALLOW,
    )  # fmt: skip


def _acl(binding: Any) -> Acl | None:
    """A broker rule in choreo's terms, or None for one choreo never writes (DENY, a host,
    another operation): those are shown by ``plan`` and never touched."""
    resource = _NAMES.get(binding.restype)
    operation = binding.operation.name
    if (
        resource is None
        or operation not in _OPERATIONS
        or binding.permission_type != AclPermissionType.ALLOW
        or binding.host != "*"
    ):
        return None
    prefixed = binding.resource_pattern_type == ResourcePatternType.PREFIXED
    return Acl(binding.principal, resource, binding.name, operation, prefixed)  # type: ignore[arg-type]
