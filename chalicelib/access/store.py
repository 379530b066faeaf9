"""Grant, policy and guest-link rows of one tenant at a time; conditions become domain errors (L9)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError

from chalicelib.access.models import EXPIRY_SHARD, AccessRecord, GrantRecord
from chalicelib.access.tokens import LinkKind
from chalicelib.dynamodb import CONDITION_FAILED
from chalicelib.errors import LinkRejected

__all__ = ["AccessPolicy", "Grant", "GrantStore", "GuestLink"]

_DAY: Final = 86_400
_POLICY: Final = "policy"
_FIREWALL: Final = "firewall"
# A withdrawn link's row outlives the longest guest link (30 days, /ipsettings), so it stays refused.
_GUEST_LINK_KEEP: Final = 31 * _DAY


@dataclass(frozen=True)
class AccessPolicy:
    """A tenant's access settings; the defaults apply until an admin changes them (/ipsettings)."""

    member_days: int = 90
    guest_days: int = 3
    max_grants: int = 200
    guest_link_uses: int = 10


@dataclass(frozen=True)
class GuestLink:
    """What is known of one guest link: who issued it, its uses, and whether it was withdrawn."""

    link_id: str
    issued_by: str | None
    uses: int
    max_uses: int | None
    expires_at: int | None
    revoked_at: int | None


def _to_link(rec: AccessRecord) -> GuestLink:
    return GuestLink(
        link_id=rec.item.removeprefix("link#"),
        issued_by=rec.issued_by,
        uses=int(rec.uses or 0),
        max_uses=int(rec.max_uses) if rec.max_uses is not None else None,
        expires_at=int(rec.link_expires_at) if rec.link_expires_at is not None else None,
        revoked_at=int(rec.revoked_at) if rec.revoked_at is not None else None,
    )


@dataclass(frozen=True)
class Grant:
    """One address let through a tenant's game firewalls until `expires_at`."""

    tenant_id: str
    address: str
    kind: LinkKind
    owner: str
    granted_at: int
    expires_at: int


