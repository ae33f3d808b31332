"""How to reach PostgreSQL and Kafka: the settings the database and Kafka
commands need without the rest (``orchestrator db init``, ``topics``, ``tail``,
``dlq``). :mod:`streams.settings` builds the whole configuration on them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """What the database commands need (``orchestrator db init``)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Database: DATABASE_URL wins over DB_*
    database_url: SecretStr | None = None
    db_host: str = "localhost"
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_name: str = "email_auto_reply"
    db_user: str | None = None
    db_password: SecretStr | None = None
    db_pool_max_size: int = Field(default=10, ge=2)

    @model_validator(mode="after")
    def _database_configured(self) -> DatabaseSettings:
        if self.database_url is None and self.db_user is None:
            raise ValueError("DATABASE_URL or DB_USER (with DB_PASSWORD) must be set")
        return self

    @property
    def conninfo(self) -> str:
        """A libpq connection string (DATABASE_URL when set, else DB_*)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return make_conninfo(
            host=self.db_host,
            port=self.db_port,
            dbname=self.db_name,
            user=self.db_user,
            password=self.db_password.get_secret_value() if self.db_password else None,
        )


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster, and the topics' names and shape: what
    the Kafka commands need (``orchestrator topics``, ``tail``, ``dlq``).
    :mod:`streams.kafka.access` turns it into each client's configuration."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The CA that signed the brokers' certificates (else the system's trust store),
    # and this client's certificate and key for mutual TLS.
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_topic_prefix: str = "email-orchestrator."
    # False on clusters that forbid creating topics: the worker checks they exist instead.
    kafka_create_topics: bool = True
    # Partitions of new topics: the most workers of one consumer group that can share an agent's work.
    kafka_topic_partitions: int = Field(default=12, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # How soon a crashed worker's partitions go to a live one (faust's default is 60 s).
    kafka_session_timeout: float = Field(default=10.0, ge=6.0, le=300.0)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers or any(not re.match(r"^[\w.\-\[\]:]+:\d+$", s) for s in servers):
            raise ValueError("must be a comma-separated host:port list such as kafka:9092")
        return ",".join(servers)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9._\-]*$", value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                with value.open("rb") as f:
                    f.read(1)
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        problems = []
        login = {"KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism, "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
                 "KAFKA_SASL_PASSWORD": self.kafka_sasl_password}
        files = {"KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file, "KAFKA_SSL_CERT_FILE": self.kafka_ssl_cert_file,
                 "KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file}
        for name, value in login.items():
            if sasl and not value:
                problems.append(f"{name}: is required when KAFKA_SECURITY_PROTOCOL={protocol}")
            elif not sasl and value:
                problems.append(f"{name}: is set but KAFKA_SECURITY_PROTOCOL={protocol} does not log in "
                                f"(use SASL_SSL or SASL_PLAINTEXT)")
        for name, path in files.items():
            if path is not None and not tls:
                problems.append(f"{name}: is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                                f"(use SSL or SASL_SSL)")
        if tls and (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            given, missing = (("KAFKA_SSL_KEY_FILE", "KAFKA_SSL_CERT_FILE") if self.kafka_ssl_cert_file is None
                              else ("KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE"))
            problems.append(f"{missing}: is required with {given} (mutual TLS needs both)")
        if tls and not problems:
            problems += self._tls_files_load()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _tls_files_load(self) -> list[str]:
        """The TLS files parse as what they claim to be (else the worker would fail later, vaguely)."""
        import ssl

        if self.kafka_ssl_ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.kafka_ssl_ca_file))
            except (ssl.SSLError, ValueError) as exc:
                return [f"KAFKA_SSL_CA_FILE: not a PEM CA certificate: {exc}"]
        if self.kafka_ssl_cert_file is not None and self.kafka_ssl_key_file is not None:
            try:
                ssl.create_default_context().load_cert_chain(str(self.kafka_ssl_cert_file),
                                                             str(self.kafka_ssl_key_file))
            except (ssl.SSLError, ValueError) as exc:
                return [f"KAFKA_SSL_CERT_FILE: the certificate and KAFKA_SSL_KEY_FILE do not load as a "
                        f"PEM pair: {exc}"]
        return []

    @property
    def app_id(self) -> str:
        """The faust app id, which is also the Kafka consumer group."""
        return f"{self.kafka_topic_prefix}orchestrator"
