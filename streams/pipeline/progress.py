"""When each agent last finished a message: what /health reads to tell a
stalled agent (lag on its topics, no progress) from an idle one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class AgentProgress:
    """Per agent: its source topics and when it last finished a message."""

    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def register(self, agent: str, sources: tuple[str, ...]) -> None:
        self.topics[agent] = sources
        self.last[agent] = time.time()

    def tick(self, agent: str) -> None:
        self.last[agent] = time.time()
