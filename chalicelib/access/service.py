"""Player access: links for members and guests, authorising an address, checks, eviction and expiry.

Rules (issue 5; original-behaviour.md §5.3, improved):
- A member holds one address: authorising a new one replaces (and revokes) the old one.
- A grant lasts `member_days` / `guest_days` from when the link is *used* (the original counted from
  when it was issued). Member links work for a day; guest links for `guest_days` and `max_uses` uses.
- Re-opening a link from an address it already authorised consumes no guest use ("already").
- Over the tenant's maximum, guests are evicted before members, oldest first; never the new grant.
- Every change goes to the running agents as a firewall delta; the reaper removes expired grants.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from chalicelib.access.firewall import FirewallSync, full_sync_request
from chalicelib.access.revocation import Revocations
from chalicelib.access.store import AccessPolicy, Grant, GrantStore
from chalicelib.access.tokens import Claims, LinkKind, TokenSealer
from chalicelib.agents import AgentRequest, FirewallPorts
from chalicelib.errors import BadRequest, LinkRejected
from chalicelib.games import GameState, GameStore
from chalicelib.tenancy import TenantStore

__all__ = ["MEMBER_LINK_SECONDS", "AccessService", "Authorized", "Link", "PushRedemption"]

DAY: Final = 86_400
# A personal link is for opening now; an old one lying around should not replace today's address.
MEMBER_LINK_SECONDS: Final = DAY

Status = Literal["authorised", "replaced", "already"]


@dataclass(frozen=True)
class Link:
    """A link to the IPAuth page and what it allows."""

    url: str
    claims: Claims


@dataclass(frozen=True)
class Authorized:
    """The outcome of using a link from an address."""

    status: Status
    grant: Grant
    games: tuple[str, ...]
    running: tuple[str, ...]
    replaced: tuple[str, ...] = ()


class PushRedemption(Protocol):
    """The push flow's side of a push token (chalicelib/push): single use, and who waits for it."""

    def redeem(self, claims: Claims, now: int) -> None:
        """Use the token once. Raises LinkRejected when replayed, foreign or no longer waited for."""

    def completed(self, claims: Claims, done: Authorized) -> None:
        """Hand the result to the waiting flow."""

    def forget(self, tenant_id: str, user_id: str | None) -> int:
        """Delete a member's browsers (everyone's with None); returns how many."""


