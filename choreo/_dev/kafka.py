"""Kafka (KRaft, combined broker and controller nodes) run from Maven Central jars.

One node by default; ``kafka_cluster`` gives three (or more) nodes that are all
voters of a static controller quorum, with replication factor 3 and
``min.insync.replicas=2`` as the cluster defaults, so a broker can fail over.

No tarball and no Docker: ``infra/kafka/pom.xml`` fetches the broker jars and
the broker runs as ``java -cp <jars>/* kafka.Kafka``. The readiness probe
speaks the Kafka protocol with the standard library, because the stack
manager has to work before any Kafka client library is installed.

Two client listeners: PLAINTEXT (the quick tests) and SASL_SSL (PLAIN, SCRAM
and unsecured-JWT OAUTHBEARER over TLS, with a CA made at first start; see
``tls.py``), and the StandardAuthorizer on. The PLAINTEXT listener's principal
is ``User:ANONYMOUS``, listed in ``super.users``, so that listener stays fully
open while principals on the secure listener get only what ACLs grant them
(``allow.everyone.if.no.acl.found`` stays false: no ACL means denied there).
Turning on ``allow.everyone.if.no.acl.found`` instead would leave secure
principals unrestricted on topics without ACLs, and close topics with ACLs to
the PLAINTEXT tests.
"""

from __future__ import annotations

import base64
import socket
import struct
import subprocess
import uuid
from pathlib import Path

from choreo._dev.component import ComponentError, Launch, StackPaths
from choreo._dev.maven import fetch_jars, require_tool
from choreo._dev.tls import BROKER_FILE, CA_FILE, ensure_broker_keystore

KAFKA_VERSION = "4.3.1"
"""Debezium 3.7 (infra/connect/pom.xml) is built against this Kafka, so Connect matches it."""
JVM_HEAP = ["-Xms256m", "-Xmx1g"]
CLUSTER_NODE_HEAP = ["-Xms128m", "-Xmx512m"]
"""Three JVMs share a laptop (or a 2-core CI runner) with the rest of the stack."""
JVM_FLAGS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
CONFIG_COMMAND_MAIN = "kafka.admin.ConfigCommand"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-secret"
"""The secure listener's super user (PLAIN and SCRAM): loopback development only."""
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
_SCRAM_DONE = "scram-users.done"
"""In the data dir: the SCRAM credentials are in the cluster metadata (lost with the data)."""

_API_VERSIONS = 18
_PRODUCE = 0
_UNSUPPORTED_VERSION = 35
_PROBE_TIMEOUT_S = 2.0


def kafka_jars(paths: StackPaths) -> Path:
    """Where the broker and Connect worker jars live, shared by every project on the machine."""
    return paths.cache / f"kafka-{KAFKA_VERSION}"


def fetch_kafka_jars(paths: StackPaths) -> Path:
    """Fetch the broker + Connect runtime jars once; Connect reuses them for its classpath."""
    dest = kafka_jars(paths)
    fetch_jars(
        paths.project / "infra" / "kafka" / "pom.xml", dest, {"kafka.version": KAFKA_VERSION}
    )
    return dest


