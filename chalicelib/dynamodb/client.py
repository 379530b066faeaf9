"""A small DynamoDB client for what a cold command does: GetItem and Query, and the jobs ledger's writes.

Why: importing botocore costs about half of the cold-start budget of a member's first command
(docs/performance.md), and the first `/games` or `/status` needs only a tenant's row and its games (and
the jobs function one ledger row: PutItem, UpdateItem, DeleteItem with conditions). This
speaks the same protocol botocore does (AWS JSON 1.0, `X-Amz-Target: DynamoDB_20120810.<Operation>`,
SigV4-signed, chalicelib/dynamodb/sigv4.py) with botocore's standard-mode retries as PynamoDB configures
them (4 attempts; throttling, 5xx and broken connections retried after a full-jitter exponential backoff)
and the CRC32 check of every response body botocore makes for DynamoDB. Every failure is a
`DynamoDbError` (an InfraError: the user reads the generic apology, the log the service's words).
Every other write stays on PynamoDB.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

from chalicelib.dynamodb.sigv4 import Credentials, signed_headers
from chalicelib.dynamodb.values import AttributeValue, Item
from chalicelib.errors import InfraError
from chalicelib.tracing import NullTracer, Tracer

__all__ = [
    "CONDITION_FAILED",
    "MAX_ATTEMPTS",
    "THROTTLING_CODES",
    "Condition",
    "DynamoDbClient",
    "DynamoDbError",
    "HttpAnswer",
    "Transport",
    "default_endpoint",
    "http_transport",
]

log = logging.getLogger(__name__)

SERVICE: Final = "dynamodb"
TARGET_PREFIX: Final = "DynamoDB_20120810."
CONTENT_TYPE: Final = "application/x-amz-json-1.0"
HTTP_OK: Final = 200
# PynamoDB's default: 1 + max_retry_attempts (3), in botocore's standard retry mode.
MAX_ATTEMPTS: Final = 4
# botocore's standard mode: the backoff is random() * 2 ** (retry - 1) seconds, at most 20.
MAX_BACKOFF: Final = 20.0
# PynamoDB's defaults for its botocore client.
CONNECT_TIMEOUT: Final = 15.0
READ_TIMEOUT: Final = 30.0
# What botocore's standard mode retries (botocore/retries/standard.py).
THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES: Final = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
TRANSIENT_STATUSES: Final = frozenset({500, 502, 503, 504})
# The error a refused condition gives (not retried: the caller decides).
CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_CRC_HEADER: Final = "x-amz-crc32"
_USER_AGENT: Final = "gangway-dynamodb-reader/1"
_MALFORMED: Final = "MalformedResponse"


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP response: status, headers (names lowercased) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one POST; raises OSError (or http.client.HTTPException) when the connection fails."""

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer: ...


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


class _Connections(threading.local):
    """One kept-alive connection per thread and host: a warm container reuses its TLS session."""

    def __init__(self) -> None:
        self.open: dict[str, http.client.HTTPConnection] = {}


_CONNECTIONS: Final = _Connections()


def http_transport(url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer:
    """POST with http.client (urllib.request would import far more), reusing the thread's connection.

    A kept connection the server closed while the container sat idle fails at once on reuse; that is
    sent again on a new connection straight away (as urllib3 replaces a dropped pooled connection), not
    counted as an attempt: the first command after a quiet spell must not wait a backoff for it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"DynamoDB endpoint must be http or https, not {url!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    conn = _CONNECTIONS.open.get(origin)
    if conn is not None:
        try:
            return _post(conn, origin, parts.path, headers, body)
        except _STALE:
            pass  # closed by the server while idle: a fresh connection below
    factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = factory(parts.netloc, timeout=CONNECT_TIMEOUT)
    _CONNECTIONS.open[origin] = conn
    return _post(conn, origin, parts.path, headers, body)


# What reusing a connection the server has closed raises before any answer arrives.
_STALE: Final = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def _post(
    conn: http.client.HTTPConnection, origin: str, path: str, headers: Mapping[str, str], body: bytes
) -> HttpAnswer:
    try:
        if conn.sock is None:
            conn.connect()
            _read_timeout(conn)
        conn.request("POST", path or "/", body=body, headers=dict(headers))
        resp = conn.getresponse()
        data = resp.read()
        answer = HttpAnswer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    except (OSError, http.client.HTTPException):
        conn.close()
        _CONNECTIONS.open.pop(origin, None)
        raise
    if resp.will_close:
        conn.close()
        _CONNECTIONS.open.pop(origin, None)
    return answer


def _read_timeout(conn: http.client.HTTPConnection) -> None:
    """Connecting may take CONNECT_TIMEOUT; each read afterwards READ_TIMEOUT (PynamoDB's two limits)."""
    if conn.sock is not None:
        conn.sock.settimeout(READ_TIMEOUT)


class _Retryable(Exception):
    """An attempt that botocore's standard mode would retry."""

    def __init__(self, error: DynamoDbError) -> None:
        super().__init__(error.message)
        self.error = error


class DynamoDbClient:
    """GetItem and Query against one region's DynamoDB, signed with whatever `credentials` answer now."""

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
    ) -> None:
        """`tracer`: each operation is a span (`DynamoDB.<Operation>`, annotated with the table), as the
        X-Ray SDK's boto3 patch makes each botocore call a subsegment."""
        self._tracer: Tracer = tracer or NullTracer()
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
        attempt = 1
        while True:
            try:
                return self._attempt(operation, body)
            except _Retryable as retry:
                if attempt >= self._max_attempts:
                    raise retry.error from None
                delay = min(self._jitter() * 2 ** (attempt - 1), MAX_BACKOFF)
                log.info("DynamoDB %s: %s; retry %d in %.2f s", operation, retry.error.code, attempt, delay)
                self._sleep(delay)
                attempt += 1

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
        if (
            answer.status in TRANSIENT_STATUSES
            or error.code in THROTTLING_CODES
            or error.code in TRANSIENT_CODES
        ):
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
