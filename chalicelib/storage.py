"""Where every PynamoDB table lives: the region and endpoint from Settings, on-demand billing.

Each model's `Meta` inherits this and names only its table, so the emulator endpoint and the region
are decided in one place (DESIGN.md section 2: the same code locally and in AWS).
"""

from __future__ import annotations

from chalicelib.config import settings

__all__ = ["TableMeta"]


class TableMeta:
    """The base of every model's `Meta`."""

    region = settings().region
    host = settings().aws_endpoint_url
    billing_mode = "PAY_PER_REQUEST"
