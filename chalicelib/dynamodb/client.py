"""A small DynamoDB client for what a cold command does: GetItem and Query, and the jobs ledger's writes.

Why: importing botocore costs about half of the cold-start budget of a member's first command
(docs/performance.md), and the first `/games` or `/status` needs only a tenant's row and its games (and
the jobs function one ledger row: PutItem, UpdateItem, DeleteItem with conditions). This speaks the
protocol botocore speaks (AWS JSON 1.0, `X-Amz-Target: DynamoDB_20120810.<Operation>`, signed by
sigv4.py), retries as botocore's standard mode with PynamoDB's settings (retries.py), checks the CRC32
of every response body as botocore does for DynamoDB, and travels over http.client (transport.py).
Every failure is a `DynamoDbError` (an InfraError: the user reads the generic apology, the log the
service's words). Every other write stays on PynamoDB.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from chalicelib.dynamodb.retries import MAX_ATTEMPTS, RetryQuota, backoff, retryable
from chalicelib.dynamodb.sigv4 import Credentials, signed_headers
from chalicelib.dynamodb.transport import Transport, http_transport
from chalicelib.dynamodb.values import AttributeValue, Item
from chalicelib.errors import InfraError
from chalicelib.tracing import NullTracer, Tracer

__all__ = ["CONDITION_FAILED", "Condition", "DynamoDbClient", "DynamoDbError", "default_endpoint"]

log = logging.getLogger(__name__)

SERVICE: Final = "dynamodb"
TARGET_PREFIX: Final = "DynamoDB_20120810."
CONTENT_TYPE: Final = "application/x-amz-json-1.0"
HTTP_OK: Final = 200
# The error a refused condition gives (not retried: the caller decides).
CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_CRC_HEADER: Final = "x-amz-crc32"
_USER_AGENT: Final = "gangway-dynamodb-reader/1"
_MALFORMED: Final = "MalformedResponse"


@dataclass(frozen=True)
class Condition:
    """A condition (or update) expression with its placeholders' names and values."""

    expression: str
    names: Mapping[str, str]
    values: Mapping[str, AttributeValue]


