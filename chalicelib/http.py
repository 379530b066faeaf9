"""The one value every HTTP route returns, whatever the domain: app.py turns it into a response.

Handlers stay free of any web framework (lesson L3): the interactions endpoint, the site's APIs and the
internal game-state API all answer with an `HttpReply`, rendered in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HttpReply"]


@dataclass(frozen=True)
class HttpReply:
    """A status, a body and headers; `HttpReply.json` builds the usual JSON answer."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: Mapping[str, str] | None = None) -> HttpReply:
        """`data` as compact JSON; a 204 carries no body (HTTP forbids one)."""
        body = b"" if status == 204 else json.dumps(data, separators=(",", ":")).encode()
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})

    def data(self) -> Any:
        """The JSON body decoded (None when empty): for tests and logs."""
        return json.loads(self.body) if self.body else None
