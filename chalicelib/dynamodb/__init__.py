"""A botocore-free DynamoDB client for a cold command (docs/performance.md): SigV4, GetItem, Query, and
the jobs ledger's conditional writes."""

from __future__ import annotations

from chalicelib.dynamodb.client import (
    CONDITION_FAILED,
    Condition,
    DynamoDbClient,
    DynamoDbError,
    default_endpoint,
)
from chalicelib.dynamodb.retries import MAX_ATTEMPTS, QUOTA_CAPACITY, THROTTLING_CODES, RetryQuota
from chalicelib.dynamodb.sigv4 import Credentials, authorization, signed_headers
from chalicelib.dynamodb.transport import HttpAnswer, Transport, http_transport
from chalicelib.dynamodb.values import AttributeValue, Item, MalformedItem

__all__ = [
    "CONDITION_FAILED",
    "MAX_ATTEMPTS",
    "QUOTA_CAPACITY",
    "THROTTLING_CODES",
    "AttributeValue",
    "Condition",
    "Credentials",
    "DynamoDbClient",
    "DynamoDbError",
    "HttpAnswer",
    "Item",
    "MalformedItem",
    "RetryQuota",
    "Transport",
    "authorization",
    "default_endpoint",
    "http_transport",
    "signed_headers",
]
