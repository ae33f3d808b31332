"""The operator command line: `orchestrator worker|demo|db|doctor|topics|tail|dlq` (see main)."""

from streams.cli.main import main

__all__ = ["main"]
