"""The operator command line: `orchestrator worker|demo|db|doctor|topics|tail|dlq|people` (see main)."""

from streams.cli.main import main

__all__ = ["main"]
