"""Where every PynamoDB table lives: the region and endpoint from Settings, on-demand billing.

Each model's `Meta` inherits this and names only its table, so the emulator endpoint and the region
are decided in one place (DESIGN.md section 2: the same code locally and in AWS).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Final

from chalicelib.config import settings

__all__ = ["TableMeta", "share_one_session", "sign_tables_with"]


class TableMeta:
    """The base of every model's `Meta`."""

    region = settings().region
    host = settings().aws_endpoint_url
    billing_mode = "PAY_PER_REQUEST"


# Per thread, the one botocore session every table's connection makes its client from (botocore sessions
# are not safe to share across threads for making clients, which is why PynamoDB keeps one per thread).
_SESSIONS: Final = threading.local()


def share_one_session(*models: Any) -> None:
    """Make `models` build their clients from one botocore session per thread instead of one each.

    A botocore session reads the endpoint rules and the DynamoDB service model from disk on its first
    client (~0.1 s of JSON); PynamoDB gives every model a session of its own, so a cold command that
    reads two tables read them twice. PynamoDB keeps the session on the connection's thread-local
    `_local`, so the models share one by sharing that (each model keeps its own client).
    """
    for model in models:
        model._get_connection().connection._local = _SESSIONS


def sign_tables_with(models: Iterable[Any], credentials: Any) -> None:
    """Make `models` sign every request with `credentials` (chalicelib/credentials.py's, asked per request).

    PynamoDB builds one botocore client per model from a session of its own and offers no way to hand it
    a credentials provider; its client keeps the provider on its request signer (which PynamoDB itself
    inspects, `Connection.client`), so that is where it goes. Only the local stack does this.
    """
    for model in models:
        client = model._get_connection().connection.client
        client._request_signer._credentials = credentials
