"""Claiming a new game's name from a submitted /newgame form, custom or from the catalogue: the plan's
limits first, then one conditional write (CREATING) that starts the CreateGame workflow."""

from __future__ import annotations

from chalicelib.commands.context import Context
from chalicelib.games import Game, GameSettings, SettingChanges
from chalicelib.tenancy import Tenant, Usage, plan_named

__all__ = ["claim_game"]


def claim_game(
    ctx: Context, name: str, description: str, settings: SettingChanges | None = None
) -> tuple[Game, Tenant]:
    """The claimed game (its `settings` applied in the same write) and its tenant.

    Raises:
        Forbidden: the plan allows no more games, or not the size asked for.
        Conflict: the name is taken.  Nothing is written when either is raised.
    """
    from chalicelib.lifecycle import begin_create, reply_ref

    tenant = ctx.services.tenants.require(ctx.tenant_id)
    plan = plan_named(tenant.plan)
    plan.check_new_game(Usage(games=len(ctx.services.games.all(ctx.tenant_id)), running=0))
    wanted = settings or {}
    plan.check_instance(wanted.get("instance_type", GameSettings.instance_type))
    if "disk_gb" in wanted:
        plan.check_disk(wanted["disk_gb"])
    it = ctx.interaction
    game = begin_create(
        ctx.lifecycle,
        ctx.tenant_id,
        name,
        description=description,
        created_by=it.user_id,
        interaction_id=it.id,
        reply=reply_ref(it.application_id, it.token),
        settings=settings,
    )
    return game, tenant
