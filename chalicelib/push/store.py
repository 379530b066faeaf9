"""Subscription and waiting-push rows of one tenant at a time; conditions become domain errors (L9)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError

from chalicelib.dynamodb import CONDITION_FAILED
from chalicelib.errors import LinkRejected
from chalicelib.push.models import PushRecord

__all__ = ["MAX_DEVICES", "Preference", "PushStore", "Subscription", "Waiting", "device_id"]

# A member's browsers per tenant; subscribing another replaces the oldest.
MAX_DEVICES: Final = 5
_WAIT_KEEP_SECONDS: Final = 3600
_DAY: Final = 86_400
_DEFAULT_LIFE: Final = 90 * _DAY  # AccessPolicy.member_days's default
_USED: Final = "This authorisation was already used, or its request is over. Run /addip again."


class Preference(StrEnum):
    """When gangway pushes to a member's browser."""

    ADDIP = "addip"  # on /addip
    START = "start"  # on /addip, and when a game they play starts
    OFF = "off"


@dataclass(frozen=True)
class Subscription:
    """One browser's push subscription (the W3C PushSubscription's endpoint and keys)."""

    tenant_id: str
    user_id: str
    endpoint: str
    p256dh: str
    auth: str
    preference: Preference
    created_at: int
    # Like a member's grant, a subscription lasts the tenant's `member_days` (/ipsettings), then it is
    # ignored and purged: a browser does not keep authorising itself for ever.
    expires_at: int = 0
    # A browser bound with a member link pushes only once the member confirmed it in Discord (the
    # button under /addip's reply): whoever else holds a leaked link cannot make their browser a way in.
    link: str = ""
    confirmed: bool = True

    @property
    def device(self) -> str:
        return device_id(self.endpoint)

    def info(self) -> dict[str, Any]:
        """The `subscription_info` pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class Waiting:
    """A push flow's single-use token and, once a device used it, the result."""

    tenant_id: str
    nonce: str
    user_id: str
    state: str
    task_token: str | None
    result: Mapping[str, Any] | None


