"""Taking access back (issue 15): a member's addresses, a guest link with every address it let in, or
everything, and the list an admin reads first (/access).

A revocation deletes the grant rows (each only if it still belongs to the owner revoked, so a grant taken
over meanwhile stays), then sends the running agents one numbered delta (chalicelib/access/firewall.py):
the addresses are off the game firewalls at once. A withdrawn guest link is marked on its row, which
`GrantStore.use_guest_link` checks, so the link lets nobody in afterwards, though its token still opens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.access.firewall import FirewallSync
from chalicelib.access.store import Grant, GrantStore
from chalicelib.access.tokens import LinkKind

__all__ = ["AccessEntry", "Revocations", "Revoked"]


@dataclass(frozen=True)
class AccessEntry:
    """One live grant as an admin sees it: the address, whose it is, who let it in, until when."""

    grant: Grant
    issued_by: str | None  # guests: the member who made their link; members let themselves in


@dataclass(frozen=True)
class Revoked:
    """What a revocation took away: the addresses, and the guest links withdrawn."""

    addresses: tuple[str, ...]
    links: tuple[str, ...] = ()
    games_told: tuple[str, ...] = ()
    browsers: int = 0  # push subscriptions forgotten (they would authorise an address by themselves)


class Revocations:
    """Lists and revokes a tenant's grants; every method takes the tenant id explicitly."""

    def __init__(
        self,
        grants: GrantStore,
        firewall: FirewallSync,
        forget: Callable[[str, str | None], int] = lambda _tenant, _user: 0,
    ) -> None:
        self._grants = grants
        self._firewall = firewall
        self._forget = forget  # deletes a member's push subscriptions (everyone's with None)

    def entries(self, tenant_id: str, now: int) -> list[AccessEntry]:
        """Every live grant, members first, then guests by link, each group by address."""
        issuers = {link.link_id: link.issued_by for link in self._grants.guest_links(tenant_id)}
        live = sorted(
            self._grants.live(tenant_id, now),
            key=lambda g: (g.kind is not LinkKind.MEMBER, g.owner, g.address),
        )
        return [
            AccessEntry(
                g, issuers.get(g.owner.removeprefix("link#")) if g.owner.startswith("link#") else None
            )
            for g in live
        ]

    def member(self, tenant_id: str, user_id: str, now: int) -> Revoked:
        """Take every address of one member off the firewalls, and forget their push browsers."""
        done = self._owner(tenant_id, f"user#{user_id}", now)
        return Revoked(done.addresses, (), done.games_told, self._forget(tenant_id, user_id))

    def guest_link(self, tenant_id: str, link_id: str, now: int) -> Revoked:
        """Withdraw a guest link and take every address it let in off the firewalls."""
        self._grants.revoke_guest_link(tenant_id, link_id, now)
        done = self._owner(tenant_id, f"link#{link_id}", now)
        return Revoked(done.addresses, (link_id,), done.games_told)

    def everything(self, tenant_id: str, now: int) -> Revoked:
        """Every address off the firewalls and every guest link withdrawn."""
        links = tuple(
            link.link_id
            for link in self._grants.guest_links(tenant_id)
            if link.revoked_at is None and (link.expires_at is None or link.expires_at > now)
        )
        for link_id in links:
            self._grants.revoke_guest_link(tenant_id, link_id, now)
        removed = [
            g.address
            for g in self._grants.all(tenant_id)
            if self._grants.remove(tenant_id, g.address, owner=g.owner)
        ]
        told = self._firewall.changed(tenant_id, [], removed, now=now)
        return Revoked(tuple(removed), links, tuple(told), self._forget(tenant_id, None))

    def _owner(self, tenant_id: str, owner: str, now: int) -> Revoked:
        removed = [
            g.address
            for g in self._grants.of_owner(tenant_id, owner)
            if self._grants.remove(tenant_id, g.address, owner=owner)
        ]
        told = self._firewall.changed(tenant_id, [], removed, now=now)
        return Revoked(tuple(removed), (), tuple(told))
