"""Where the tests' Kafka and PostgreSQL come from.

In order: KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL from the environment; else
testcontainers when a Docker engine answers; else ``scripts/services up`` (a
KRaft broker from Maven Central jars and a Debian PostgreSQL cluster).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str
    database_url: str


def _docker_available() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False  # no engine to ask (asking leaks a socket in docker-py)
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        client.ping()
        return True
    except Exception:
        return False
    finally:
        client.close()  # its socket, else closed by the garbage collector with a ResourceWarning


def _from_script() -> dict[str, str]:
    subprocess.run([str(ROOT / "scripts" / "services"), "up"], check=True)
    out = subprocess.run(
        [str(ROOT / "scripts" / "services"), "env"], check=True, capture_output=True, text=True
    ).stdout
    env = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


@contextmanager
def provide() -> Iterator[Endpoints]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    with ExitStack() as stack:
        if (not kafka or not database) and _docker_available():
            from testcontainers.kafka import KafkaContainer
            from testcontainers.postgres import PostgresContainer

            if not kafka:
                container = stack.enter_context(KafkaContainer("apache/kafka:4.1.1").with_kraft())
                kafka = container.get_bootstrap_server()
            if not database:
                pg = stack.enter_context(PostgresContainer("postgres:15", driver=None))
                database = pg.get_connection_url()
        if not kafka or not database:
            env = _from_script()
            kafka = kafka or env["KAFKA_BOOTSTRAP_SERVERS"]
            database = database or env["DATABASE_URL"]
        yield Endpoints(kafka_bootstrap_servers=kafka, database_url=database)


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    ca_file: Path
    username: str
    password: str


def imap_account() -> ImapAccount:
    """The test IMAP server (Dovecot, from ``scripts/services up imap``):
    ORCH_TEST_IMAP when set (``host:port:ca_file:user:password``), else started here."""
    spec = os.environ.get("ORCH_TEST_IMAP")
    if not spec:
        subprocess.run([str(ROOT / "scripts" / "services"), "up", "imap"], check=True)
        spec = _from_script()["ORCH_TEST_IMAP"]
    host, port, ca_file, username, password = spec.split(":", 4)
    return ImapAccount(host, int(port), Path(ca_file), username, password)


@dataclass(frozen=True)
class SecuredKafka:
    """The broker's SASL_SSL listener (SCRAM user) and its mutual-TLS listener."""

    sasl_servers: str
    ca_file: Path
    username: str
    password: str
    mtls_servers: str
    client_cert: Path
    client_key: Path

    def sasl_env(self, mechanism: str = "SCRAM-SHA-512", **overrides: str) -> dict[str, str]:
        """The worker's settings for the SASL_SSL listener."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.sasl_servers, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": mechanism, "KAFKA_SASL_USERNAME": self.username,
                "KAFKA_SASL_PASSWORD": self.password, "KAFKA_SSL_CA_FILE": str(self.ca_file)} | overrides

    def mtls_env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.mtls_servers, "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_FILE": str(self.ca_file), "KAFKA_SSL_CERT_FILE": str(self.client_cert),
                "KAFKA_SSL_KEY_FILE": str(self.client_key)}


def secured_kafka() -> SecuredKafka:
    """ORCH_TEST_KAFKA_SASL / ORCH_TEST_KAFKA_MTLS when set, else ``scripts/services up kafka``."""
    sasl, mtls = os.environ.get("ORCH_TEST_KAFKA_SASL"), os.environ.get("ORCH_TEST_KAFKA_MTLS")
    if not sasl or not mtls:
        subprocess.run([str(ROOT / "scripts" / "services"), "up", "kafka"], check=True)
        env = _from_script()
        sasl, mtls = env["ORCH_TEST_KAFKA_SASL"], env["ORCH_TEST_KAFKA_MTLS"]
    host, port, ca_file, username, password = sasl.split(":", 4)
    mhost, mport, _, cert, key = mtls.split(":", 4)
    return SecuredKafka(f"{host}:{port}", Path(ca_file), username, password, f"{mhost}:{mport}",
                        Path(cert), Path(key))
