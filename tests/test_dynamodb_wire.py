"""The reader's wire protocol without the emulator: SigV4 against AWS's published test-suite vectors and
against botocore's own signer, retries of throttling and 5xx as botocore's standard mode makes them,
pagination, and errors in the project's tree (chalicelib/dynamodb).

The vectors are AWS's SigV4 test suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html):
credentials AKIDEXAMPLE, region us-east-1, service `service`, 20150830T123600Z. The HTTP server is a real
one on loopback that answers what DynamoDB answers (status, `__type`, x-amz-crc32), one scripted answer
per request, and keeps what it received.
"""

from __future__ import annotations

import contextlib
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from chalicelib.dynamodb import (
    MAX_ATTEMPTS,
    QUOTA_CAPACITY,
    Credentials,
    DynamoDbClient,
    DynamoDbError,
    HttpAnswer,
    RetryQuota,
    authorization,
)
from chalicelib.errors import InfraError

SUITE: Final = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_DATE: Final = "20150830T123600Z"
HOST: Final = "example.amazonaws.com"


def _suite(
    method: str, headers: dict[str, str], *, query: dict[str, str] | None = None, body: bytes = b""
) -> str:
    return authorization(
        method=method,
        path="/",
        query=query or {},
        headers={"Host": HOST, "X-Amz-Date": SUITE_DATE, **headers},
        payload=body,
        credentials=SUITE,
        region="us-east-1",
        service="service",
        amz_date=SUITE_DATE,
    )


