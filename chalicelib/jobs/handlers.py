"""The catalogue of job kinds: what a `Deferred(Job(kind, args))` runs in the jobs Lambda."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chalicelib.discord import Reply, Update

__all__ = ["JobRegistry"]

JobHandler = TypeVar("JobHandler", bound=Callable[..., Reply | Update])


@dataclass
class JobRegistry:
    """Job handlers by kind; a handler takes the context and the job's args as keywords."""

    handlers: dict[str, Callable[..., Reply | Update]] = field(default_factory=dict)
    # Kinds whose reply is a secret (a password, a sign-in link): the ledger never keeps it.
    secret: set[str] = field(default_factory=set)

    def job(self, kind: str, *, secret: bool = False) -> Callable[[JobHandler], JobHandler]:
        def decorate(fn: JobHandler) -> JobHandler:
            if kind in self.handlers:
                raise ValueError(f"job {kind!r} declared twice")
            self.handlers[kind] = fn
            if secret:
                self.secret.add(kind)
            return fn

        return decorate

    def is_secret(self, kind: str) -> bool:
        return kind in self.secret

    def get(self, kind: str) -> Callable[..., Any] | None:
        return self.handlers.get(kind)
