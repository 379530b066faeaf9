"""Where every PynamoDB table lives: the region and endpoint from Settings, on-demand billing.

Each model's `Meta` inherits this and names only its table, so the emulator endpoint and the region
are decided in one place (DESIGN.md section 2: the same code locally and in AWS).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chalicelib.config import settings

__all__ = ["TableMeta", "sign_tables_with"]


class TableMeta:
    """The base of every model's `Meta`."""

    region = settings().region
    host = settings().aws_endpoint_url
    billing_mode = "PAY_PER_REQUEST"


def sign_tables_with(models: Iterable[Any], credentials: Any) -> None:
    """Make `models` sign every request with `credentials` (chalicelib/credentials.py's, asked per request).

    PynamoDB builds one botocore client per model from a session of its own and offers no way to hand it
    a credentials provider; its client keeps the provider on its request signer (which PynamoDB itself
    inspects, `Connection.client`), so that is where it goes. Only the local stack does this.
    """
    for model in models:
        client = model._get_connection().connection.client
        client._request_signer._credentials = credentials
