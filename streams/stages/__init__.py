"""The stages: one module per :class:`~handlers.workflow.Stage` (draft,
notify, command, send), with failures, parking and the operator's actions
beside them, sharing a :class:`~streams.stages.context.StageContext`; the
:class:`Stages` facade holds them together for callers."""

from streams.stages.actions import NotAllowedNow, UnknownWorkflow
from streams.stages.context import StageContext
from streams.stages.facade import Stages

__all__ = ["NotAllowedNow", "StageContext", "Stages", "UnknownWorkflow"]
