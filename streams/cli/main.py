"""The ``orchestrator`` command.

    orchestrator worker                          agents, poller, timers and web server in one process
    orchestrator demo                            the worker with stand-in peers and sample emails (no settings);
                                                 a command of the standins package (streams/cli/plugins.py)
    orchestrator doctor                          check every dependency, a line each (exit 1 if any fails)
    orchestrator db init                         apply schema.sql (idempotent)
    orchestrator topics create|list|describe     the Kafka topics
    orchestrator tail [TOPIC] [--from-beginning] follow a topic as readable lines (workflow.events by default)
    orchestrator dlq list                        the dead letters, a line each
    orchestrator dlq replay [ID ...|--all] [--dry-run]
                                                 send dead letters back to the topic they came from
    orchestrator people add NAME --phone P --address A [--address B] [--smtp-server H --smtp-login L
                  --smtp-password-stdin|--smtp-password-env VAR --imap-... --timezone Z --quiet-hours ...]
                                                 add a person (streams/cli/people.py)
    orchestrator people list                     everyone, a line each, with their workflow counts
    orchestrator people show KEY                 every field of a person (KEY: id, phone, address or name)
    orchestrator people set KEY FIELD VALUE ...  change fields ('' resets one to the worker's setting);
                                                 passwords only with --smtp-password-stdin and the like
    orchestrator people remove KEY               remove a person who has no open workflow
    orchestrator people new-key                  print a new key for PEOPLE_KEYS
    orchestrator people rotate-keys              encrypt every stored password again under PEOPLE_KEYS' first key

A configuration problem stops the command with exit status 2 and one line per
offending variable, before anything connects anywhere; a Kafka cluster that
cannot be used, with exit status 1 and one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from streams.cli.people import add_commands as add_people_commands
from streams.cli.plugins import installed as installed_commands
from streams.kafka.access import KafkaUnavailable
from streams.observability import logs
from streams.settings import ConfigError, DatabaseSettings, KafkaSettings, Settings, load_settings


def _db_init(_: argparse.Namespace) -> int:
    from streams.storage.database import apply_schema, schema_file

    settings = load_settings(DatabaseSettings)
    asyncio.run(apply_schema(settings.conninfo))
    print(f"orchestrator: applied {schema_file()}")
    return 0


def _topics_create(_: argparse.Namespace) -> int:
    from streams.kafka.topics import ensure_topics

    settings = load_settings(KafkaSettings, kafka_create_topics=True)
    created = ensure_topics(settings)
    print(f"orchestrator: created {len(created)} topic(s): {', '.join(created) or 'none needed'}")
    return 0


def _kafka_settings() -> KafkaSettings:
    return load_settings(KafkaSettings)


def _topics_list(_: argparse.Namespace) -> int:
    from streams.cli.kafka_tools import topics_list

    return topics_list(_kafka_settings())


def _topics_describe(args: argparse.Namespace) -> int:
    from streams.cli.kafka_tools import topics_describe

    return topics_describe(_kafka_settings(), args.topics)


def _tail(args: argparse.Namespace) -> int:
    from streams.cli.kafka_tools import tail

    try:
        return tail(_kafka_settings(), args.topic, from_beginning=args.from_beginning, until_end=args.exit)
    except KeyboardInterrupt:
        return 0


def _dlq_list(_: argparse.Namespace) -> int:
    from streams.cli.kafka_tools import dlq_list

    return dlq_list(_kafka_settings())


def _dlq_replay(args: argparse.Namespace) -> int:
    from streams.cli.kafka_tools import dlq_replay

    return dlq_replay(_kafka_settings(), args.ids, args.all, args.dry_run)


def _doctor(_: argparse.Namespace) -> int:
    from streams.cli.doctor import doctor

    return doctor()


def _worker(_: argparse.Namespace) -> int:
    settings = load_settings(Settings)
    if settings.demo:
        raise ConfigError("DEMO: is set by `orchestrator demo` only; the worker never runs the stand-in peers")
    if settings.unauthenticated_exposure and not settings.allow_unauthenticated:
        raise ConfigError(settings.unauthenticated_exposure)
    from streams.worker import run_worker

    return run_worker(settings)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` says which command is wanted, so only its plug-in is loaded."""
    words = [word for word in (sys.argv[1:] if argv is None else argv) if not word.startswith("-")]
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("worker", help="run the orchestrator").set_defaults(run=_worker, serves=True)
    # Commands of other installed packages (streams/cli/plugins.py): `demo`, from standins.
    for name, command in installed_commands(words[0] if words else None):
        commands.add_parser(name, help=command.help).set_defaults(run=command.run, serves=command.serves)
    db = commands.add_parser("db", help="database commands").add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND"
    )
    db.add_parser("init", help="apply schema.sql (idempotent)").set_defaults(run=_db_init)
    topics = commands.add_parser("topics", help="Kafka topic commands").add_subparsers(
        dest="topics_command", required=True, metavar="SUBCOMMAND"
    )
    topics.add_parser("create", help="create the topics (idempotent)").set_defaults(run=_topics_create)
    topics.add_parser("list", help="each topic: partitions and replication, or MISSING").set_defaults(
        run=_topics_list)
    describe = topics.add_parser("describe", help="partitions, replicas, end offsets and the group's lag")
    describe.add_argument("topics", nargs="*", metavar="TOPIC", help="logical or full names (default: all)")
    describe.set_defaults(run=_topics_describe)
    commands.add_parser("doctor", help="check every dependency, a line each").set_defaults(run=_doctor)
    tail = commands.add_parser("tail", help="follow a topic as readable lines")
    tail.add_argument("topic", nargs="?", default="workflow.events",
                      help="a logical topic name (default: workflow.events)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--exit", action="store_true", help="stop at the end instead of waiting for more")
    tail.set_defaults(run=_tail)
    dlq = commands.add_parser("dlq", help="the dead letters").add_subparsers(
        dest="dlq_command", required=True, metavar="SUBCOMMAND")
    dlq.add_parser("list", help="every dead letter: its ID, origin, stage and error").set_defaults(run=_dlq_list)
    replay = dlq.add_parser("replay", help="send dead letters back to the topic they came from")
    replay.add_argument("ids", nargs="*", metavar="ID", help="IDs from `dlq list` (partition:offset)")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed, send nothing")
    replay.set_defaults(run=_dlq_replay)
    add_people_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    # The worker logs to stdout (and configures its logging once its settings
    # are read); the other commands print their answer there, so log to stderr.
    serving = bool(getattr(args, "serves", False))
    logs.configure(os.environ.get("LOG_FORMAT") or None, "info" if serving else "warning",
                   stream="stdout" if serving else "stderr")
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"orchestrator: configuration error: {line}", file=sys.stderr)
        return 2
    except KafkaUnavailable as exc:
        print(f"orchestrator: kafka: {exc}", file=sys.stderr)
        return 1
    return code

