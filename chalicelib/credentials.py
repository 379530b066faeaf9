"""Where AWS credentials come from when they are not the process's own.

In AWS `CREDENTIALS_SOURCE` is unset and nothing here runs: every client takes the Lambda role's
credentials the usual way. The local stack and the tests run every handler in one process, yet DESIGN.md
§2 wants each handler to call AWS as its own IAM identity so that the emulator refuses what its policy
does not allow. So `CREDENTIALS_SOURCE` may name a callable (`module:function`) that answers "the
credentials of the function running now"; the session built here asks it at every request signing, so
one client (boto3's, PynamoDB's, the broker's hosting session) serves whichever handler uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from botocore.credentials import CredentialProvider, Credentials, ReadOnlyCredentials

__all__ = ["CredentialsSource", "SourcedCredentials", "load_source", "sourced_session"]

# (access key id, secret access key, session token or None), for the identity calling now.
CredentialsSource = Callable[[], tuple[str, str, str | None]]


def load_source(spec: str) -> CredentialsSource:
    """The callable `module:function` names (the setting's value)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"CREDENTIALS_SOURCE must be module:function, got {spec!r}")
    found: CredentialsSource = getattr(importlib.import_module(module), name)
    return found


class SourcedCredentials(Credentials):
    """Credentials that ask their source again at every signing (botocore freezes them per request)."""

    def __init__(self, source: CredentialsSource) -> None:
        # Not Credentials.__init__: the keys are not fixed; they are whatever the source says now.
        self._source = source
        self.method = "gangway-source"

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        key, secret, token = self._source()
        return ReadOnlyCredentials(key, secret, token)

    @property
    def access_key(self) -> str:  # type: ignore[override]
        return self._source()[0]

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return self._source()[1]

    @property
    def token(self) -> str | None:  # type: ignore[override]
        return self._source()[2]


class _Provider(CredentialProvider):
    """Put first in a session's provider chain, so every client it makes signs with the source."""

    METHOD = "gangway-source"
    CANONICAL_NAME = "GangwaySource"

    def __init__(self, credentials: SourcedCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> SourcedCredentials:
        return self._credentials


def sourced_session(source: CredentialsSource, region: str) -> Any:
    """A boto3 Session whose clients sign every request with what `source` answers at that moment."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("credential_provider").insert_before("env", _Provider(SourcedCredentials(source)))
    return boto3.Session(botocore_session=core, region_name=region)
