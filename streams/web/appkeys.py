"""What the HTTP views may read from the aiohttp application, as typed keys.

Each view takes only the part it uses (aiohttp's ``AppKey``), never the whole
worker: the management API the repository and the stages, the webhook the
settings and the repository, ``/health`` its reporter, the admin page of
people the people's store and directory.
"""

from __future__ import annotations

from aiohttp import web

from streams.people.directory import Directory
from streams.settings import Settings
from streams.stages import Stages
from streams.storage.people import PeopleStore
from streams.storage.repository import WorkflowRepository
from streams.web.health import HealthReporter

SETTINGS = web.AppKey("settings", Settings)
REPO = web.AppKey("repo", WorkflowRepository)
STAGES = web.AppKey("stages", Stages)
HEALTH = web.AppKey("health", HealthReporter)
PEOPLE_STORE = web.AppKey("people_store", PeopleStore)
#: The worker's directory of people; None when the app was attached without one (only the default person).
DIRECTORY: web.AppKey[Directory | None] = web.AppKey("people_directory")
