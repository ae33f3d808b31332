"""The AI Reply Generator (docs/contracts.md §2): ``POST /generate-reply``."""

from __future__ import annotations

from pydantic import ValidationError

from handlers.drafts import GeneratedDraft
from handlers.errors import PermanentError, TransientError
from streams.peers.http import PeerHttp, post_json

PEER = "AI Reply Generator"


class AiReplyGenerator:
    """Asks for drafts. Raises :class:`PermanentError` on 404 (unknown email)
    and other 4xx, :class:`TransientError` on 5xx, timeouts, refused
    connections and unreadable answers. Blocks for as long as a generation
    takes (seconds), up to the client's timeout."""

    def __init__(self, client: PeerHttp, base_url: str) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/generate-reply"

    async def generate(
        self,
        email_message_id: str,
        *,
        tone: str,
        max_length: int | None = None,
        context_instructions: str | None = None,
    ) -> GeneratedDraft:
        body: dict[str, object] = {"email_message_id": email_message_id, "tone": tone}
        if max_length is not None:
            body["max_length"] = max_length
        if context_instructions:
            body["context_instructions"] = context_instructions
        response = await post_json(self.client, self.url, body, PEER)
        if response.status_code == 404:
            raise PermanentError(PEER, "404: the generator does not know this email")
        try:
            draft = GeneratedDraft.model_validate_json(response.content)
        except ValidationError as exc:
            raise TransientError(PEER, f"unreadable response: {exc.error_count()} problem(s)") from exc
        if not draft.full_draft.strip():
            raise TransientError(PEER, "empty draft")
        return draft
