"""Stand-ins for the orchestrator's peers: real servers on loopback that speak
their contracts (docs/contracts.md) exactly and keep what they were sent.

The AI Reply Generator, the SMS gateway and an SMTP server with implicit TLS
from a throwaway CA. The demo (``orchestrator demo``, what ``scripts/run``
starts when nothing is configured) runs them beside the worker; the tests use
the same classes. ``orchestrator worker`` never starts them.
"""

from .peers import (
    AiGeneratorStub,
    Inbox,
    SmsGatewayStub,
    SmtpServer,
    default_draft,
    free_port,
    webhook_body,
    webhook_headers,
    worker_settings,
)

__all__ = ["AiGeneratorStub", "Inbox", "SmsGatewayStub", "SmtpServer", "default_draft", "free_port",
           "webhook_body", "webhook_headers", "worker_settings"]
