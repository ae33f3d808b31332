"""Commands that other installed packages add to ``orchestrator``.

A package declares an entry point in the group ``orchestrator.commands``
(``pyproject.toml``): its name is the subcommand, its value a ``Command``;
what the command needs beyond the worker is the extra of the same name
(``pip install '.[demo]'`` for ``orchestrator demo``).
This is how ``orchestrator demo`` comes from ``standins`` while ``streams``
never imports the stand-ins.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points

from streams.settings import ConfigError

GROUP = "orchestrator.commands"


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, what runs it (exit status), and whether it
    serves (runs the worker: logs go to stdout at info, as ``worker``'s do)."""

    help: str
    run: Callable[[argparse.Namespace], int]
    serves: bool = False


def _unloadable(name: str, error: Exception) -> Command:
    def refuse(_: argparse.Namespace) -> int:
        raise ConfigError(f"{name}: `orchestrator {name}` needs packages that are not installed ({error}); "
                          f"install them with pip install '.[{name}]'")

    return Command(f"(cannot be loaded: {error})", refuse)


def installed(chosen: str | None) -> Iterator[tuple[str, Command]]:
    """Each installed command by name. Only the ``chosen`` one is imported (all of
    them when None, for the help), so ``orchestrator worker`` never loads the
    stand-ins; one whose package cannot be imported (an extra not installed)
    still answers, with a configuration error saying why."""
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if chosen is not None and entry.name != chosen:
            yield entry.name, Command("", _not_chosen)
            continue
        try:
            command = entry.load()
        except ImportError as exc:
            command = _unloadable(entry.name, exc)
        if not isinstance(command, Command):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a streams.cli.plugins.Command")
        yield entry.name, command


def _not_chosen(_: argparse.Namespace) -> int:
    raise AssertionError("argparse ran a command other than the one named first")
