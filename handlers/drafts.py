"""A draft reply as the AI Reply Generator returns it (docs/contracts.md §2).

A domain type: the generation stage works with it, and the adapter in
:mod:`streams.peers.ai` decodes the generator's answer into it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class GeneratedDraft(BaseModel):
    draft_id: str
    full_draft: str
    short_summary: str | None = None
    length: int
    is_sms_friendly: bool
    tokens_used: int
    model_version: str
    generated_at: datetime