class DynamoDbError(InfraError):
    """DynamoDB refused a read or could not be reached; `code` is its error type (e.g.
    AccessDeniedException, ResourceNotFoundException), as botocore's ClientError names it."""

    def __init__(self, operation: str, code: str, message: str, status: int | None) -> None:
        super().__init__(f"DynamoDB {operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.status = status
        self.service_message = message


def default_endpoint(region: str) -> str:
    """DynamoDB's public endpoint in `region` (botocore's for the aws partition)."""
    return f"https://dynamodb.{region}.amazonaws.com"


class _Retryable(Exception):
    """An attempt that botocore's standard mode would retry (a timeout costs the quota more)."""

    def __init__(self, error: DynamoDbError, *, timeout: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.timeout = timeout


class DynamoDbClient:
    """GetItem, Query and conditional item writes against one region's DynamoDB, signed with whatever
    `credentials` answer now."""

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None,
        credentials: Callable[[], Credentials],
        transport: Transport = http_transport,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
        quota: RetryQuota | None = None,
    ) -> None:
        """`tracer`: each operation is a span (`DynamoDB.<Operation>`, annotated with the table), as the
        X-Ray SDK's boto3 patch makes each botocore call a subsegment. `quota`: the retry quota this
        client's calls share (retries.py; botocore keeps one per client)."""
        self._tracer: Tracer = tracer or NullTracer()
        self._quota = quota or RetryQuota()
        self._region = region
        self._url = (endpoint_url or default_endpoint(region)).rstrip("/") + "/"
        parts = urlsplit(self._url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a DynamoDB endpoint URL: {self._url!r}")
        self._host = parts.netloc
        self._path = parts.path or "/"
        self._credentials = credentials
        self._transport = transport
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._observers: list[Callable[[str, Mapping[str, object]], None]] = []

    def observe(self, observer: Callable[[str, Mapping[str, object]], None]) -> None:
        """Call `observer(operation, request)` once per operation, before its first attempt (as botocore's
        `before-parameter-build` event: bench/interaction_cost.py counts AWS calls with both)."""
        self._observers.append(observer)

    def get_item(self, table: str, key: Item, *, consistent: bool) -> Item | None:
        """The item with primary key `key`, or None if there is none."""
        out = self._call("GetItem", {"TableName": table, "Key": key, "ConsistentRead": consistent})
        item = out.get("Item")
        if item is None:
            return None
        return _item(item)

    def query(
        self,
        table: str,
        *,
        key_condition: str,
        names: Mapping[str, str],
        values: Mapping[str, AttributeValue],
        consistent: bool,
        limit: int | None = None,
        projection: Sequence[str] = (),
    ) -> Iterator[Item]:
        """The items the key condition selects, page after page (LastEvaluatedKey): every one, or the first
        `limit` (also each page's size, as PynamoDB asks); `projection` names the attributes to return."""
        request: dict[str, object] = {
            "TableName": table,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeNames": dict(names),
            "ExpressionAttributeValues": dict(values),
            "ConsistentRead": consistent,
        }
        if projection:
            placeholders = {f"#p{i}": attr for i, attr in enumerate(projection)}
            request["ProjectionExpression"] = ", ".join(placeholders)
            request["ExpressionAttributeNames"] = {**names, **placeholders}
        if limit is not None:
            request["Limit"] = limit
        left = limit
        while left is None or left > 0:
            out = self._call("Query", request)
            items = out.get("Items")
            if not isinstance(items, list):
                raise DynamoDbError("Query", _MALFORMED, "the answer has no Items list", HTTP_OK)
            for item in items[:left]:
                yield _item(item)
            if left is not None:
                left -= min(left, len(items))
            last = out.get("LastEvaluatedKey")
            if last is None:
                return
            request = {**request, "ExclusiveStartKey": _item(last)}

    def put_item(self, table: str, item: Item, *, condition: Condition) -> None:
        """Write `item` if `condition` holds; DynamoDbError with code CONDITION_FAILED if not."""
        self._call(
            "PutItem", {"TableName": table, "Item": dict(item), **_expressions("Condition", condition)}
        )

    def update_item(
        self, table: str, key: Item, *, update: Condition, condition: Condition | None = None
    ) -> None:
        """Apply `update` (an UpdateExpression) to the item at `key`, if `condition` holds."""
        request = {"TableName": table, "Key": dict(key), **_expressions("Update", update)}
        if condition is not None:
            request = _merged(request, "Condition", condition)
        self._call("UpdateItem", request)

    def delete_item(self, table: str, key: Item, *, condition: Condition) -> None:
        """Delete the item at `key` if `condition` holds."""
        self._call(
            "DeleteItem", {"TableName": table, "Key": dict(key), **_expressions("Condition", condition)}
        )

    def _call(self, operation: str, request: Mapping[str, object]) -> Mapping[str, object]:
        """One operation, retried as botocore's standard mode retries it."""
        for observer in self._observers:
            observer(operation, request)
        with self._tracer.span(f"DynamoDB.{operation}") as span:
            table = request.get("TableName")
            span.annotate("table", table if isinstance(table, str) else "")
            return self._retried(operation, request)

    def _retried(self, operation: str, request: Mapping[str, object]) -> Mapping[str, object]:
        body = json.dumps(request, separators=(",", ":")).encode()
        attempt, last_cost = 1, None
        while True:
            try:
                answer = self._attempt(operation, body)
            except _Retryable as retry:
                cost = self._quota.acquire(timeout=retry.timeout) if attempt < self._max_attempts else None
                if cost is None:
                    raise retry.error from None
                last_cost = cost
                delay = backoff(attempt, self._jitter)
                log.info("DynamoDB %s: %s; retry %d in %.2f s", operation, retry.error.code, attempt, delay)
                self._sleep(delay)
                attempt += 1
                continue
            self._quota.release(last_cost)
            return answer

    def _attempt(self, operation: str, body: bytes) -> Mapping[str, object]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        headers = signed_headers(
            host=self._host,
            path=self._path,
            headers={
                "Content-Type": CONTENT_TYPE,
                "X-Amz-Target": TARGET_PREFIX + operation,
                "User-Agent": _USER_AGENT,
            },
            payload=body,
            credentials=self._credentials(),
            region=self._region,
            service=SERVICE,
            amz_date=amz_date,
        )
        try:
            answer = self._transport(self._url, headers, body)
        except TimeoutError as exc:
            raise _Retryable(DynamoDbError(operation, "Timeout", str(exc), None), timeout=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(DynamoDbError(operation, "ConnectionError", str(exc), None)) from exc
        crc = answer.headers.get(_CRC_HEADER)
        if crc is not None and crc.strip() != str(zlib.crc32(answer.body)):
            raise _Retryable(DynamoDbError(operation, "CRC32Mismatch", "the body's checksum is wrong", None))
        parsed = _json_object(answer.body)
        if answer.status == HTTP_OK:
            if parsed is None:
                raise DynamoDbError(operation, _MALFORMED, "the answer is not a JSON object", HTTP_OK)
            return parsed
        error = _error(operation, answer.status, parsed, answer.body)
        if retryable(answer.status, error.code):
            raise _Retryable(error)
        raise error


def _expressions(kind: str, expression: Condition) -> dict[str, object]:
    """`kind`Expression with its names and values, as the request's members (DynamoDB refuses empty
    maps of either)."""
    out: dict[str, object] = {f"{kind}Expression": expression.expression}
    if expression.names:
        out["ExpressionAttributeNames"] = dict(expression.names)
    if expression.values:
        out["ExpressionAttributeValues"] = dict(expression.values)
    return out


def _merged(request: Mapping[str, object], kind: str, expression: Condition) -> dict[str, object]:
    """`request` with a second expression whose placeholders join the first's (they must not clash)."""
    names = {**_mapping(request.get("ExpressionAttributeNames")), **expression.names}
    values = {**_mapping(request.get("ExpressionAttributeValues")), **expression.values}
    out = {**request, f"{kind}Expression": expression.expression}
    if names:
        out["ExpressionAttributeNames"] = names
    if values:
        out["ExpressionAttributeValues"] = values
    return out


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _error(operation: str, status: int, parsed: Mapping[str, object] | None, body: bytes) -> DynamoDbError:
    """The error as botocore's JSON parser names it: the `__type` after its namespace (else the HTTP
    status), and `message` (else the body itself, when it is no JSON object)."""
    data: Mapping[str, object] = (
        parsed if parsed is not None else {"message": body.decode("utf-8", "replace")}
    )
    kind = data.get("__type")
    code = kind.rpartition("#")[2] if isinstance(kind, str) else str(status)
    message = data.get("message", data.get("Message", ""))
    return DynamoDbError(operation, code, message if isinstance(message, str) else "", status)


def _item(raw: object) -> Item:
    """An item map, checked to be attribute name → attribute value maps."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise DynamoDbError("decode", _MALFORMED, "an item is not a map of attribute values", HTTP_OK)
    return raw