def java_argv(paths: StackPaths, main: str, *args: str, heap: list[str] | None = None) -> list[str]:
    """``java`` with our log4j2 config and the Kafka jars on the classpath, running ``main``."""
    log4j = paths.project / "infra" / "kafka" / "log4j2.yaml"
    return [
        require_tool("java"),
        *(heap if heap is not None else JVM_HEAP),
        *JVM_FLAGS,
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{kafka_jars(paths)}/*",
        main,
        *args,
    ]


def _new_cluster_id() -> str:
    """A random cluster id in Kafka's form: 16 bytes, URL-safe base64, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that read like a CLI flag
            return text


class Kafka:
    """One KRaft node that is both broker and controller, on loopback only.

    Alone (no ``voters``) it is the whole cluster, named ``kafka``. As one of a
    cluster it is ``kafka-<node_id>``, its quorum is the static ``voters`` list
    (node id, controller port), and its stack starts all nodes together: none
    answers before a majority of voters is up.
    """

    install_lane = "maven"

    def __init__(
        self,
        port: int = 9092,
        controller_port: int = 9093,
        secure_port: int = 9094,
        *,
        node_id: int = 1,
        voters: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.secure_port = secure_port
        self.ports = (port, controller_port, secure_port)
        self.node_id = node_id
        self.voters = voters
        self.name = f"kafka-{node_id}" if voters else "kafka"
        self.start_group = "kafka" if voters else None
        """Components sharing a start group are spawned together (see ``Stack.up``)."""

    @property
    def replication(self) -> int:
        """Replicas of every topic by default: all nodes, at most three."""
        return min(3, max(1, len(self.voters)))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def install(self, paths: StackPaths) -> None:
        fetch_kafka_jars(paths)

    def _config(self, paths: StackPaths) -> Path:
        return paths.data(self.name) / "server.properties"

    def prepare(self, paths: StackPaths) -> None:
        """Write the config every time (ports may change); format the storage and make the
        TLS files only once (the storage of an older broker config gets its TLS files here)."""
        data = paths.data(self.name)
        log_dir = data / "log"
        data.mkdir(parents=True, exist_ok=True)
        self._config(paths).write_text(self._properties(log_dir, tls_dir(paths)))
        if not (log_dir / "meta.properties").exists():
            self._format(paths, data)
        ensure_broker_keystore(tls_dir(paths))

    def _format(self, paths: StackPaths, data: Path) -> None:
        # A cluster's nodes must share one id: it lives beside their data dirs.
        id_file = paths.data("kafka-cluster") / "cluster.id" if self.voters else data / "cluster.id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
        if not id_file.exists():
            id_file.write_text(_new_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        args = ["format", "--config", str(self._config(paths)), "--cluster-id", cluster_id]
        if not self.voters:  # a static voters list needs no flag; alone, it is the sole voter
            args.append("--standalone")
        argv = java_argv(paths, STORAGE_TOOL_MAIN, *args, heap=["-Xmx256m"])
        log = paths.log(f"{self.name}-format")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=data)
        if done.returncode:
            raise ComponentError(f"kafka: formatting the KRaft storage failed; log: {log}")

    def _properties(self, log_dir: Path, tls: Path) -> str:
        controller = f"127.0.0.1:{self.controller_port}"
        listeners = (
            f"PLAINTEXT://{self.bootstrap},SASL_SSL://{self.secure_bootstrap},"
            f"CONTROLLER://{controller}"
        )
        replicas = str(self.replication)
        min_isr = str(min(2, self.replication))
        settings = {
            # KRaft, each node in both roles; alone, --standalone formatting makes it the voter.
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **_quorum(controller, self.voters),
            "controller.listener.names": "CONTROLLER",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            ),
            **_secure_listener(tls),
            "log.dirs": str(log_dir),
            # Alone: one replica of everything, or internal topics (groups, transactions)
            # never appear. In a cluster: three, and an acks=all write needs two of them.
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Few partitions: internal topics are created faster, and a laptop needs no more.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "num.partitions": "1",
            # A record for a topic nobody created is an error (a typo), not a 1-partition topic.
            "auto.create.topics.enable": "false",
            # Consumers in tests join at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        return (
            "# Written by choreo/_dev/kafka.py on every start; edits are lost.\n"
            + "\n".join(lines)
            + "\n"
        )

    def launch(self, paths: StackPaths) -> Launch:
        heap = CLUSTER_NODE_HEAP if self.voters else JVM_HEAP
        argv = java_argv(paths, BROKER_MAIN, str(self._config(paths)), heap=heap)
        return Launch(argv=argv, cwd=paths.data(self.name))

    def healthy(self) -> bool:
        """The broker answers an ApiVersions request and lists Produce among its APIs."""
        try:
            return _api_versions_ok("127.0.0.1", self.port)
        except OSError:
            return False

    def stale(self) -> str | None:
        """A broker started from an older config (no secure listener) says how to restart it."""
        if not self.healthy() or _accepts(self.secure_port):
            return None
        return (
            f"no SASL_SSL listener on {self.secure_bootstrap} (this broker was started with an "
            "older config); restart it to get one: choreo dev down kafka && choreo dev up"
        )

    def after_start(self, paths: StackPaths) -> None:
        """Create the super user's SCRAM credentials once (kept in the cluster metadata).

        Done through the PLAINTEXT listener with Kafka's own ConfigCommand, so it
        also works on a storage formatted before the secure listener existed.
        Topics are created by the services that use them. In a cluster the
        first node does it for all: the credentials are cluster metadata.
        """
        if self.node_id != 1:
            return
        done = paths.data(self.name) / _SCRAM_DONE
        if done.exists():
            return
        log = paths.log("kafka-scram")
        for mechanism in (m for m in SASL_MECHANISMS if m.startswith("SCRAM")):
            # One mechanism per run: the broker refuses two changes to one user in one request.
            args = ["--bootstrap-server", self.bootstrap, "--alter", "--add-config"]
            args += [f"{mechanism}=[password={ADMIN_PASSWORD}]"]
            args += ["--entity-type", "users", "--entity-name", ADMIN_USER]
            argv = java_argv(paths, CONFIG_COMMAND_MAIN, *args, heap=["-Xmx256m"])
            with log.open("a") as out:
                ran = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            if ran.returncode:
                raise ComponentError(
                    f"kafka: creating the SCRAM user {ADMIN_USER} failed; log: {log}"
                )
        done.write_text(f"{ADMIN_USER}\n")


def kafka_cluster(nodes: list[tuple[int, int, int]]) -> list[Kafka]:
    """One node per ``(port, controller_port, secure_port)``, ids from 1, all voters."""
    voters = tuple((node_id, ports[1]) for node_id, ports in enumerate(nodes, start=1))
    return [
        Kafka(*ports, node_id=node_id, voters=voters)
        for node_id, ports in enumerate(nodes, start=1)
    ]


def _quorum(controller: str, voters: tuple[tuple[int, int], ...]) -> dict[str, str]:
    """A static voters list for a cluster; a bootstrap address for the lone node."""
    if not voters:
        return {"controller.quorum.bootstrap.servers": controller}
    return {
        "controller.quorum.voters": ",".join(f"{node}@127.0.0.1:{port}" for node, port in voters)
    }


def tls_dir(paths: StackPaths) -> Path:
    """The local CA (``ca.pem``) and the broker's key and certificate."""
    return paths.data("kafka") / "tls"


def _secure_listener(tls: Path) -> dict[str, str]:
    """SASL_SSL: TLS from a PEM key store, the SASL mechanisms, ACLs on (see the module doc)."""
    jaas = {
        "plain": "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{ADMIN_USER}="{ADMIN_PASSWORD}";',
        "scram-sha-256": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "scram-sha-512": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "oauthbearer": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        ),
    }
    return {
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        **{f"listener.name.sasl_ssl.{name}.sasl.jaas.config": v for name, v in jaas.items()},
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls / BROKER_FILE),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls / CA_FILE),
        # A client certificate is checked against the CA when one is presented (mutual TLS).
        "listener.name.sasl_ssl.ssl.client.auth": "requested",
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _api_versions_ok(host: str, port: int) -> bool:
    """Send ApiVersions v0 (hand-encoded); true if a well-formed answer lists Produce."""
    correlation_id = 0x43686F72  # any value; the answer must echo it
    client_id = b"choreo-probe"
    header = struct.pack(">hhih", _API_VERSIONS, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
        sock.settimeout(_PROBE_TIMEOUT_S)
        sock.sendall(struct.pack(">i", len(header)) + header)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 10 <= size <= 1 << 20:
            return False
        body = _recv_exact(sock, size)
    echoed, error_code, count = struct.unpack_from(">ihi", body)
    # UNSUPPORTED_VERSION still carries the key list: a broker that dropped v0 is up too.
    if echoed != correlation_id or error_code not in (0, _UNSUPPORTED_VERSION):
        return False
    if size != 10 + 6 * count:
        return False
    api_keys = {struct.unpack_from(">h", body, 10 + 6 * i)[0] for i in range(count)}
    return {_PRODUCE, _API_VERSIONS} <= api_keys


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)
