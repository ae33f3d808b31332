"""What the HTTP views may read from the aiohttp application, as typed keys.

Each view takes only the part it uses (aiohttp's ``AppKey``), never the whole
worker: the management API the repository and the stages, the webhook the
settings and the repository, ``/health`` its reporter.
"""

from __future__ import annotations

from aiohttp import web

from streams.settings import Settings
from streams.stages import Stages
from streams.storage.repository import WorkflowRepository
from streams.web.health import HealthReporter

SETTINGS = web.AppKey("settings", Settings)
REPO = web.AppKey("repo", WorkflowRepository)
STAGES = web.AppKey("stages", Stages)
HEALTH = web.AppKey("health", HealthReporter)
