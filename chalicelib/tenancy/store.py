"""Tenant storage with a short in-process cache, and the caller's access level.

A warm Lambda answers many interactions for the same guild; re-reading its roles each time would cost
a DynamoDB round trip per /help. The cache holds a tenant for `ttl` seconds and is dropped on every
write made through this store, so a change made here is seen at once and elsewhere within `ttl`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from chalicelib.dynamodb import CONDITION_FAILED, DynamoDbClient
from chalicelib.errors import Conflict, NotSetUp
from chalicelib.tenancy.tenant import Tenant, level_of, tenant_of_record, tenant_row

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action

__all__ = ["RoleKind", "Tenant", "TenantStore", "level_of"]

RoleKind = Literal["main", "admin"]


class TenantStore:
    """Reads and writes tenants; every method takes the tenant id explicitly."""

    def __init__(
        self,
        *,
        default_region: str,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        client: DynamoDbClient | None = None,
        table: str = "",
    ) -> None:
        """`client` (with the tenants `table`'s name): reads go through the botocore-free client
        (chalicelib/dynamodb) instead of PynamoDB, so a cold command never imports botocore."""
        self._client = client
        self._table = table
        self._region = default_region
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Tenant | None]] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant, from cache when fresh; None if the guild never ran /setup."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        tenant = self.read(tenant_id)
        with self._lock:
            self._cache[tenant_id] = (now, tenant)
        return tenant

    def read(self, tenant_id: str) -> Tenant | None:
        """A strongly consistent read that bypasses the cache (for decisions that change state)."""
        if self._client is not None:
            item = self._client.get_item(self._table, {"tenant_id": {"S": tenant_id}}, consistent=True)
            return None if item is None else tenant_of_record(tenant_row(item))
        from pynamodb.exceptions import DoesNotExist

        from chalicelib.tenancy.models import TenantRecord

        try:
            return tenant_of_record(TenantRecord.get(tenant_id, consistent_read=True))
        except DoesNotExist:
            return None

    def require(self, tenant_id: str) -> Tenant:
        """The tenant, or NotSetUp."""
        tenant = self.get(tenant_id)
        if tenant is None:
            raise NotSetUp("This server isn't set up for gangway yet: run `/setup`.")
        return tenant

    def ensure(self, tenant_id: str, *, created_by: str, now: float | None = None) -> tuple[Tenant, bool]:
        """Create the tenant on the hosting account if it does not exist; (tenant, created)."""
        from pynamodb.exceptions import PutError

        from chalicelib.tenancy.models import TenantRecord

        stamp = time.time() if now is None else now
        rec = TenantRecord(
            tenant_id,
            region=self._region,
            created_by=created_by,
            created_at=int(stamp),
            updated_at=int(stamp),
        )
        try:
            rec.save(condition=TenantRecord.tenant_id.does_not_exist())
            created = True
        except PutError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            created = False
        self._forget(tenant_id)
        tenant = self.read(tenant_id)
        if tenant is None:  # deleted between the two calls
            raise Conflict("The server's configuration changed while saving; run `/setup` again.")
        return tenant, created

    def set_roles(self, tenant_id: str, kind: RoleKind, role_ids: Iterable[str]) -> Tenant:
        """Replace the main or admin role set (a versioned write).

        Raises:
            NotSetUp: no such tenant.  Conflict: changed concurrently.
        """
        from chalicelib.tenancy.models import TenantRecord

        roles = set(role_ids) or None
        attr = TenantRecord.main_role_ids if kind == "main" else TenantRecord.admin_role_ids
        return self._update(tenant_id, [attr.set(roles) if roles else attr.remove()])

    def offer_customer_account(self, tenant_id: str) -> Tenant:
        """Give the tenant its ExternalId (once; random, never reused across tenants)."""
        from chalicelib.tenancy.models import TenantRecord

        tenant = self._current(tenant_id)
        if tenant.external_id:
            return tenant
        return self._update(tenant_id, [TenantRecord.external_id.set("gw-" + secrets.token_urlsafe(24))])

    def set_pending_role(self, tenant_id: str, role_arn: str, region: str) -> Tenant:
        """Remember the role an admin pasted, to verify; nothing counts as verified yet."""
        from chalicelib.tenancy.models import TenantRecord

        return self._update(
            tenant_id,
            [TenantRecord.pending_role_arn.set(role_arn), TenantRecord.pending_region.set(region)],
        )

    def mark_verified(self, tenant_id: str, *, role_arn: str, region: str, account_id: str) -> Tenant:
        """Switch the tenant to its verified customer account."""
        from chalicelib.tenancy.models import TenantRecord

        return self._update(
            tenant_id,
            [
                TenantRecord.account_mode.set("customer"),
                TenantRecord.role_arn.set(role_arn),
                TenantRecord.region.set(region),
                TenantRecord.aws_account_id.set(account_id),
                TenantRecord.verified_at.set(int(time.time())),
                TenantRecord.verify_problem.remove(),
                TenantRecord.pending_role_arn.remove(),
                TenantRecord.pending_region.remove(),
            ],
        )

    def mark_verify_failed(self, tenant_id: str, problem: str) -> Tenant:
        """Record why verification failed; the tenant's working account is unchanged."""
        from chalicelib.tenancy.models import TenantRecord

        return self._update(tenant_id, [TenantRecord.verify_problem.set(problem[:1000])])

    def use_hosting_account(self, tenant_id: str, region: str) -> Tenant:
        """Run this tenant's games in the hosting account (the ExternalId is kept for a later switch)."""
        from chalicelib.tenancy.models import TenantRecord

        return self._update(
            tenant_id,
            [
                TenantRecord.account_mode.set("hosting"),
                TenantRecord.region.set(region),
                TenantRecord.role_arn.remove(),
                TenantRecord.aws_account_id.remove(),
                TenantRecord.verified_at.remove(),
            ],
        )

    def set_plan(self, tenant_id: str, plan: str) -> Tenant:
        """The operator's choice of plan (validated by the caller against PLANS)."""
        from chalicelib.tenancy.models import TenantRecord

        return self._update(tenant_id, [TenantRecord.plan.set(plan)])

    def set_dns(self, tenant_id: str, zone_id: str | None, domain: str | None) -> Tenant:
        """The hosted zone and domain for game names (checked by the caller), or none with None."""
        from chalicelib.tenancy.models import TenantRecord

        if zone_id and domain:
            return self._update(
                tenant_id, [TenantRecord.dns_zone_id.set(zone_id), TenantRecord.dns_domain.set(domain)]
            )
        return self._update(tenant_id, [TenantRecord.dns_zone_id.remove(), TenantRecord.dns_domain.remove()])

    def _current(self, tenant_id: str) -> Tenant:
        tenant = self.read(tenant_id)
        if tenant is None:
            raise NotSetUp("This server isn't set up for gangway yet: run `/setup`.")
        return tenant

    def _update(self, tenant_id: str, actions: list[Action]) -> Tenant:
        """One versioned update; a concurrent change is a Conflict, never a lost write."""
        from pynamodb.exceptions import DoesNotExist, UpdateError

        from chalicelib.tenancy.models import TenantRecord

        try:
            rec = TenantRecord.get(tenant_id, consistent_read=True)
        except DoesNotExist as exc:
            raise NotSetUp("This server isn't set up for gangway yet: run `/setup`.") from exc
        try:
            rec.update(actions=[*actions, TenantRecord.updated_at.set(int(time.time()))])
        except UpdateError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                raise Conflict("Someone changed these settings at the same moment; try again.") from exc
            raise
        finally:
            self._forget(tenant_id)
        return tenant_of_record(rec)

    def _forget(self, tenant_id: str) -> None:
        with self._lock:
            self._cache.pop(tenant_id, None)
