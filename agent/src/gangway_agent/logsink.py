"""Shipping the game's stdout/stderr in batches: a file locally, CloudWatch Logs in AWS.

Lines go into a bounded buffer (the oldest are dropped when the shipper cannot keep up, so a
chatty game never grows the agent's memory) and a thread ships them every ``flush_interval_s``
or as soon as ``batch_lines`` are waiting. boto3 is imported only when a CloudWatch sink is built.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from .config import LogConfig, LogSinkKind
from .errors import ConfigError

log = logging.getLogger(__name__)

_BUFFER_LINES: Final = 10_000
_CW_MAX_EVENTS: Final = 10_000
_CW_MAX_BYTES: Final = 1_000_000


@dataclass(frozen=True)
class LogLine:
    at: float
    stream: str
    text: str


class Shipper(Protocol):
    """Delivers one batch of lines somewhere durable."""

    def ship(self, batch: list[LogLine]) -> None: ...


class FileShipper:
    """Appends ``<iso time> <stream> <line>`` to a local file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def ship(self, batch: list[LogLine]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for line in batch:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(line.at))
                fh.write(f"{stamp}Z {line.stream} {line.text}\n")


class CloudWatchShipper:
    """PutLogEvents into ``group``, one stream per agent start (no sequence tokens needed any more).

    The group is normally made (with its retention) by whoever launched the instance, so the stream is
    made first and the group only when it is missing: a role allowed just CreateLogStream and
    PutLogEvents on the group is enough.
    """

    def __init__(self, group: str, stream: str, client: Any = None) -> None:
        if client is None:
            try:
                import boto3  # only hosts that ship to CloudWatch pay for importing boto3
            except ImportError as exc:
                raise ConfigError("logs.sink = cloudwatch needs the [cloudwatch] extra (boto3)") from exc
            client = boto3.client("logs")
        self._client: Any = client
        self.group, self.stream = group, stream
        exists = self._client.exceptions.ResourceAlreadyExistsException
        try:
            with contextlib.suppress(exists):
                self._client.create_log_stream(logGroupName=group, logStreamName=stream)
        except self._client.exceptions.ResourceNotFoundException:
            with contextlib.suppress(exists):
                self._client.create_log_group(logGroupName=group)
            with contextlib.suppress(exists):
                self._client.create_log_stream(logGroupName=group, logStreamName=stream)

    def ship(self, batch: list[LogLine]) -> None:
        events: list[dict[str, Any]] = []
        size = 0
        for line in batch:
            message = f"{line.stream} {line.text or ' '}"
            # PutLogEvents counts 26 bytes of overhead per event (CloudWatch Logs quotas).
            cost = len(message.encode()) + 26
            if len(events) >= _CW_MAX_EVENTS or size + cost > _CW_MAX_BYTES:
                self._put(events)
                events, size = [], 0
            events.append({"timestamp": int(line.at * 1000), "message": message})
            size += cost
        if events:
            self._put(events)

    def _put(self, events: list[dict[str, Any]]) -> None:
        self._client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)


class BatchingSink:
    """Buffers lines and ships them in batches from its own thread."""

    def __init__(self, shipper: Shipper, *, batch_lines: int, flush_interval_s: float) -> None:
        self._shipper = shipper
        self._batch_lines = batch_lines
        self._interval = flush_interval_s
        self._buf: deque[LogLine] = deque(maxlen=_BUFFER_LINES)
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="log-sink", daemon=True)
        self._thread.start()

    def write(self, stream: str, text: str) -> None:
        with self._cond:
            if len(self._buf) == self._buf.maxlen:
                self.dropped += 1
            self._buf.append(LogLine(time.time(), stream, text))
            if len(self._buf) >= self._batch_lines:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._buf) < self._batch_lines:
                    self._cond.wait(self._interval)
                batch = list(self._buf)
                self._buf.clear()
                closed = self._closed
            if batch:
                try:
                    self._shipper.ship(batch)
                except Exception:
                    log.exception("shipping %d log line(s) failed; dropped", len(batch))
            if closed:
                return


class NullSink:
    """Discards the game's output (``logs.sink = none``)."""

    def write(self, stream: str, text: str) -> None:
        """Discard one line."""

    def close(self) -> None:
        """Nothing to flush."""


class LogSink(Protocol):
    def write(self, stream: str, text: str) -> None: ...

    def close(self) -> None: ...


def build_sink(cfg: LogConfig, stream_name: str) -> LogSink:
    """The sink the config asks for. Raises ConfigError (CloudWatch without boto3)."""
    if cfg.sink is LogSinkKind.NONE:
        return NullSink()
    shipper: Shipper
    if cfg.sink is LogSinkKind.CLOUDWATCH:
        shipper = CloudWatchShipper(cfg.group, stream_name)
    else:
        shipper = FileShipper(cfg.path)
    return BatchingSink(shipper, batch_lines=cfg.batch_lines, flush_interval_s=cfg.flush_interval_s)
