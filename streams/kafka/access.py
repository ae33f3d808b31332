"""How every Kafka client the worker opens reaches the cluster.

One settings object (:class:`~streams.settings.KafkaSettings`: the brokers,
``KAFKA_SECURITY_PROTOCOL``, SASL login, TLS files) and one small function per
client family, so the clients can never disagree:

* :func:`confluent_config`: librdkafka (the outbox relay's producer, admin
  clients, the operator CLI);
* :func:`aiokafka_config`: aiokafka (the health reporter's lag clients);
* :func:`faust_credentials`: the faust app (its consumer and producer are aiokafka's).

Certificate verification is never switched off: the broker's certificate must
chain to ``KAFKA_SSL_CA_FILE`` (or to the system's trust store when it is
unset) and name the host in ``KAFKA_BOOTSTRAP_SERVERS``.

:func:`probe` asks the cluster for its metadata and turns librdkafka's
failures into one sentence a person can act on (wrong password, untrusted
certificate, unreachable broker), which is what the worker logs and
``/health`` shows while it waits for Kafka.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from streams.settings import KafkaSettings

#: librdkafka logs every failed connection attempt on its own; the worker
#: reports the cause once instead (see :func:`probe`), so its lines go here,
#: quiet unless LOG_LEVEL=debug.
LIBRDKAFKA_LOG = logging.getLogger("streams.librdkafka")
LIBRDKAFKA_LOG.setLevel(logging.CRITICAL)


def uses_tls(k: KafkaSettings) -> bool:
    return k.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(k: KafkaSettings) -> bool:
    return k.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def ssl_context(k: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for the Python clients (None without TLS)."""
    if not uses_tls(k):
        return None
    context = ssl.create_default_context(cafile=str(k.kafka_ssl_ca_file) if k.kafka_ssl_ca_file else None)
    if k.kafka_ssl_cert_file is not None and k.kafka_ssl_key_file is not None:
        context.load_cert_chain(str(k.kafka_ssl_cert_file), str(k.kafka_ssl_key_file))
    return context


def confluent_config(k: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka properties for a confluent-kafka Producer, Consumer or AdminClient."""
    conf: dict[str, Any] = {
        "bootstrap.servers": k.kafka_bootstrap_servers,
        "security.protocol": k.kafka_security_protocol.lower(),
        "logger": LIBRDKAFKA_LOG,
    }
    if uses_sasl(k):
        assert k.kafka_sasl_password is not None  # enforced by the settings
        conf |= {"sasl.mechanism": k.kafka_sasl_mechanism, "sasl.username": k.kafka_sasl_username,
                 "sasl.password": k.kafka_sasl_password.get_secret_value()}
    if uses_tls(k):
        conf["ssl.endpoint.identification.algorithm"] = "https"
        if k.kafka_ssl_ca_file is not None:
            conf["ssl.ca.location"] = str(k.kafka_ssl_ca_file)
        if k.kafka_ssl_cert_file is not None and k.kafka_ssl_key_file is not None:
            conf["ssl.certificate.location"] = str(k.kafka_ssl_cert_file)
            conf["ssl.key.location"] = str(k.kafka_ssl_key_file)
    return conf | extra


def aiokafka_config(k: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients (AIOKafkaConsumer, AIOKafkaAdminClient, ...)."""
    conf: dict[str, Any] = {"bootstrap_servers": k.kafka_bootstrap_servers,
                            "security_protocol": k.kafka_security_protocol}
    if uses_sasl(k):
        assert k.kafka_sasl_password is not None
        conf |= {"sasl_mechanism": k.kafka_sasl_mechanism, "sasl_plain_username": k.kafka_sasl_username,
                 "sasl_plain_password": k.kafka_sasl_password.get_secret_value()}
    if uses_tls(k):
        conf["ssl_context"] = ssl_context(k)
    return conf


def faust_credentials(k: KafkaSettings) -> Any:
    """The faust app's ``broker_credentials`` (None for PLAINTEXT)."""
    import faust

    if uses_sasl(k):
        assert k.kafka_sasl_password is not None
        return faust.SASLCredentials(username=k.kafka_sasl_username,
                                     password=k.kafka_sasl_password.get_secret_value(),
                                     ssl_context=ssl_context(k), mechanism=k.kafka_sasl_mechanism)
    if uses_tls(k):
        return faust.SSLCredentials(ssl_context(k))
    return None


class KafkaUnavailable(Exception):
    """The cluster cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class _Cause:
    codes: frozenset[int]
    explain: str


def _causes(k: KafkaSettings) -> tuple[_Cause, ...]:
    who = f"KAFKA_SASL_USERNAME={k.kafka_sasl_username}" if uses_sasl(k) else "the client certificate"
    ca = f"KAFKA_SSL_CA_FILE={k.kafka_ssl_ca_file}" if k.kafka_ssl_ca_file else "the system's CA certificates"
    return (
        _Cause(frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}),
               f"login refused for {who} (check KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM="
               f"{k.kafka_sasl_mechanism})"),
        _Cause(frozenset({KafkaError._SSL}),
               f"TLS handshake failed: the broker's certificate is not trusted by {ca}, or it does not "
               f"name the host in KAFKA_BOOTSTRAP_SERVERS"),
    )


def probe(k: KafkaSettings, timeout: float = 15.0) -> tuple[AdminClient, ClusterMetadata]:
    """Reach the cluster and read its metadata, or raise :class:`KafkaUnavailable`.

    A refused login or an untrusted certificate is reported as soon as
    librdkafka sees it, not after ``timeout``.
    """
    errors: list[KafkaError] = []
    admin = AdminClient(confluent_config(k, error_cb=errors.append))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return admin, admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            last = exc
        admin.poll(0)  # serves error_cb
        for cause in _causes(k):
            hit = next((e for e in errors if e.code() in cause.codes), None)
            if hit is not None:
                raise KafkaUnavailable(f"{cause.explain}: {_detail(hit)}")
    detail = _detail(errors[0]) if errors else str(last)
    raise KafkaUnavailable(f"cannot reach KAFKA_BOOTSTRAP_SERVERS={k.kafka_bootstrap_servers} "
                           f"with KAFKA_SECURITY_PROTOCOL={k.kafka_security_protocol}: {detail}")


def _detail(error: KafkaError) -> str:
    """librdkafka's message without its '(after N ms in state X)' tail."""
    text: str = error.str()
    return text.split(" (after ")[0]