def normalise_address(raw: str) -> str:
    """The canonical text of an IPv4 or IPv6 address (IPv4-mapped IPv6 becomes IPv4).

    Raises:
        BadRequest: not an address.
    """
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError as exc:
        raise BadRequest("the request's source address is not an IP address") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class AccessService:
    """Everything /addip, /addguestip, /ip, the IPAuth API and the reaper do with grants."""

    def __init__(
        self,
        *,
        sealer: TokenSealer,
        grants: GrantStore,
        tenants: TenantStore,
        games: GameStore,
        firewall: FirewallSync,
        site_url: str,
        push: Callable[[], PushRedemption] | None = None,
    ) -> None:
        self._push = push
        self._sealer = sealer
        self.grants = grants
        self._tenants = tenants
        self._games = games
        self.firewall = firewall
        self.revocations = Revocations(grants, firewall, forget=self._forget_browsers)
        self._site_url = site_url.rstrip("/")

    # -- links -----------------------------------------------------------------------------------

    def member_link(self, tenant_id: str, user_id: str, now: int) -> Link:
        token, claims = self._sealer.seal(
            tenant_id=tenant_id,
            kind=LinkKind.MEMBER,
            issued_at=now,
            lifetime_s=MEMBER_LINK_SECONDS,
            user_id=user_id,
        )
        return Link(self._url(token), claims)

    def guest_link(
        self, tenant_id: str, now: int, max_uses: int | None = None, *, issued_by: str | None = None
    ) -> Link:
        """A new guest link; with `issued_by` it is recorded (for /access) before anyone uses it."""
        policy = self.grants.policy(tenant_id)
        token, claims = self._sealer.seal(
            tenant_id=tenant_id,
            kind=LinkKind.GUEST,
            issued_at=now,
            lifetime_s=policy.guest_days * DAY,
            max_uses=max_uses or policy.guest_link_uses,
        )
        if issued_by is not None:
            self.grants.issue_guest_link(
                tenant_id,
                claims.nonce,
                issued_by=issued_by,
                max_uses=claims.max_uses or 1,
                expires_at=claims.expires_at,
            )
        return Link(self._url(token), claims)

    def _forget_browsers(self, tenant_id: str, user_id: str | None) -> int:
        """Revoked access takes the member's push subscriptions with it (they authorise by themselves)."""
        return self._push().forget(tenant_id, user_id) if self._push is not None else 0

    def _url(self, token: str) -> str:
        # The fragment never reaches a server (not even the site's) nor a Referer header.
        return f"{self._site_url}/#{token}"

    # -- authorising -----------------------------------------------------------------------------

    def authorize(self, token: str, source_ip: str, now: int) -> Authorized:
        """Let `source_ip` in with the link `token`.

        Raises:
            LinkRejected: invalid, expired or used up.  BadRequest: not an address.
        """
        address = normalise_address(source_ip)
        claims = self._sealer.open(token, now=now)
        if self._tenants.read(claims.tenant_id) is None:
            raise LinkRejected("invalid", "This link's Discord server no longer uses gangway.")
        policy = self.grants.policy(claims.tenant_id)
        existing = self.grants.get(claims.tenant_id, address)
        if claims.kind is LinkKind.GUEST:
            return self._guest(claims, address, existing, policy, now)
        if claims.kind is LinkKind.PUSH:
            # A pushed token works once, and only while its flow waits (chalicelib/push).
            if self._push is None:
                raise LinkRejected("invalid", "This deployment does not use web push.")
            push = self._push()
            push.redeem(claims, now)
            done = self._member(claims, address, existing, policy, now)
            push.completed(claims, done)
            return done
        return self._member(claims, address, existing, policy, now)

    def _guest(
        self, claims: Claims, address: str, existing: Grant | None, policy: AccessPolicy, now: int
    ) -> Authorized:
        expires = now + policy.guest_days * DAY
        if (
            existing is not None
            and existing.expires_at > now
            and (existing.owner == claims.owner or existing.expires_at >= expires)
        ):
            # This link (or a longer grant, e.g. a member's) already lets this address in: no use spent.
            return self._answer("already", existing)
        self.grants.use_guest_link(
            claims.tenant_id, claims.nonce, max_uses=claims.max_uses or 1, link_expires_at=claims.expires_at
        )
        grant = Grant(claims.tenant_id, address, LinkKind.GUEST, claims.owner, now, expires)
        self.grants.put(grant)
        evicted = self._trim(claims.tenant_id, policy, keep=address, now=now)
        return self._answer("authorised", grant, revoked=evicted)

    def _member(
        self, claims: Claims, address: str, existing: Grant | None, policy: AccessPolicy, now: int
    ) -> Authorized:
        previous = [g for g in self.grants.of_owner(claims.tenant_id, claims.owner) if g.address != address]
        grant = Grant(
            claims.tenant_id, address, LinkKind.MEMBER, claims.owner, now, now + policy.member_days * DAY
        )
        self.grants.put(grant)
        replaced = [
            g.address for g in previous if self.grants.remove(claims.tenant_id, g.address, owner=claims.owner)
        ]
        evicted = self._trim(claims.tenant_id, policy, keep=address, now=now)
        already = existing is not None and existing.owner == claims.owner and existing.expires_at > now
        status: Status = "already" if already else "replaced" if replaced else "authorised"
        return self._answer(status, grant, tuple(replaced), revoked=replaced + evicted)

    def _trim(self, tenant_id: str, policy: AccessPolicy, *, keep: str, now: int) -> list[str]:
        """Evict grants over the tenant's maximum: expired ones, then guests, then members, oldest first."""
        rows = self.grants.all(tenant_id)
        excess = len(rows) - policy.max_grants
        if excess <= 0:
            return []
        order = sorted(
            (g for g in rows if g.address != keep),
            key=lambda g: (g.expires_at > now, g.kind is LinkKind.MEMBER, g.granted_at, g.address),
        )
        # Every concurrent caller computes the same order, so overlapping trims converge.
        return [g.address for g in order[:excess] if self.grants.remove(tenant_id, g.address, owner=g.owner)]

    def _answer(
        self,
        status: Status,
        grant: Grant,
        replaced: tuple[str, ...] = (),
        *,
        revoked: list[str] | None = None,
    ) -> Authorized:
        """The outcome; with `revoked` given the grant changed, and the running agents are told."""
        games = self._games.all(grant.tenant_id)
        running = tuple(g.name for g in games if g.state is GameState.RUNNING)
        if revoked is not None:
            self.firewall.changed(grant.tenant_id, [grant], revoked, now=grant.granted_at, running=running)
        return Authorized(status, grant, tuple(g.name for g in games), running, replaced)

    # -- reading ---------------------------------------------------------------------------------

    def check(self, source_ip: str, now: int) -> tuple[str, list[Grant]]:
        """The caller's address and its live grants, across tenants."""
        address = normalise_address(source_ip)
        live = [g for g in self.grants.for_address(address) if g.expires_at > now]
        return address, sorted(live, key=lambda g: g.expires_at, reverse=True)

    def member_grant(self, tenant_id: str, user_id: str, now: int) -> Grant | None:
        """The member's live grant in this tenant, if any."""
        live = [g for g in self.grants.of_owner(tenant_id, f"user#{user_id}") if g.expires_at > now]
        return max(live, key=lambda g: g.expires_at, default=None)

    def full_sync(self, tenant_id: str, now: int, ports: FirewallPorts | None = None) -> AgentRequest:
        """The `firewall.sync` (full) at the set's current version (read before the grants)."""
        version = self.grants.version(tenant_id)
        return full_sync_request(self.grants.live(tenant_id, now), version=version, ports=ports)

    def send_full_sync(
        self, tenant_id: str, game: str, now: int, ports: FirewallPorts | None = None
    ) -> AgentRequest:
        """Publish the full set (and, when given, the game's ports) to one game's agent."""
        return self.firewall.full(tenant_id, game, now, ports)

    # -- expiry ----------------------------------------------------------------------------------

    def reap(self, now: int | None = None) -> dict[str, list[str]]:
        """Remove every expired grant and tell each tenant's running agents; returns what was removed."""
        now = int(time.time()) if now is None else now
        removed: dict[str, list[str]] = {}
        for tenant_id, address in self.grants.expired(now):
            if self.grants.remove(tenant_id, address, expired_by=now):
                removed.setdefault(tenant_id, []).append(address)
        for tenant_id, addresses in removed.items():
            self.firewall.changed(tenant_id, [], addresses, now=now)
        return removed
