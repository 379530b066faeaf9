"""Log shipping: batches to a file, and the CloudWatch shipper's batching through a stand-in client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gangway_agent.config import LogConfig, LogSinkKind
from gangway_agent.errors import ConfigError
from gangway_agent.logsink import BatchingSink, CloudWatchShipper, FileShipper, LogLine, NullSink, build_sink


class AlreadyExists(Exception):
    pass


class NotFound(Exception):
    pass


class FakeLogsClient:
    """The three CloudWatch Logs calls the shipper makes, recorded."""

    class exceptions:
        """Mirrors botocore's ``client.exceptions`` (hence the lower-case name)."""

        ResourceAlreadyExistsException = AlreadyExists
        ResourceNotFoundException = NotFound

    def __init__(self, *, groups: tuple[str, ...] = ()) -> None:
        self.groups = set(groups)
        self.group_calls = 0
        self.created: list[str] = []
        self.puts: list[list[dict[str, Any]]] = []

    def create_log_group(self, logGroupName: str) -> None:
        self.group_calls += 1
        if logGroupName in self.groups:
            raise AlreadyExists(logGroupName)
        self.groups.add(logGroupName)
        self.created.append(logGroupName)

    def create_log_stream(self, logGroupName: str, logStreamName: str) -> None:
        if logGroupName not in self.groups:
            raise NotFound(logGroupName)
        self.created.append(f"{logGroupName}:{logStreamName}")

    def put_log_events(self, logGroupName: str, logStreamName: str, logEvents: list[dict[str, Any]]) -> None:
        self.puts.append(logEvents)


def test_cloudwatch_batches_respect_the_api_limits() -> None:
    client = FakeLogsClient()
    shipper = CloudWatchShipper("gangway/t1/alpha", "alpha-1", client=client)
    assert client.created == ["gangway/t1/alpha", "gangway/t1/alpha:alpha-1"]  # no group yet: made
    lines = [LogLine(1000.0 + i, "stdout", "" if i == 0 else "x" * 100) for i in range(12_000)]
    shipper.ship(lines)
    assert len(client.puts) == 2 and sum(len(p) for p in client.puts) == 12_000
    for put in client.puts:  # the API's limits: 10 000 events and 1 MB (26 bytes each extra) per call
        assert len(put) <= 10_000 and sum(len(e["message"]) + 26 for e in put) <= 1_000_000
    assert client.puts[0][0] == {"timestamp": 1_000_000, "message": "stdout  "}
    assert [e["timestamp"] for p in client.puts for e in p] == [1_000_000 + 1000 * i for i in range(12_000)]


def test_cloudwatch_makes_only_its_stream_when_the_group_exists() -> None:
    client = FakeLogsClient(groups=("gangway/t1/alpha",))
    CloudWatchShipper("gangway/t1/alpha", "alpha-2", client=client)
    assert client.created == ["gangway/t1/alpha:alpha-2"] and client.group_calls == 0


def test_file_sink_batches_and_flushes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "game.log"
    sink = BatchingSink(FileShipper(path), batch_lines=3, flush_interval_s=60)
    for n in range(3):
        sink.write("stdout", f"line {n}")
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.read_text().count("\n") == 3  # a full batch goes out without waiting for the interval
    sink.write("stderr", "last words")
    sink.close()
    assert path.read_text().splitlines()[-1].endswith("Z stderr last words")


def test_build_sink() -> None:
    assert isinstance(build_sink(LogConfig(sink=LogSinkKind.NONE), "s"), NullSink)
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"\[cloudwatch\] extra"):
            build_sink(LogConfig(sink=LogSinkKind.CLOUDWATCH, group="g"), "s")
