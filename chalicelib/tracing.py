"""X-Ray tracing behind a tiny interface, so the SDK loads only when tracing is on (roadmap item 1).

`aws_xray_sdk` costs ~600 ms to import (feasibility.md §10); the PING path never touches this module's
real tracer, and with tracing off every span is a no-op. In Lambda the runtime's facade segment is the
parent; elsewhere (the local stack, tests) we open a segment ourselves, continuing the trace whose
header travelled with the job.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["NullTracer", "Span", "Tracer", "XRayTracer"]


class Span(Protocol):
    """What code may do with an open span."""

    def annotate(self, key: str, value: str | int | bool) -> None: ...


class Tracer(Protocol):
    """Open root segments and subsegments; report the header that continues the current trace."""

    def segment(
        self, name: str, trace_header: str | None = None
    ) -> contextlib.AbstractContextManager[Span]: ...

    def span(self, name: str) -> contextlib.AbstractContextManager[Span]: ...

    def trace_header(self) -> str | None: ...


class _NullSpan:
    def annotate(self, key: str, value: str | int | bool) -> None:
        return None


class NullTracer:
    """Tracing off: spans cost one attribute lookup."""

    _span = _NullSpan()

    @contextlib.contextmanager
    def segment(self, name: str, trace_header: str | None = None) -> Iterator[Span]:
        yield self._span

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[Span]:
        yield self._span

    def trace_header(self) -> str | None:
        return None


class _XSpan:
    def __init__(self, entity: Any) -> None:
        self._entity = entity

    def annotate(self, key: str, value: str | int | bool) -> None:
        self._entity.put_annotation(key, value)


def _parse_header(header: str | None) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in (header or "").split(";"):
        key, _, value = item.partition("=")
        if key and value:
            parts[key.strip()] = value.strip()
    return parts


class XRayTracer:
    """The aws-xray-sdk recorder, configured on first use and patched into boto3."""

    _lock = threading.Lock()

    def __init__(self, *, service: str, daemon_address: str | None, in_lambda: bool) -> None:
        self._service = service
        self._daemon = daemon_address
        self._in_lambda = in_lambda
        self._recorder: Any = None

    def _get(self) -> Any:
        with self._lock:
            if self._recorder is None:
                from aws_xray_sdk.core import patch, xray_recorder

                options: dict[str, Any] = {
                    "service": self._service,
                    "context_missing": "IGNORE_ERROR",
                    "sampling": False,
                }
                if self._daemon:
                    options["daemon_address"] = self._daemon
                xray_recorder.configure(**options)
                patch(["boto3"])
                self._recorder = xray_recorder
            return self._recorder

    @contextlib.contextmanager
    def segment(self, name: str, trace_header: str | None = None) -> Iterator[Span]:
        recorder = self._get()
        if self._in_lambda:
            # The runtime's segment is the parent and its trace id is fixed; X-Ray links an SQS-triggered
            # invocation to its message's AWSTraceHeader, and the annotation finds the rest
            # (`annotation.continues = "<root>"`), such as agent events, whose queue message has none.
            with self.span(name) as span:
                root = _parse_header(trace_header).get("Root")
                if root:
                    span.annotate("continues", root)
                yield span
            return
        parts = _parse_header(trace_header)
        segment = recorder.begin_segment(
            name=self._service, traceid=parts.get("Root"), parent_id=parts.get("Parent"), sampling=1
        )
        try:
            with self.span(name) as span:
                yield span
        except BaseException as exc:
            segment.add_exception(exc, [])
            raise
        finally:
            recorder.end_segment()

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[Span]:
        recorder = self._get()
        sub = recorder.begin_subsegment(name)
        if sub is None:  # no open segment: tracing context missing, stay silent
            yield _NullSpan()
            return
        try:
            yield _XSpan(sub)
        except BaseException as exc:
            sub.add_exception(exc, [])
            raise
        finally:
            recorder.end_subsegment()

    def trace_header(self) -> str | None:
        recorder = self._get()
        entity = recorder.get_trace_entity()
        if entity is None:
            return None
        root = getattr(entity, "trace_id", None) or getattr(entity.parent_segment, "trace_id", None)
        return f"Root={root};Parent={entity.id};Sampled=1" if root else None
