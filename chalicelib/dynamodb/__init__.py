"""A botocore-free DynamoDB reader for the interaction path (docs/performance.md): SigV4, GetItem, Query."""

from __future__ import annotations

from chalicelib.dynamodb.client import (
    MAX_ATTEMPTS,
    THROTTLING_CODES,
    DynamoDbError,
    DynamoDbReader,
    HttpAnswer,
    Transport,
    default_endpoint,
    http_transport,
)
from chalicelib.dynamodb.sigv4 import Credentials, authorization, signed_headers
from chalicelib.dynamodb.values import AttributeValue, Item, MalformedItem

__all__ = [
    "MAX_ATTEMPTS",
    "THROTTLING_CODES",
    "AttributeValue",
    "Credentials",
    "DynamoDbError",
    "DynamoDbReader",
    "HttpAnswer",
    "Item",
    "MalformedItem",
    "Transport",
    "authorization",
    "default_endpoint",
    "http_transport",
    "signed_headers",
]
