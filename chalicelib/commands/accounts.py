"""Connecting a server's own AWS account: the quick-create link, the role ARN form, verification."""

from __future__ import annotations

from chalicelib.commands.admin import MANAGE, account_summary, require_games_stay
from chalicelib.commands.catalogue import jobs, registry
from chalicelib.commands.context import Context
from chalicelib.discord import (
    ActionRow,
    Button,
    ButtonStyle,
    Deferred,
    Embed,
    Job,
    LinkButton,
    Modal,
    Reply,
    TextInput,
    Update,
)
from chalicelib.tenancy import check_role_arn, quick_create_link

__all__ = ["connect", "role_form", "save_role", "verify_role"]


def _template_url(ctx: Context) -> str:
    s = ctx.services.settings
    return s.customer_template_url or f"{s.site_url}/gangway-customer-role.yaml"


@registry.route("setup:connect", permission=MANAGE)
def connect(ctx: Context) -> Reply:
    """Step 1: create the role in the customer's account from our template, with their ExternalId."""
    tenant = ctx.services.tenants.offer_customer_account(ctx.tenant_id)
    link = quick_create_link(
        template_url=_template_url(ctx),
        region=tenant.region,
        external_id=tenant.external_id or "",
        hosting_account=ctx.services.hosting_account(),
    )
    text = (
        "**Connect your AWS account** (games, volumes and snapshots then live and are billed there)\n"
        "1. Open *Create the role in AWS* while signed in to your account, and create the stack. It makes "
        "one IAM role that only gangway can assume, and only with this server's ExternalId "
        f"`{tenant.external_id}`. It can manage only resources tagged for gangway.\n"
        "2. Copy the stack's `RoleArn` output, press *Enter the role ARN*, and paste it.\n"
        "3. Press *Verify*: gangway checks every permission it needs and tells you what is missing."
    )
    return Reply(
        content=text,
        components=(
            ActionRow(
                (
                    LinkButton("Create the role in AWS", link),
                    LinkButton("View the template", _template_url(ctx)),
                    Button("Enter the role ARN", "setup:roleform", ButtonStyle.PRIMARY),
                )
            ),
        ),
        ephemeral=True,
    )


@registry.route("setup:roleform", permission=MANAGE)
def role_form(ctx: Context) -> Modal:
    """Step 2: a form for the role ARN and the region the games should run in."""
    tenant = ctx.services.tenants.require(ctx.tenant_id)
    return Modal(
        "setup:role",
        "Connect your AWS account",
        (
            TextInput(
                "role_arn",
                "Role ARN (the stack's RoleArn output)",
                value=tenant.pending_role_arn or "",
                placeholder="arn:aws:iam::123456789012:role/gangway-access-Role-…",
                max_length=200,
            ),
            TextInput(
                "region", "Region for your games", value=tenant.pending_region or tenant.region, max_length=20
            ),
        ),
    )


@registry.route("setup:role", permission=MANAGE)
def save_role(ctx: Context) -> Update:
    """The form was submitted: remember the role (unverified) and offer Verify."""
    fields = ctx.interaction.fields
    arn, region = check_role_arn(str(fields.get("role_arn", "")), str(fields.get("region", "")))
    tenant = ctx.services.tenants.set_pending_role(ctx.tenant_id, arn, region)
    return Update(
        embeds=(Embed(title="Verify the role", description=account_summary(tenant)),),
        components=(
            ActionRow(
                (
                    Button("Verify", "setup:verify", ButtonStyle.SUCCESS),
                    Button("Change the role ARN", "setup:roleform"),
                )
            ),
        ),
    )


@registry.route("setup:verify", permission=MANAGE)
def verify_role(ctx: Context) -> Deferred:
    """Step 3: assuming the role and checking permissions can take seconds, so it is a job."""
    return Deferred(Job("tenant.verify"), update=True)


@jobs.job("tenant.verify")
def verify_job(ctx: Context) -> Update:
    """Verify the pending role; record success (switching the account) or the problems found."""
    store = ctx.services.tenants
    tenant = store.require(ctx.tenant_id)
    if not tenant.pending_role_arn:
        return Update(
            content="There is no role waiting to be verified. Use `/setup` → Connect your AWS account."
        )
    region = tenant.pending_region or tenant.region
    result = ctx.services.verifier.verify(
        tenant, role_arn=tenant.pending_role_arn, region=region, actor=ctx.interaction.user_id
    )
    retry = (
        ActionRow(
            (
                Button("Verify again", "setup:verify", ButtonStyle.SUCCESS),
                Button("Change the role ARN", "setup:roleform"),
            )
        ),
    )
    if not result.ok:
        store.mark_verify_failed(ctx.tenant_id, "; ".join(result.problems))
        problems = "\n".join(f"• {p}" for p in result.problems)
        return Update(
            embeds=(
                Embed(
                    title="❌ The role isn't ready yet",
                    description=f"{problems}\n\nNothing was changed: "
                    "games keep running where they ran before. Fix the role (updating the stack "
                    "from the template usually does it), then verify again.",
                ),
            ),
            components=retry,
        )
    require_games_stay(ctx, account=result.account_id, region=region)
    tenant = store.mark_verified(
        ctx.tenant_id, role_arn=tenant.pending_role_arn, region=region, account_id=result.account_id
    )
    ctx.services.broker.forget(ctx.tenant_id)
    return Update(
        embeds=(
            Embed(
                title="✅ Your AWS account is connected",
                description=account_summary(tenant) + f"\nChecked: {', '.join(result.checked)}.",
            ),
        ),
        components=(),
    )