def _expect(signed: str, signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def test_get_vanilla() -> None:
    assert _suite("GET", {}) == _expect(
        "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_post_vanilla() -> None:
    assert _suite("POST", {}) == _expect(
        "host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    )


def test_post_x_www_form_urlencoded() -> None:
    got = _suite("POST", {"Content-Type": "application/x-www-form-urlencoded"}, body=b"Param1=value1")
    assert got == _expect(
        "content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
    )


def test_get_vanilla_query_order_key_case() -> None:
    got = _suite("GET", {}, query={"Param2": "value2", "Param1": "value1"})
    assert got == _expect(
        "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    )


def test_get_header_value_trim() -> None:
    got = _suite("GET", {"My-Header1": " value1", "My-Header2": ' "a   b   c"'})
    assert got == _expect(
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    )


def test_a_wrong_secret_gives_another_signature() -> None:
    wrong = Credentials(SUITE.access_key, SUITE.secret_key[:-1] + "X")
    got = authorization(
        method="GET",
        path="/",
        query={},
        headers={"Host": HOST, "X-Amz-Date": SUITE_DATE},
        payload=b"",
        credentials=wrong,
        region="us-east-1",
        service="service",
        amz_date=SUITE_DATE,
    )
    assert got != _suite("GET", {})


class Scripted(ThreadingHTTPServer):
    """A loopback DynamoDB stand-in: answers `script` in order and records each request."""

    def __init__(self, script: list[tuple[int, dict[str, Any], bool]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.received: list[tuple[dict[str, str], bytes]] = []
        # Close each connection after its answer without saying so, as a server does to an idle one.
        self.drop_silently = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Scripted
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k: v for k, v in self.headers.items()}, body))
        status, answer, good_crc = self.server.script.pop(0)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amz-crc32", str(zlib.crc32(data) if good_crc else zlib.crc32(data) + 1))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = self.server.drop_silently

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Scripted] = []

    def start(*script: tuple[int, dict[str, Any], bool]) -> Scripted:
        server = Scripted(list(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


KEYS: Final = Credentials("AKIAREADER", "reader-secret", "reader-session-token")
ITEM: Final = {"tenant_id": {"S": "1"}, "region": {"S": "us-east-1"}}
THROTTLED: Final = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}


def _reader(server: Scripted, delays: list[float]) -> DynamoDbClient:
    return DynamoDbClient(
        region="eu-west-1",
        endpoint_url=server.url,
        credentials=lambda: KEYS,
        sleep=delays.append,
        jitter=lambda: 0.5,
    )


def test_a_request_is_signed_as_botocore_signs_it(serve: Any) -> None:
    server = serve((200, {"Item": ITEM}, True))
    assert _reader(server, []).get_item("t", {"tenant_id": {"S": "1"}}, consistent=True) == ITEM
    headers, body = server.received[0]
    assert headers["X-Amz-Target"] == "DynamoDB_20120810.GetItem"
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["X-Amz-Security-Token"] == KEYS.token
    assert json.loads(body) == {"TableName": "t", "Key": {"tenant_id": {"S": "1"}}, "ConsistentRead": True}
    # As a verifying server does: botocore's signer, over the headers the request says it signed, at its
    # X-Amz-Date, computes the same signature.
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == ["content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target"]
    kept = {k: v for k, v in headers.items() if k.lower() in signed}
    request = AWSRequest(method="POST", url=server.url + "/", data=body, headers=kept)
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(BotoCredentials(*KEYS), "dynamodb", "eu-west-1")
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    assert headers["Authorization"].endswith("Signature=" + signer.signature(string_to_sign, request))


def test_throttling_is_retried_after_a_backoff(serve: Any) -> None:
    server = serve((400, THROTTLED, True), (200, {"Item": ITEM}, True))
    delays: list[float] = []
    assert _reader(server, delays).get_item("t", {"tenant_id": {"S": "1"}}, consistent=True) == ITEM
    assert delays == [0.5]  # full jitter: random() * 2 ** 0
    assert len(server.received) == 2


def test_5xx_and_a_bad_checksum_are_retried_with_growing_backoff(serve: Any) -> None:
    server = serve(
        (500, {"__type": "InternalServerError", "message": "boom"}, True),
        (503, {}, True),
        (200, {"Item": ITEM}, False),
        (200, {"Item": ITEM}, True),
    )
    delays: list[float] = []
    assert _reader(server, delays).get_item("t", {"tenant_id": {"S": "1"}}, consistent=True) == ITEM
    assert delays == [0.5, 1.0, 2.0]


def test_retries_stop_after_botocores_attempts_with_the_services_error(serve: Any) -> None:
    server = serve(*[(400, THROTTLED, True)] * MAX_ATTEMPTS)
    delays: list[float] = []
    with pytest.raises(DynamoDbError) as caught:
        _reader(server, delays).get_item("t", {"tenant_id": {"S": "1"}}, consistent=True)
    assert caught.value.code == "ProvisionedThroughputExceededException"
    assert isinstance(caught.value, InfraError)  # the user reads the generic apology
    assert len(server.received) == MAX_ATTEMPTS
    assert len(delays) == MAX_ATTEMPTS - 1


def test_a_refusal_is_not_retried(serve: Any) -> None:
    refused = {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad key"}
    server = serve((400, refused, True))
    delays: list[float] = []
    with pytest.raises(DynamoDbError) as caught:
        _reader(server, delays).get_item("t", {"tenant_id": {"S": "1"}}, consistent=True)
    assert (caught.value.code, caught.value.service_message, caught.value.status) == (
        "ValidationException",
        "bad key",
        400,
    )
    assert delays == []


def test_a_query_reads_every_page(serve: Any) -> None:
    row = {"tenant_id": {"S": "1"}, "name": {"S": "a"}}
    last = {"tenant_id": {"S": "1"}, "name": {"S": "a"}}
    server = serve(
        (200, {"Items": [row], "Count": 1, "LastEvaluatedKey": last}, True),
        (200, {"Items": [{**row, "name": {"S": "b"}}], "Count": 1}, True),
    )
    got = list(
        _reader(server, []).query(
            "games",
            key_condition="#0 = :0",
            names={"#0": "tenant_id"},
            values={":0": {"S": "1"}},
            consistent=True,
        )
    )
    assert [g["name"] for g in got] == [{"S": "a"}, {"S": "b"}]
    first, second = (json.loads(body) for _, body in server.received)
    assert "ExclusiveStartKey" not in first and first["ConsistentRead"] is True
    assert second["ExclusiveStartKey"] == last


def test_an_unreachable_endpoint_is_an_infra_error_after_retries() -> None:
    server = Scripted([])
    url = server.url
    server.server_close()  # nothing listens there now
    delays: list[float] = []
    reader = DynamoDbClient(
        region="eu-west-1",
        endpoint_url=url,
        credentials=lambda: KEYS,
        sleep=delays.append,
        jitter=lambda: 0.5,
    )
    with pytest.raises(DynamoDbError) as caught:
        reader.get_item("t", {"tenant_id": {"S": "1"}}, consistent=True)
    assert caught.value.code == "ConnectionError"
    assert len(delays) == MAX_ATTEMPTS - 1


def test_a_connection_the_server_dropped_while_idle_is_replaced_without_a_backoff(serve: Any) -> None:
    server = serve((200, {"Item": ITEM}, True), (200, {"Item": ITEM}, True))
    server.drop_silently = True
    delays: list[float] = []
    reader = _reader(server, delays)
    key = {"tenant_id": {"S": "1"}}
    assert reader.get_item("t", key, consistent=True) == ITEM
    assert reader.get_item("t", key, consistent=True) == ITEM  # its kept connection is gone by now
    assert delays == []
    assert len(server.received) == 2


def test_a_limited_query_stops_at_its_limit_across_pages(serve: Any) -> None:
    row = {"tenant_id": {"S": "1"}, "name": {"S": "a"}}
    server = serve(
        (200, {"Items": [row], "Count": 1, "LastEvaluatedKey": row}, True),
        (
            200,
            {"Items": [{**row, "name": {"S": "b"}}, {**row, "name": {"S": "c"}}], "LastEvaluatedKey": row},
            True,
        ),
    )
    got = _reader(server, []).query(
        "games",
        key_condition="#0 = :0",
        names={"#0": "tenant_id"},
        values={":0": {"S": "1"}},
        consistent=False,
        limit=2,
        projection=("name",),
    )
    assert [g["name"] for g in got] == [{"S": "a"}, {"S": "b"}]
    assert len(server.received) == 2  # the limit reached: no third page asked for
    first = json.loads(server.received[0][1])
    assert (first["Limit"], first["ProjectionExpression"]) == (2, "#p0")
    assert first["ExpressionAttributeNames"] == {"#0": "tenant_id", "#p0": "name"}


class _Recorded:
    """A Tracer (chalicelib/tracing.py's interface) that keeps the spans opened through it."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, dict[str, object]]] = []

    @contextlib.contextmanager
    def segment(self, name: str, trace_header: str | None = None) -> Iterator[Any]:
        with self.span(name) as span:
            yield span

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[Any]:
        notes: dict[str, object] = {}
        self.spans.append((name, notes))
        yield _Notes(notes)

    def trace_header(self) -> str | None:
        return None


class _Notes:
    def __init__(self, notes: dict[str, object]) -> None:
        self._notes = notes

    def annotate(self, key: str, value: str | int | bool) -> None:
        self._notes[key] = value


def test_each_operation_is_one_traced_span_retries_included(serve: Any) -> None:
    server = serve((400, THROTTLED, True), (200, {"Item": ITEM}, True))
    tracer = _Recorded()
    reader = DynamoDbClient(
        region="eu-west-1",
        endpoint_url=server.url,
        credentials=lambda: KEYS,
        sleep=lambda _: None,
        tracer=tracer,
    )
    reader.get_item("gangway-tenants", {"tenant_id": {"S": "1"}}, consistent=True)
    assert tracer.spans == [("DynamoDB.GetItem", {"table": "gangway-tenants"})]


def test_retries_stop_when_the_retry_quota_is_spent_and_successes_refill_it(serve: Any) -> None:
    server = serve((400, THROTTLED, True), (400, THROTTLED, True))
    quota = RetryQuota(capacity=5)  # one retry's worth (botocore: 500, 5 a retry)
    delays: list[float] = []
    reader = DynamoDbClient(
        region="eu-west-1",
        endpoint_url=server.url,
        credentials=lambda: KEYS,
        sleep=delays.append,
        jitter=lambda: 0.5,
        quota=quota,
    )
    with pytest.raises(DynamoDbError):
        reader.get_item("t", {"tenant_id": {"S": "1"}}, consistent=True)
    assert len(server.received) == 2 and delays == [0.5]  # one retry, then the quota said no
    assert quota.available == 0
    server.script.extend([(200, {"Item": ITEM}, True)])
    reader.get_item("t", {"tenant_id": {"S": "1"}}, consistent=True)
    assert quota.available == 1  # a success without retries gives back 1


def test_a_timeout_costs_the_quota_twice_a_throttle() -> None:
    answers: list[Exception | HttpAnswer] = [
        TimeoutError("read timed out"),
        HttpAnswer(200, {}, json.dumps({"Item": ITEM}).encode()),
    ]

    def flaky(url: str, headers: Any, body: bytes) -> HttpAnswer:
        got = answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    quota = RetryQuota()
    costs: list[int] = []
    reader = DynamoDbClient(
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        credentials=lambda: KEYS,
        transport=flaky,
        sleep=lambda _: costs.append(QUOTA_CAPACITY - quota.available),
        jitter=lambda: 0.5,
        quota=quota,
    )
    assert reader.get_item("t", {"tenant_id": {"S": "1"}}, consistent=True) == ITEM
    assert costs == [10]  # taken for the retry after the timeout
    assert quota.available == QUOTA_CAPACITY  # and given back by its success
