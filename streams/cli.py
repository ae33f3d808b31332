"""The ``orchestrator`` command.

    orchestrator worker          agents, poller, timers and web server in one process
    orchestrator db init         apply schema.sql (idempotent)
    orchestrator topics create   create the Kafka topics (idempotent)

A configuration problem stops the command with exit status 2 and one line per
offending variable, before anything connects anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from . import logs
from .settings import ConfigError, DatabaseSettings, KafkaSettings, Settings, load_settings


def _db_init(_: argparse.Namespace) -> int:
    from .database import apply_schema, schema_file

    settings = load_settings(DatabaseSettings)
    asyncio.run(apply_schema(settings.conninfo))
    print(f"orchestrator: applied {schema_file()}")
    return 0


def _topics_create(_: argparse.Namespace) -> int:
    from .topics import ensure_topics

    settings = load_settings(KafkaSettings, kafka_create_topics=True)
    created = ensure_topics(settings)
    print(f"orchestrator: created {len(created)} topic(s): {', '.join(created) or 'none needed'}")
    return 0


def _worker(_: argparse.Namespace) -> int:
    settings = load_settings(Settings)
    if settings.unauthenticated_exposure and not settings.allow_unauthenticated:
        raise ConfigError(settings.unauthenticated_exposure)
    from .worker import run_worker

    return run_worker(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("worker", help="run the orchestrator").set_defaults(run=_worker)
    db = commands.add_parser("db", help="database commands").add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND"
    )
    db.add_parser("init", help="apply schema.sql (idempotent)").set_defaults(run=_db_init)
    topics = commands.add_parser("topics", help="Kafka topic commands").add_subparsers(
        dest="topics_command", required=True, metavar="SUBCOMMAND"
    )
    topics.add_parser("create", help="create the topics (idempotent)").set_defaults(run=_topics_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(os.environ.get("LOG_FORMAT") or None, "info")  # until the settings are read
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"orchestrator: configuration error: {line}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
