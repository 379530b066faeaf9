"""The on-host nftables firewall: game ports and the SFTP port only for granted addresses.

A table of its own (``inet <table>``) holds two timeout sets; each element's timeout is the grant's
remaining lifetime, so the kernel expires access by itself even if the agent dies. Every change is
one ``nft -f -`` transaction: a full sync replaces the whole table (rules and elements) atomically;
a delta upserts with ``add; delete; add … timeout N`` because ``add`` of an existing element does not
refresh its timeout on every kernel (feasibility.md §7). Established flows, loopback and every other
port (the management path) are left alone. The desired grants are kept on disk and re-applied on
start and periodically, so a reboot or a manual ``nft flush ruleset`` heals.

Versions (contract/README.md, ``firewall.sync``): the backend numbers its grant set. A full sync sets
the version; a delta applies only on top of the version before it, so a lost or reordered delta is never
applied out of order: it is skipped, and the agent asks for the full set instead (``firewall.resync``).
A full sync may also carry the game's ports (``/openport`` on a running game): the chain covers them in
the same transaction.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from .protocol import FirewallMode, FirewallPorts, FirewallSync, Grant
from .seams import Clock, Runner

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SET_V4: Final = "allowed_v4"
SET_V6: Final = "allowed_v6"


def _set_of(addr: Address) -> str:
    return SET_V4 if addr.version == 4 else SET_V6


def _ports(ports: Iterable[int]) -> str:
    return "{ " + ", ".join(str(p) for p in sorted(set(ports))) + " }"


class Firewall:
    """Keeps ``table inet <name>`` equal to the current grants."""

    def __init__(
        self, *, table: str, tcp_ports: Iterable[int], udp_ports: Iterable[int], runner: Runner,
        clock: Clock, state_file: Path | None, nft: Sequence[str] = ("nft",), always_tcp: Iterable[int] = (),
    ) -> None:
        self.table = table
        self._always_tcp = frozenset(always_tcp)  # the SFTP port: filtered whatever the game's ports
        self._tcp = frozenset(tcp_ports) | self._always_tcp
        self._udp = frozenset(udp_ports)
        # The backend's version of the grant set last applied in order; None until a full sync.
        self.version: int | None = None
        self._runner = runner
        self._clock = clock
        self._state_file = state_file
        self._nft = tuple(nft)
        self._lock = threading.Lock()
        self._grants: dict[Address, float] = self._load()

    def grants(self) -> dict[Address, float]:
        with self._lock:
            return dict(self._grants)

    def ports(self) -> tuple[frozenset[int], frozenset[int]]:
        """The (tcp, udp) ports the chain filters now."""
        with self._lock:
            return self._tcp, self._udp

    def render_table(self, grants: dict[Address, float]) -> str:
        """The whole table, with each live grant's remaining lifetime as its timeout."""
        now = self._clock.now()
        elements: dict[str, list[str]] = {SET_V4: [], SET_V6: []}
        for addr, expires in sorted(grants.items(), key=lambda kv: (kv[0].version, str(kv[0]))):
            ttl = math.ceil(expires - now)
            if ttl > 0:
                elements[_set_of(addr)].append(f"{addr} timeout {ttl}s")
        lines = [f"table inet {self.table} {{"]
        for name, kind in ((SET_V4, "ipv4_addr"), (SET_V6, "ipv6_addr")):
            elems = f" elements = {{ {', '.join(elements[name])} }};" if elements[name] else ""
            lines.append(f"  set {name} {{ type {kind}; flags timeout;{elems} }}")
        lines += [
            "  chain input {",
            "    type filter hook input priority filter - 10; policy accept;",
            "    ct state established,related accept",
            '    iifname "lo" accept',
        ]
        for proto, ports in (("tcp", self._tcp), ("udp", self._udp)):
            if ports:
                lines += [
                    f"    {proto} dport {_ports(ports)} ip saddr @{SET_V4} accept",
                    f"    {proto} dport {_ports(ports)} ip6 saddr @{SET_V6} accept",
                    f"    {proto} dport {_ports(ports)} counter drop",
                ]
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def reconcile(self) -> int:
        """Replace the table with the desired state in one transaction; returns live grants."""
        with self._lock:
            self._prune()
            batch = f"add table inet {self.table}\ndelete table inet {self.table}\n"
            batch += self.render_table(self._grants)
            self._apply(batch)
            return len(self._grants)

    def sync(self, req: FirewallSync) -> dict[str, int | None]:
        """Apply a full or delta sync from the backend; returns counts for the reply.

        A versioned delta that does not follow the current version is skipped (nothing applied): the
        reply's ``version`` then stays below the request's, and the caller asks for the full set.
        """
        now = self._clock.now()
        live = [g for g in req.grants if g.expires_at > now]
        with self._lock:
            if req.mode is FirewallMode.FULL:
                before = set(self._grants)
                self._grants = {g.address: g.expires_at for g in live}
                self._set_ports(req.ports)
                self._prune()
                batch = f"add table inet {self.table}\ndelete table inet {self.table}\n"
                batch += self.render_table(self._grants)
                removed = len(before - set(self._grants))
                self._apply(batch)
                self.version = req.version
            elif req.version is not None and (self.version is None or req.version != self.version + 1):
                # Out of order: a duplicate (already applied) or a gap (one was lost): apply nothing.
                return self._counts(0, 0)
            else:
                batch = self._delta(live, req.revoke)
                removed = sum(1 for a in req.revoke if a in self._grants)
                for a in req.revoke:
                    self._grants.pop(a, None)
                for g in live:
                    self._grants[g.address] = g.expires_at
                self._prune()
                if batch:
                    self._apply(batch)
                if req.version is not None:
                    self.version = req.version
            return self._counts(len(live), removed)

    def _counts(self, applied: int, removed: int) -> dict[str, int | None]:
        v4 = sum(1 for a in self._grants if a.version == 4)
        return {"applied": applied, "removed": removed, "v4": v4, "v6": len(self._grants) - v4,
                "version": self.version}

    def _set_ports(self, ports: FirewallPorts | None) -> None:
        if ports is not None:
            self._tcp = frozenset(ports.tcp) | self._always_tcp
            self._udp = frozenset(ports.udp)

    def remove(self) -> None:
        """Delete the table (agent uninstall, tests)."""
        self._apply(f"add table inet {self.table}\ndelete table inet {self.table}\n")

    def list_set(self, name: str) -> list[str]:
        """Addresses currently in one of the sets, read back from the kernel."""
        out = self._runner.run([*self._nft, "-j", "list", "set", "inet", self.table, name]).stdout
        items = json.loads(out)["nftables"]
        elems: list[str] = []
        for item in items:
            # An empty set has no "elem" key (feasibility.md §7).
            for e in item.get("set", {}).get("elem", []):
                elems.append(e["elem"]["val"] if isinstance(e, dict) else str(e))
        return elems

    def _delta(self, grants: Sequence[Grant], revoke: Sequence[Address]) -> str:
        now = self._clock.now()
        t = self.table
        lines = []
        for addr in revoke:
            s = _set_of(addr)
            # delete of an absent element fails the whole batch, so add it first.
            lines += [f"add element inet {t} {s} {{ {addr} }}", f"delete element inet {t} {s} {{ {addr} }}"]
        for g in grants:
            s, ttl = _set_of(g.address), math.ceil(g.expires_at - now)
            lines += [
                f"add element inet {t} {s} {{ {g.address} }}",
                f"delete element inet {t} {s} {{ {g.address} }}",
                f"add element inet {t} {s} {{ {g.address} timeout {ttl}s }}",
            ]
        return "\n".join(lines) + "\n" if lines else ""

    def _apply(self, batch: str) -> None:
        self._runner.run([*self._nft, "-f", "-"], input_text=batch, timeout=15)
        self._save()

    def _prune(self) -> None:
        now = self._clock.now()
        self._grants = {a: e for a, e in self._grants.items() if e > now}

    def _load(self) -> dict[Address, float]:
        if self._state_file is None:
            return {}
        try:
            data = json.loads(self._state_file.read_text())
            return {ipaddress.ip_address(a): float(e) for a, e in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable grant state %s: %s", self._state_file, exc)
            return {}

    def _save(self) -> None:
        if self._state_file is None:
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({str(a): e for a, e in self._grants.items()}))
        os.replace(tmp, self._state_file)
