"""The credentials broker: the only way code gets AWS access for a tenant (DESIGN.md §2).

Customer tenants get STS AssumeRole credentials for their role, with their ExternalId and a session
name that names the purpose, cached per tenant and purpose until five minutes before they expire, so
one STS call serves many operations in a warm Lambda. Hosting tenants (in gangway's own account) get
the hosting role (`HOSTING_ROLE_ARN`, deploy/template/hosting.py) assumed with the session tag
`gangway:tenant=<tenant id>`: its policy (policies/hosting-role.json) lets a session touch only what
carries that same tag or names that tenant, so no code path acting for one hosted tenant can reach
another's instances, volumes, snapshots, groups, log groups or things (docs/security.md). Only a
deployment without that role (`GANGWAY_ENFORCE_IAM=0` locally) falls back to the function's own
credentials. Every client handed out records each call it makes in the audit log (botocore events),
and every credential fetch is recorded too. Credentials are never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.errors import AccountUnreachable
from chalicelib.instances import error_code
from chalicelib.tenancy.audit import AuditLog
from chalicelib.tenancy.store import Tenant

__all__ = ["TENANT_TAG", "ClientHook", "CredentialsBroker", "TenantAccess"]

REFRESH_MARGIN: Final = 300.0
_SESSION_SECONDS: Final = 3600
# The session tag the hosting role's policy compares with every resource's tag of the same key.
TENANT_TAG: Final = "gangway:tenant"
_RESOURCE_PARAMS: Final = (
    "InstanceIds",
    "InstanceId",
    "VolumeId",
    "SnapshotId",
    "RoleName",
    "RoleArn",
    "thingName",
    "Name",
    "SecretId",
    "QueueUrl",
    "TableName",
    "ResourceArn",
)
ClientHook = Callable[[Any], None]


@dataclass(frozen=True)
class _Cached:
    credentials: dict[str, str]
    expires_at: float


@dataclass(frozen=True)
class TenantAccess:
    """Credentials scoped to one tenant and purpose; `client()` gives audited boto3 clients."""

    tenant_id: str
    purpose: str
    actor: str
    region: str
    _session: Any
    _audit: AuditLog
    _endpoint_url: str | None
    _hooks: tuple[ClientHook, ...] = ()

    def client(self, service: str) -> Any:
        """A boto3 client whose every call leaves an audit row (tenant, actor, action, resource, outcome)."""
        client = self._session.client(service, region_name=self.region, endpoint_url=self._endpoint_url)
        events = client.meta.events
        events.register("provide-client-params", self._remember_resource)
        events.register("after-call", self._audit_call)
        for hook in self._hooks:
            hook(client)
        return client

    @staticmethod
    def _remember_resource(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        for key in _RESOURCE_PARAMS:
            if key in params:
                value = params[key]
                context["gangway_resource"] = (
                    ",".join(map(str, value)) if isinstance(value, list) else str(value)
                )
                return

    def _audit_call(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        service = model.service_model.endpoint_prefix
        self._audit.record(
            self.tenant_id,
            actor=self.actor,
            action=f"{service}:{model.name}",
            resource=context.get("gangway_resource", ""),
            outcome=error.get("Code", "ok") if error else "ok",
            purpose=self.purpose,
        )


class CredentialsBroker:
    """Hands out `TenantAccess`; built once per container in wiring.py."""

    def __init__(
        self,
        *,
        sts: Callable[[], Any],
        hosting_session: Callable[[], Any],
        audit: AuditLog,
        hosting_role_arn: str = "",
        endpoint_url: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sts = sts
        self._hosting_session = hosting_session
        self._hosting_role = hosting_role_arn
        self._audit = audit
        self._endpoint_url = endpoint_url
        self._clock = clock
        self._cache: dict[tuple[str, str, str, str], _Cached] = {}
        self._lock = threading.Lock()
        self.hooks: list[ClientHook] = []

    def access(self, tenant: Tenant, *, purpose: str, actor: str) -> TenantAccess:
        """Access to `tenant`'s account for `purpose` on behalf of `actor` (a user id or a job name).

        Raises:
            AccountUnreachable: the tenant's role could not be assumed.
        """
        if tenant.account_mode == "customer" and tenant.role_arn:
            creds = self.credentials(
                tenant.tenant_id,
                role_arn=tenant.role_arn,
                external_id=tenant.external_id or "",
                purpose=purpose,
                actor=actor,
            )
        elif self._hosting_role:
            creds = self.credentials(
                tenant.tenant_id, role_arn=self._hosting_role, external_id="", purpose=purpose, actor=actor
            )
        else:
            return self._access(tenant, purpose, actor, self._hosting_session(), tenant.region)
        import boto3

        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        return self._access(tenant, purpose, actor, session, tenant.region)

    def credentials(
        self,
        tenant_id: str,
        *,
        role_arn: str,
        external_id: str,
        purpose: str,
        actor: str,
        fresh: bool = False,
    ) -> dict[str, str]:
        """Assumed-role credentials, from cache unless `fresh` or within 5 minutes of expiry.

        The hosting role is assumed without an ExternalId (it trusts only gangway's functions) and with
        the session tag `gangway:tenant`, which its policy matches against every resource's.

        Raises:
            AccountUnreachable: STS refused (wrong ExternalId, trust policy, deleted role).
        """
        key = (tenant_id, role_arn, external_id, purpose)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and not fresh and hit.expires_at - REFRESH_MARGIN > now:
            return hit.credentials
        session_name = f"gangway-{purpose}-{tenant_id}"[:64]
        hosting = role_arn == self._hosting_role and bool(role_arn)
        request: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": _SESSION_SECONDS,
        }
        if hosting:
            request["Tags"] = [{"Key": TENANT_TAG, "Value": tenant_id}]
        else:
            request["ExternalId"] = external_id
        try:
            answer = self._sts().assume_role(**request)
        except Exception as exc:
            code = error_code(exc, type(exc).__name__)
            self._audit.record(
                tenant_id,
                actor=actor,
                action="sts:AssumeRole",
                resource=role_arn,
                outcome=str(code),
                purpose=purpose,
            )
            if hosting:
                raise AccountUnreachable(
                    "gangway could not reach its own AWS account for this server just now. Nothing was "
                    "changed; try again in a few minutes, and tell gangway's operators if it keeps happening."
                ) from exc
            raise AccountUnreachable(
                f"gangway could not assume `{role_arn}` ({code}). Check that the role still exists and "
                "trusts gangway with this server's ExternalId; an admin can re-check it in `/setup`."
            ) from exc
        self._audit.record(
            tenant_id, actor=actor, action="sts:AssumeRole", resource=role_arn, purpose=purpose
        )
        raw = answer["Credentials"]
        expiration = raw["Expiration"]
        expires = expiration.timestamp() if hasattr(expiration, "timestamp") else now + _SESSION_SECONDS
        creds = {k: str(raw[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        with self._lock:
            self._cache[key] = _Cached(creds, expires)
        return creds

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's cached credentials (its account changed or it was removed)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == tenant_id]:
                del self._cache[key]

    def _access(self, tenant: Tenant, purpose: str, actor: str, session: Any, region: str) -> TenantAccess:
        return TenantAccess(
            tenant.tenant_id,
            purpose,
            actor,
            region,
            session,
            self._audit,
            self._endpoint_url,
            tuple(self.hooks),
        )
