"""SQS fair queues in the emulator: a standard queue whose messages carry a MessageGroupId delivers the
messages of quiet tenants before those of a noisy one, as SQS does; moto hands them out in send order.

The model, from the SQS developer guide ("How Amazon SQS fair queues work"):
- a message's tenant is its MessageGroupId; a message without one is a tenant of its own;
- a tenant is *noisy* while it has a backlog (visible messages) and either holds more than 10 % of the
  queue's in-flight messages with at least 30 of its own in flight (concurrency share), or took more
  than 10 % of the consumers' recent processing time (processing-time share: here the time from
  receive to delete, or until now for a message still in flight, over the last minute or since the
  queue was last empty, whichever is shorter: a drained queue has no noisy neighbour);
- a tenant that sent nothing for 5 minutes (judged by its newest message still in the queue) is quiet
  again, as is one whose backlog is gone;
- a receive returns quiet tenants' messages first, in the queue's usual order; noisy tenants' after,
  the one with the fewest messages in flight first. Nothing is dropped or held back: with no quiet
  message waiting, noisy ones are delivered as usual.
AWS calls its thresholds approximate; these are exact, so a test can name a position. A standard queue
whose messages carry no MessageGroupId is left exactly as moto has it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

__all__ = [
    "CONCURRENCY_MIN_IN_FLIGHT",
    "NOISY_SHARE",
    "PROCESSING_WINDOW_S",
    "QUIET_AFTER_S",
    "Tenancy",
    "fair_order",
    "install_fair_queues",
]

NOISY_SHARE: Final = 0.10  # of in-flight messages, or of recent processing time
CONCURRENCY_MIN_IN_FLIGHT: Final = 30
PROCESSING_WINDOW_S: Final = 60.0
QUIET_AFTER_S: Final = 300.0

T = TypeVar("T")


@dataclass(frozen=True)
class Tenancy:
    """What fairness knows of each tenant at one receive."""

    backlog: Mapping[str, int]  # visible messages
    in_flight: Mapping[str, int]
    busy_s: Mapping[str, float]  # processing time in the window
    last_sent: Mapping[str, float]  # epoch seconds of its newest message

    def noisy(self, tenant: str, now: float) -> bool:
        if not self.backlog.get(tenant) or now - self.last_sent.get(tenant, now) > QUIET_AFTER_S:
            return False
        flying = self.in_flight.get(tenant, 0)
        total_flying = sum(self.in_flight.values())
        if flying >= CONCURRENCY_MIN_IN_FLIGHT and flying > NOISY_SHARE * total_flying:
            return True
        total_busy = sum(self.busy_s.values())
        return total_busy > 0 and self.busy_s.get(tenant, 0.0) > NOISY_SHARE * total_busy


def fair_order(visible: Sequence[T], tenant_of: Callable[[T], str], tenancy: Tenancy, now: float) -> list[T]:
    """`visible` in delivery order: quiet tenants' first, then noisy ones' by fewest in flight."""
    noisy = {t for t in {tenant_of(m) for m in visible} if tenancy.noisy(t, now)}

    def rank(message: T) -> tuple[int, int]:
        tenant = tenant_of(message)
        return (1, tenancy.in_flight.get(tenant, 0)) if tenant in noisy else (0, 0)

    return sorted(visible, key=rank)  # stable: the usual order within a rank


@dataclass
class _Ledger:
    """One queue's recent processing time per tenant: (finished at, seconds) pairs."""

    done: dict[str, deque[tuple[float, float]]] = field(default_factory=lambda: defaultdict(deque))

    def add(self, tenant: str, at: float, seconds: float) -> None:
        self.done[tenant].append((at, seconds))

    def busy(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for tenant, spans in list(self.done.items()):
            while spans and now - spans[0][0] > PROCESSING_WINDOW_S:
                spans.popleft()
            if spans:
                out[tenant] = sum(s for _, s in spans)
        return out


_lock = threading.RLock()
_RECEIVED_AT: Final = "_gangway_received_at"


def _tenant(message: Any) -> str:
    return str(message.group_id) if message.group_id else f"message:{message.id}"


def _ledger(queue: Any) -> _Ledger:
    ledger: _Ledger | None = queue.__dict__.get("_gangway_fair")
    if ledger is None:
        ledger = queue.__dict__.setdefault("_gangway_fair", _Ledger())
    return ledger


def _is_fair(queue: Any) -> bool:
    return not queue.fifo_queue and any(m.group_id for m in queue._messages)


def _tenancy(queue: Any, now: float) -> Tenancy:
    backlog: Counter[str] = Counter()
    in_flight: Counter[str] = Counter()
    busy = _ledger(queue).busy(now)
    last_sent: dict[str, float] = {}
    for m in queue._messages:
        tenant = _tenant(m)
        last_sent[tenant] = max(last_sent.get(tenant, 0.0), (m.sent_timestamp or 0) / 1000)
        if m.visible and not m.delayed:
            backlog[tenant] += 1
        elif m.approximate_receive_count and not m.visible:
            in_flight[tenant] += 1
            started = getattr(m, _RECEIVED_AT, None)
            if started is not None:
                busy[tenant] = busy.get(tenant, 0.0) + max(0.0, now - started)
    return Tenancy(backlog, in_flight, busy, last_sent)


def install_fair_queues() -> None:
    """Give moto's standard queues fair delivery for messages with a MessageGroupId (once per process)."""
    from moto.sqs.models import Message, Queue

    if getattr(Queue, "_gangway_fair_queues", False):
        return
    plain_messages = Queue.__dict__["messages"].fget  # the property moto defines
    plain_delete = Queue.delete_message
    plain_mark_received = Message.mark_received

    def messages(self: Any) -> list[Any]:
        visible: list[Any] = plain_messages(self)
        with _lock:
            if len(visible) < 2 or not _is_fair(self):
                return visible
            now = time.time()
            return fair_order(visible, _tenant, _tenancy(self, now), now)

    def delete_message(self: Any, receipt_handle: str) -> None:
        with _lock:
            for m in self._messages:
                if m.had_receipt_handle(receipt_handle) and getattr(m, _RECEIVED_AT, None) is not None:
                    now = time.time()
                    _ledger(self).add(_tenant(m), now, max(0.0, now - getattr(m, _RECEIVED_AT)))
                    break
        plain_delete(self, receipt_handle)
        with _lock:
            if not self._messages:  # drained: no tenant is noisy any more, and the history starts again
                _ledger(self).done.clear()

    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        plain_mark_received(self, visibility_timeout)
        setattr(self, _RECEIVED_AT, time.time())

    Queue.messages = property(messages)  # type: ignore[assignment,method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    Message.mark_received = mark_received  # type: ignore[method-assign]
    Queue._gangway_fair_queues = True  # type: ignore[attr-defined]