def _when(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _to_grant(rec: GrantRecord) -> Grant:
    return Grant(
        tenant_id=rec.tenant_id,
        address=rec.address,
        kind=LinkKind(rec.kind),
        owner=rec.owner,
        granted_at=int(rec.granted_at),
        expires_at=int(rec.expires_at),
    )


class GrantStore:
    """Reads and writes access rows; every method takes the tenant id explicitly."""

    # -- policy ----------------------------------------------------------------------------------

    def policy(self, tenant_id: str) -> AccessPolicy:
        """The tenant's policy (defaults for anything never set)."""
        d = AccessPolicy()
        try:
            rec = AccessRecord.get(tenant_id, _POLICY, consistent_read=True)
        except DoesNotExist:
            return d
        return AccessPolicy(
            member_days=int(rec.member_days or d.member_days),
            guest_days=int(rec.guest_days or d.guest_days),
            max_grants=int(rec.max_grants or d.max_grants),
            guest_link_uses=int(rec.guest_link_uses or d.guest_link_uses),
        )

    def set_policy(self, tenant_id: str, policy: AccessPolicy, now: int) -> None:
        AccessRecord(
            tenant_id,
            _POLICY,
            member_days=policy.member_days,
            guest_days=policy.guest_days,
            max_grants=policy.max_grants,
            guest_link_uses=policy.guest_link_uses,
            updated_at=now,
        ).save()

    # -- the grant set's version -------------------------------------------------------------------

    def next_version(self, tenant_id: str, now: int) -> int:
        """Number one change of the tenant's grant set (one atomic ADD); returns its version."""
        rec = AccessRecord(tenant_id, _FIREWALL)
        rec.update(actions=[AccessRecord.set_version.add(1), AccessRecord.updated_at.set(now)])
        return int(rec.set_version or 0)

    def version(self, tenant_id: str) -> int:
        """The version of the tenant's grant set now (0 before its first change)."""
        try:
            rec = AccessRecord.get(tenant_id, _FIREWALL, consistent_read=True)
        except DoesNotExist:
            return 0
        return int(rec.set_version or 0)

    # -- guest links -----------------------------------------------------------------------------

    def use_guest_link(self, tenant_id: str, link_id: str, *, max_uses: int, link_expires_at: int) -> int:
        """Count one use of a guest link (one conditional write); returns the uses so far.

        Raises:
            LinkRejected: "used_up" when the link already had `max_uses` uses.
        """
        rec = AccessRecord(tenant_id, f"link#{link_id}")
        try:
            rec.update(
                actions=[
                    AccessRecord.uses.add(1),
                    AccessRecord.max_uses.set(max_uses),
                    AccessRecord.purge_at.set(_when(link_expires_at + _DAY)),
                ],
                condition=(AccessRecord.uses.does_not_exist() | (AccessRecord.uses < max_uses))
                & AccessRecord.revoked_at.does_not_exist(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                if self._revoked(tenant_id, link_id):
                    raise LinkRejected(
                        "revoked", "This guest link was withdrawn by an admin. Ask them for a new one."
                    ) from exc
                raise LinkRejected(
                    "used_up",
                    "This guest link has been used as many times as it allows. Ask for a new one.",
                ) from exc
            raise
        return int(rec.uses or 0)

    def issue_guest_link(
        self, tenant_id: str, link_id: str, *, issued_by: str, max_uses: int, expires_at: int
    ) -> None:
        """Record a new guest link (who issued it, for /access), before anyone uses it."""
        AccessRecord(
            tenant_id,
            f"link#{link_id}",
            uses=0,
            max_uses=max_uses,
            issued_by=issued_by,
            link_expires_at=expires_at,
            purge_at=_when(expires_at + _DAY),
        ).save(condition=AccessRecord.item.does_not_exist())

    def guest_link(self, tenant_id: str, link_id: str) -> GuestLink | None:
        try:
            rec = AccessRecord.get(tenant_id, f"link#{link_id}", consistent_read=True)
        except DoesNotExist:
            return None
        return _to_link(rec)

    def guest_links(self, tenant_id: str) -> list[GuestLink]:
        """Every guest-link row of the tenant (issued, used or revoked, until purged)."""
        rows = AccessRecord.query(tenant_id, AccessRecord.item.startswith("link#"), consistent_read=True)
        return [_to_link(r) for r in rows]

    def revoke_guest_link(self, tenant_id: str, link_id: str, now: int) -> None:
        """Mark a guest link withdrawn: it lets nobody in any more (the row outlives the link)."""
        rec = AccessRecord(tenant_id, f"link#{link_id}")
        rec.update(
            actions=[
                AccessRecord.revoked_at.set(now),
                AccessRecord.purge_at.set(_when(now + _GUEST_LINK_KEEP)),
            ]
        )

    def _revoked(self, tenant_id: str, link_id: str) -> bool:
        link = self.guest_link(tenant_id, link_id)
        return link is not None and link.revoked_at is not None

    # -- grants ----------------------------------------------------------------------------------

    def get(self, tenant_id: str, address: str) -> Grant | None:
        try:
            return _to_grant(GrantRecord.get(tenant_id, address, consistent_read=True))
        except DoesNotExist:
            return None

    def all(self, tenant_id: str) -> list[Grant]:
        """Every grant row of the tenant, expired or not (one Query on its partition)."""
        return [_to_grant(r) for r in GrantRecord.query(tenant_id, consistent_read=True)]

    def live(self, tenant_id: str, now: int) -> list[Grant]:
        return [g for g in self.all(tenant_id) if g.expires_at > now]

    def of_owner(self, tenant_id: str, owner: str) -> list[Grant]:
        """A member's (or a guest link's) grants, through the owner index."""
        return [_to_grant(r) for r in GrantRecord.by_owner.query(tenant_id, GrantRecord.owner == owner)]

    def for_address(self, address: str) -> list[Grant]:
        """Every tenant's grant for `address` (eventually consistent: the address index is a GSI)."""
        return [_to_grant(r) for r in GrantRecord.by_address.query(address)]

    def put(self, grant: Grant) -> None:
        GrantRecord(
            grant.tenant_id,
            grant.address,
            kind=grant.kind.value,
            owner=grant.owner,
            granted_at=grant.granted_at,
            expires_at=grant.expires_at,
            shard=EXPIRY_SHARD,
            purge_at=_when(grant.expires_at + _DAY),
        ).save()

    def remove(
        self, tenant_id: str, address: str, *, owner: str | None = None, expired_by: int | None = None
    ) -> bool:
        """Delete a grant if it still belongs to `owner` / has still expired by `expired_by`.

        Returns whether a row was deleted (a grant taken over or refreshed meanwhile is kept).
        """
        rec = GrantRecord(tenant_id, address)
        condition = GrantRecord.address.exists()
        if owner is not None:
            condition &= GrantRecord.owner == owner
        if expired_by is not None:
            condition &= GrantRecord.expires_at <= expired_by
        try:
            rec.delete(condition=condition)
        except DeleteError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                return False
            raise
        return True

    def expired(self, now: int) -> list[tuple[str, str]]:
        """(tenant, address) of every grant that expired by `now`, across tenants (the reaper's view)."""
        rows: Iterable[GrantRecord] = GrantRecord.by_expiry.query(EXPIRY_SHARD, GrantRecord.expires_at <= now)
        return [(r.tenant_id, r.address) for r in rows]