def device_id(endpoint: str) -> str:
    """A browser's id: a hash of its push endpoint (the endpoint itself is a capability, kept once)."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:32]


def _sub_key(user_id: str, device: str = "") -> str:
    return f"sub#{user_id}#{device}"


def _to_subscription(rec: PushRecord) -> Subscription:
    return Subscription(
        tenant_id=rec.tenant_id,
        user_id=rec.user_id,
        endpoint=str(rec.endpoint),
        p256dh=str(rec.p256dh),
        auth=str(rec.auth),
        preference=Preference(rec.preference or Preference.ADDIP.value),
        created_at=int(rec.created_at or 0),
        # rows from before expiry existed last the default member grant from when they were made
        expires_at=int(rec.expires_at)
        if rec.expires_at is not None
        else int(rec.created_at or 0) + _DEFAULT_LIFE,
        link=rec.link or "",
        # rows from before confirmation existed were made by their member's own page: confirmed
        confirmed=rec.link is None or bool(rec.confirmed_at),
    )


def _to_waiting(rec: PushRecord) -> Waiting:
    return Waiting(
        tenant_id=rec.tenant_id,
        nonce=rec.item.removeprefix("wait#"),
        user_id=rec.user_id,
        state=str(rec.state),
        task_token=rec.task_token,
        result=json.loads(rec.result_json) if rec.result_json else None,
    )


class PushStore:
    """Reads and writes push rows; every method takes the tenant id explicitly."""

    # -- subscriptions ---------------------------------------------------------------------------

    def subscriptions(self, tenant_id: str, user_id: str, now: int | None = None) -> list[Subscription]:
        """The member's unexpired browsers in this tenant, oldest first."""
        rows = PushRecord.query(
            tenant_id, PushRecord.item.startswith(_sub_key(user_id)), consistent_read=True
        )
        at = int(time.time()) if now is None else now
        live = (s for s in map(_to_subscription, rows) if s.expires_at > at)
        return sorted(live, key=lambda s: (s.created_at, s.device))

    def tenant_subscriptions(self, tenant_id: str) -> list[Subscription]:
        """Every member's browsers in this tenant (one Query on its partition)."""
        rows = PushRecord.query(tenant_id, PushRecord.item.startswith("sub#"), consistent_read=True)
        return [_to_subscription(r) for r in rows]

    def save(self, sub: Subscription) -> list[str]:
        """Store (or replace) a browser's subscription; returns the devices evicted to stay at the limit."""
        PushRecord(
            sub.tenant_id,
            _sub_key(sub.user_id, sub.device),
            user_id=sub.user_id,
            device=sub.device,
            endpoint=sub.endpoint,
            p256dh=sub.p256dh,
            auth=sub.auth,
            preference=sub.preference.value,
            created_at=sub.created_at,
            expires_at=sub.expires_at,
            purge_at=datetime.fromtimestamp(sub.expires_at + _DAY, tz=UTC),
            link=sub.link or None,
            confirmed_at=sub.created_at if sub.confirmed else None,
        ).save()
        others = [s for s in self.subscriptions(sub.tenant_id, sub.user_id) if s.device != sub.device]
        excess = others[: max(0, len(others) + 1 - MAX_DEVICES)]
        for old in excess:
            self.delete(sub.tenant_id, sub.user_id, old.device)
        return [s.device for s in excess]

    def delete(self, tenant_id: str, user_id: str, device: str) -> None:
        PushRecord(tenant_id, _sub_key(user_id, device)).delete()

    def confirm(self, tenant_id: str, user_id: str, link: str, now: int) -> int:
        """Confirm the member's unconfirmed browsers bound with member link `link`; returns how many."""
        rows = PushRecord.query(
            tenant_id, PushRecord.item.startswith(_sub_key(user_id)), consistent_read=True
        )
        count = 0
        for rec in rows:
            if rec.link != link or rec.user_id != user_id or rec.confirmed_at:
                continue
            rec.update(actions=[PushRecord.confirmed_at.set(now)])
            count += 1
        return count

    def forget(self, tenant_id: str, user_id: str | None = None) -> int:
        """Delete a member's browsers (every member's when `user_id` is None); returns how many."""
        prefix = _sub_key(user_id) if user_id is not None else "sub#"
        rows = list(PushRecord.query(tenant_id, PushRecord.item.startswith(prefix), consistent_read=True))
        for rec in rows:
            rec.delete()
        return len(rows)

    def devices(self, device: str) -> list[tuple[str, str]]:
        """(tenant, user) of every subscription of one browser (eventually consistent: a GSI)."""
        return [(r.tenant_id, r.user_id) for r in PushRecord.by_device.query(device)]

    def subscription(self, tenant_id: str, user_id: str, device: str) -> Subscription | None:
        try:
            return _to_subscription(
                PushRecord.get(tenant_id, _sub_key(user_id, device), consistent_read=True)
            )
        except DoesNotExist:
            return None

    # -- waiting pushes --------------------------------------------------------------------------

    def open_wait(self, tenant_id: str, nonce: str, user_id: str, task_token: str, expires_at: int) -> None:
        """A new pending push, holding the task token that waits for it (a retried send replaces it).

        Raises:
            PutError: the flow's push was already used or closed (a late redelivery of the send).
        """
        PushRecord(
            tenant_id,
            f"wait#{nonce}",
            user_id=user_id,
            state="pending",
            task_token=task_token,
            expires_at=expires_at,
            purge_at=datetime.fromtimestamp(expires_at + _WAIT_KEEP_SECONDS, tz=UTC),
        ).save(condition=PushRecord.item.does_not_exist() | (PushRecord.state == "pending"))

    def redeem(self, tenant_id: str, nonce: str, user_id: str, now: int) -> Waiting:
        """Use a pending push's token, once (one conditional write).

        Raises:
            LinkRejected: "invalid" when there is no such pending push for this member (replayed,
                foreign, closed after its timeout, or expired).
        """
        rec = PushRecord(tenant_id, f"wait#{nonce}")
        try:
            rec.update(
                actions=[PushRecord.state.set("used")],
                condition=(PushRecord.state == "pending")
                & (PushRecord.user_id == user_id)
                & (PushRecord.expires_at > now),
            )
        except UpdateError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                raise LinkRejected("invalid", _USED) from exc
            raise
        return _to_waiting(rec)

    def wait(self, tenant_id: str, nonce: str) -> Waiting | None:
        try:
            return _to_waiting(PushRecord.get(tenant_id, f"wait#{nonce}", consistent_read=True))
        except DoesNotExist:
            return None

    def finish(self, tenant_id: str, nonce: str, result: Mapping[str, Any]) -> None:
        """Keep a used push's result (the flow reads it when its task token was already gone)."""
        PushRecord(tenant_id, f"wait#{nonce}").update(
            actions=[PushRecord.result_json.set(json.dumps(dict(result), separators=(",", ":")))]
        )

    def close(self, tenant_id: str, nonce: str) -> Waiting | None:
        """Give up a pending push (timeout or no device): its token stops working. Returns the row as it
        is now (already "used" when a device won the race), or None when there is no such push."""
        rec = PushRecord(tenant_id, f"wait#{nonce}")
        try:
            rec.update(actions=[PushRecord.state.set("closed")], condition=PushRecord.state == "pending")
        except UpdateError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
        return self.wait(tenant_id, nonce)

    def remove_wait(self, tenant_id: str, nonce: str) -> None:
        try:
            PushRecord(tenant_id, f"wait#{nonce}").delete(condition=PushRecord.item.exists())
        except DeleteError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
