"""Plans: what a tenant may use, checked where an action starts (/newgame, /start, /extenddisk).

`free` is every tenant's default; the operator sets others with `gangway plan`. A limit that stops an
action says which limit and what the plan allows, so an admin knows what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chalicelib.errors import Forbidden, ValidationError

__all__ = ["PLANS", "Plan", "Usage", "plan_named"]

# Instance sizes in growing order within a family; a plan caps the size, not the family.
_SIZES: Final = ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge")


def _size_rank(instance_type: str) -> int:
    _, _, size = instance_type.partition(".")
    if size not in _SIZES:
        raise ValidationError(f"`{instance_type}` isn't an instance type gangway knows (like `t3.large`).")
    return _SIZES.index(size)


@dataclass(frozen=True)
class Usage:
    """What a tenant uses now, for comparing against its plan."""

    games: int
    running: int


@dataclass(frozen=True)
class Plan:
    """Limits of one plan."""

    name: str
    max_games: int
    max_running: int
    largest_instance: str
    max_disk_gb: int
    snapshot_retention: int

    def check_new_game(self, usage: Usage) -> None:
        """Raises Forbidden when one more game would exceed the plan."""
        if usage.games >= self.max_games:
            raise Forbidden(
                f"The **{self.name}** plan allows {self.max_games} games and this server has {usage.games}. "
                "Delete one with `/deletegame`, or ask the operator for a bigger plan."
            )

    def check_start(self, usage: Usage) -> None:
        """Raises Forbidden when one more running game would exceed the plan."""
        if usage.running >= self.max_running:
            raise Forbidden(
                f"The **{self.name}** plan allows {self.max_running} game(s) running at once and "
                f"{usage.running} already run. Stop one with `/stop` first."
            )

    def check_instance(self, instance_type: str) -> None:
        """Raises Forbidden when `instance_type` is larger than the plan allows."""
        if _size_rank(instance_type) > _size_rank(self.largest_instance):
            raise Forbidden(
                f"The **{self.name}** plan allows instances up to `{self.largest_instance}`; "
                f"`{instance_type}` is larger."
            )

    def check_disk(self, size_gb: int) -> None:
        """Raises Forbidden when a disk of `size_gb` is larger than the plan allows."""
        if size_gb > self.max_disk_gb:
            raise Forbidden(
                f"The **{self.name}** plan allows disks up to {self.max_disk_gb} GB, not {size_gb} GB."
            )


PLANS: Final[dict[str, Plan]] = {
    p.name: p
    for p in (
        Plan(
            "free",
            max_games=2,
            max_running=1,
            largest_instance="t3.large",
            max_disk_gb=32,
            snapshot_retention=3,
        ),
        Plan(
            "community",
            max_games=8,
            max_running=3,
            largest_instance="m6i.2xlarge",
            max_disk_gb=128,
            snapshot_retention=5,
        ),
        Plan(
            "pro",
            max_games=32,
            max_running=10,
            largest_instance="m6i.8xlarge",
            max_disk_gb=512,
            snapshot_retention=10,
        ),
    )
}


def plan_named(name: str) -> Plan:
    """The plan called `name`; unknown names fall back to free (a removed plan must not unlock more)."""
    return PLANS.get(name, PLANS["free"])
