"""`gangway doctor`: is this AWS account and this Discord application ready for gangway, and is the
deployment wired to them?

A deploy that half-works fails later, in front of players: a game that cannot start because the
account has no default VPC or a 5-vCPU quota, an image parameter that does not resolve for arm64, a
bot token reset in the portal, an endpoint URL pasted from another stage, commands registered from an
older build. Each check here is one small function that asks the real service once and returns one
`Check` (status, what it found, and what to do when it is not ok); `run` runs them all for a `Target`
(a deployed stage, `Target.deployed`, or the local stack, `Target.local`) and `table` prints them,
one line per check, so the same run works before a deploy (is the account ready?) and after it (is
the deployment wired?).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from chalicelib.config import DISCORD_API, Settings
from chalicelib.discord.rest import DiscordRest
from chalicelib.errors import DiscordApiError
from chalicelib.instances.images import ARCH_NAMES, ImageConfig, ImageRefused, image_for
from chalicelib.tenancy.plans import PLANS, Plan

__all__ = [
    "ARCHITECTURES",
    "QUOTAS",
    "Check",
    "Status",
    "Target",
    "check_bot_token",
    "check_commands",
    "check_default_vpc",
    "check_endpoint",
    "check_identity",
    "check_image",
    "check_quota",
    "failed",
    "run",
    "table",
]

Json = dict[str, Any]
ClientFactory = Callable[[str], Any]

# The vCPU quotas the plans' instances count against (all of them standard families: t, m).
QUOTAS: Final = (
    ("L-1216C47A", "On-Demand vCPUs", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("L-34B43A08", "Spot vCPUs", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
)
# The `{arch}` values of the image parameter (Debian's names), for x86_64 and arm64 instance types.
ARCHITECTURES: Final = ("amd64", "arm64")
_INTERACTIONS_PATH: Final = "/discord/interactions"


class Status(StrEnum):
    """How a check came out. Only `fail` makes `gangway doctor` exit non-zero."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, how it came out, what was found, what to do."""

    name: str
    status: Status
    found: str
    fix: str = ""


@dataclass(frozen=True)
class Target:
    """Where the checks look: one deployment's AWS region and Discord application.

    `stack` says which deployment this is ("stack gangway-dev" or "the local stack") and, when it does
    not exist yet (before the first deploy), `interactions_url` is empty and the checks that need a
    deployment say so instead of failing.
    """

    stack: str
    region: str
    endpoint_url: str | None
    discord_api_url: str
    application_id: str
    bot_token: str | None
    interactions_url: str
    image_parameter: str
    image_owner: str = Settings.image_owner
    guild: str | None = None
    register_hint: str = "gangway register"
    deployed_yet: bool = True

    @property
    def emulated(self) -> bool:
        return self.endpoint_url is not None

    @classmethod
    def local(cls, stack_json: Path, guild: str | None = None) -> Target:
        """The local stack that wrote `stack_json` (`make run`): its emulator and its Discord stand-in."""
        from devstack.stack import LOCAL_BOT_TOKEN

        info: Json = json.loads(stack_json.read_text())
        return cls(
            stack="the local stack",
            region="us-east-1",
            endpoint_url=info["aws_endpoint_url"],
            discord_api_url=info["discord_api_url"],
            application_id=info["application_id"],
            bot_token=LOCAL_BOT_TOKEN,
            interactions_url=info["api_url"].rstrip("/") + _INTERACTIONS_PATH,
            image_parameter=info.get("image_parameter") or Settings.image_parameter,
            image_owner=info.get("image_owner") or Settings.image_owner,
            guild=guild,
            register_hint="gangway register --local",
        )

    @classmethod
    def deployed(cls, stage: str, env: Mapping[str, str] | None = None, guild: str | None = None) -> Target:
        """Stage `stage` in the account and region of the environment's credentials: the stack's
        outputs and parameters, the bot token from its SecureString parameter (or DISCORD_BOT_TOKEN), and
        the image parameter the functions get (IMAGE_PARAMETER, or the default)."""
        from deploy.stack import Deployment

        e = dict(os.environ if env is None else env)
        region = e.get("AWS_DEFAULT_REGION") or e.get("AWS_REGION") or "us-east-1"
        dep = Deployment(
            stage, env=e, endpoint_url=e.get("AWS_ENDPOINT_URL") or None, region=region, say=lambda _: None
        )
        stack = dep.described() or {}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        return cls(
            stack=f"stack {dep.stack_name}" + ("" if stack else " (not deployed yet)"),
            region=dep.region,
            endpoint_url=dep.endpoint_url,
            discord_api_url=e.get("DISCORD_API_URL", DISCORD_API).rstrip("/"),
            application_id=e.get("DISCORD_APPLICATION_ID") or params.get("DiscordApplicationId", ""),
            bot_token=e.get("DISCORD_BOT_TOKEN") or dep.bot_token(),
            interactions_url=outputs.get("InteractionsEndpointURL", ""),
            image_parameter=Settings.from_env(e).image_parameter,
            image_owner=Settings.from_env(e).image_owner,
            guild=guild,
            register_hint=f"make deploy STAGE={stage}" + (f" GUILD={guild}" if guild else ""),
            deployed_yet=bool(stack),
        )


# -- AWS ---------------------------------------------------------------------------------------------


def check_identity(sts: Any, region: str) -> Check:
    """Who the credentials are, and where: the first thing to read before trusting any other line."""
    try:
        who = sts.get_caller_identity()
    except Exception as exc:  # no credentials, expired ones, or no network all end here
        return Check(
            "AWS identity",
            Status.FAIL,
            f"no caller identity in {region}: {_reason(exc)}",
            "set AWS credentials (AWS_PROFILE, or keys) and AWS_DEFAULT_REGION, then run doctor again",
        )
    return Check("AWS identity", Status.OK, f"{who['Arn']} (account {who['Account']}) in {region}")


def check_default_vpc(ec2: Any, region: str) -> Check:
    """Game instances launch into the default VPC; two zones let a Spot start fall back to another."""
    name = "default VPC"
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        return Check(
            name,
            Status.FAIL,
            f"{region} has no default VPC, so no game can start there",
            f"create one: aws ec2 create-default-vpc --region {region}",
        )
    vpc = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    zones = sorted({s["AvailabilityZone"] for s in subnets})
    if len(zones) < 2:
        return Check(
            name,
            Status.FAIL,
            f"{vpc} has subnets in {len(zones)} zone(s) ({', '.join(zones) or 'none'}); gangway needs two "
            "so a start can move to another zone when one has no capacity",
            f"add a default subnet in another zone: aws ec2 create-default-subnet --region {region} "
            "--availability-zone <zone>",
        )
    return Check(name, Status.OK, f"{vpc} with subnets in {len(zones)} zones")


def _vcpus(ec2: Any, instance_types: Sequence[str]) -> dict[str, int]:
    found = ec2.describe_instance_types(InstanceTypes=sorted(set(instance_types)))["InstanceTypes"]
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in found}


def _quota_value(quotas: Any, code: str) -> float:
    """The applied value, or AWS's default where the account never had one applied."""
    try:
        return float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    except quotas.exceptions.NoSuchResourceException:
        return float(
            quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        )


def check_quota(
    quotas: Any, ec2: Any, region: str, quota: tuple[str, str], plans: Sequence[Plan] = tuple(PLANS.values())
) -> Check:
    """A vCPU quota against each plan's largest instance: one game of each plan must be able to start.

    A quota below the largest plan's instance but above the smallest is a warning (some plans work);
    below every plan's it is a failure. New accounts often start at a few vCPUs.
    """
    code, label = quota
    name = f"{label} quota"
    try:
        value = _quota_value(quotas, code)
    except Exception as exc:
        return Check(
            name,
            Status.FAIL,
            f"could not read quota {code} in {region}: {_reason(exc)}",
            "allow servicequotas:GetServiceQuota and GetAWSDefaultServiceQuota for these credentials, "
            f"or look up {code} in the Service Quotas console",
        )
    cpus = _vcpus(ec2, [p.largest_instance for p in plans])
    need = {p.name: (p.largest_instance, cpus[p.largest_instance]) for p in plans}
    fits = [p for p, (_, n) in need.items() if n <= value]
    largest_plan, (largest_type, most) = max(need.items(), key=lambda kv: kv[1][1])
    found = f"{value:g} vCPUs; the {largest_plan} plan's {largest_type} needs {most}"
    if len(fits) == len(need):
        return Check(name, Status.OK, found)
    fix = (
        f"request {most:g} or more: aws service-quotas request-service-quota-increase --service-code ec2 "
        f"--quota-code {code} --desired-value {most} --region {region}"
    )
    if fits:
        return Check(name, Status.WARN, f"{found}; enough for the {', '.join(fits)} plan(s) only", fix)
    return Check(name, Status.FAIL, f"{found}; not enough for any plan", fix)


def check_image(ec2: Any, ssm: Any, image: ImageConfig, arch: str) -> Check:
    """The image a launch on `arch` would boot, resolved as the launch resolves it: the publisher's
    parameter, then the image itself (it exists here, is available, is the publisher's account's and
    is built for the architecture). Otherwise no game on that architecture can start."""
    name = f"image {arch}"
    architecture = next(ec2_name for ec2_name, debian in ARCH_NAMES.items() if debian == arch)
    path = image.parameter.replace("{arch}", arch)
    try:
        found = image_for(ec2, ssm, architecture, image)
    except ImageRefused as exc:
        return Check(
            name,
            Status.FAIL,
            exc.message,
            "set IMAGE_PARAMETER to a parameter that exists in this region ({arch} is replaced by amd64 "
            "and arm64), or IMAGE_ID to an image of IMAGE_OWNER's",
        )
    except Exception as exc:
        return Check(name, Status.FAIL, f"{path} does not resolve: {_reason(exc)}", "check the region")
    return Check(name, Status.OK, f"{found.image_id} ({found.source})")


# -- Discord -------------------------------------------------------------------------------------------


_NEEDS_TOKEN: Final = "needs a valid bot token (see the bot token line)"  # noqa: S105 - a message


def check_bot_token(rest: DiscordRest) -> tuple[Check, Json | None]:
    """The token registers the commands and posts when an interaction token expired; a token reset
    in the portal breaks both silently. Returns the bot user, for the checks after it."""
    name = "bot token"
    try:
        user: Json = rest.request("GET", "/users/@me", bot=True)
    except DiscordApiError as exc:
        what = "Discord refused it (401)" if exc.status == 401 else f"Discord answered {exc.status}"
        return (
            Check(
                name,
                Status.FAIL,
                f"{what}: {exc}",
                "reset the token (Developer Portal, Bot), then DISCORD_BOT_TOKEN=<new> make rotate-token "
                "STAGE=<stage>",
            ),
            None,
        )
    return Check(name, Status.OK, f"valid: bot {user.get('username')} ({user.get('id')})"), user


def check_endpoint(rest: DiscordRest, application_id: str, expected: str) -> Check:
    """Discord sends interactions to the URL set in the portal; one from another stage or an old API
    answers for a different deployment (or nobody), so commands seem dead."""
    name = "interactions endpoint"
    app: Json = rest.request("GET", "/applications/@me", bot=True)
    if application_id and str(app.get("id")) != application_id:
        return Check(
            name,
            Status.FAIL,
            f"the bot token belongs to application {app.get('id')}, this deployment is for {application_id}",
            "use the bot token and application id of the same application (Developer Portal)",
        )
    actual = app.get("interactions_endpoint_url") or ""
    if not expected:
        return Check(name, Status.SKIP, f"no deployment yet; Discord has {actual or 'none'}", "")
    if actual.rstrip("/") != expected.rstrip("/"):
        return Check(
            name,
            Status.FAIL,
            f"Discord sends interactions to {actual or '(none)'}, not to this deployment",
            f"paste {expected} as Interactions Endpoint URL (Developer Portal, General Information)",
        )
    return Check(name, Status.OK, expected)


def _absent(value: Any) -> bool:
    return value is None or value is False or value in ([], {}, "")


def _same(model: Any, registered: Any) -> bool:
    """Whether Discord's copy holds what the model says. Discord adds ids and versions and leaves out
    fields at their defaults, so extra keys on its side and absent-versus-empty do not count."""
    if _absent(model):
        return _absent(registered)
    if isinstance(model, dict):
        return isinstance(registered, dict) and all(_same(v, registered.get(k)) for k, v in model.items())
    if isinstance(model, list):
        return (
            isinstance(registered, list)
            and len(model) == len(registered)
            and all(_same(m, r) for m, r in zip(model, registered, strict=True))
        )
    return bool(model == registered)


def check_commands(rest: DiscordRest, application_id: str, model: Sequence[Json], target: Target) -> Check:
    """The registered commands must be the model's: a command renamed or an option added since the last
    registration shows players an old form that the app then refuses."""
    scope = f"guild {target.guild}" if target.guild else "global"
    name = f"commands ({scope})"
    path = (
        f"/applications/{application_id}" + (f"/guilds/{target.guild}" if target.guild else "") + "/commands"
    )
    registered: list[Json] = rest.request("GET", path, bot=True)
    ours = {c["name"]: c for c in model}
    theirs = {c["name"]: c for c in registered}
    missing = sorted(ours.keys() - theirs.keys())
    extra = sorted(theirs.keys() - ours.keys())
    differ = sorted(n for n in ours.keys() & theirs.keys() if not _same(ours[n], theirs[n]))
    if not (missing or extra or differ):
        return Check(name, Status.OK, f"the {len(ours)} registered commands are the model's")
    parts = [
        f"{label}: {', '.join('/' + n for n in names)}"
        for label, names in (("missing", missing), ("not ours", extra), ("different", differ))
        if names
    ]
    return Check(name, Status.FAIL, "; ".join(parts), f"register them again: {target.register_hint}")


# -- all of them ---------------------------------------------------------------------------------------


def run(
    target: Target,
    client: ClientFactory,
    *,
    quotas: Any | None = None,
    model: Sequence[Json] | None = None,
    rest: DiscordRest | None = None,
) -> list[Check]:
    """Every check for `target`. `client(service)` makes the AWS clients; `quotas` is the Service
    Quotas client (by default `client("service-quotas")` in AWS; the emulator has no EC2 quotas, so
    there the quota lines are skipped unless one is given). `model` is the registration body
    (by default the command catalogue's)."""
    checks = [check_identity(client("sts"), target.region)]
    ec2 = client("ec2")
    checks.append(_guard("default VPC", lambda: check_default_vpc(ec2, target.region)))
    if quotas is None and target.emulated:
        checks += [
            Check(f"{label} quota", Status.SKIP, f"the emulator has no EC2 quotas; in AWS this reads {code}")
            for code, label, _ in QUOTAS
        ]
    else:
        sq = quotas if quotas is not None else client("service-quotas")
        for code, label, _ in QUOTAS:
            checks.append(_quota_line(sq, ec2, target.region, (code, label)))
    ssm = client("ssm")
    image = ImageConfig(target.image_parameter, target.image_owner)
    checks += [check_image(ec2, ssm, image, arch) for arch in ARCHITECTURES]
    checks += _discord_checks(target, model, rest)
    return checks


def _quota_line(quotas: Any, ec2: Any, region: str, quota: tuple[str, str]) -> Check:
    return _guard(f"{quota[1]} quota", lambda: check_quota(quotas, ec2, region, quota))


def _discord_checks(target: Target, model: Sequence[Json] | None, rest: DiscordRest | None) -> list[Check]:
    if not target.bot_token:
        return [
            Check(
                "bot token",
                Status.FAIL,
                f"no bot token for {target.stack}",
                "set DISCORD_BOT_TOKEN (make deploy also stores it in gangway/<stage>/discord-bot-token)",
            ),
            Check("interactions endpoint", Status.SKIP, _NEEDS_TOKEN),
            Check("commands", Status.SKIP, _NEEDS_TOKEN),
        ]
    token = target.bot_token
    rest = rest or DiscordRest(target.discord_api_url, lambda: token, max_wait=5.0)
    token_check, user = check_bot_token(rest)
    if user is None:
        return [
            token_check,
            Check("interactions endpoint", Status.SKIP, _NEEDS_TOKEN),
            Check("commands", Status.SKIP, _NEEDS_TOKEN),
        ]
    app_id = target.application_id or str(user.get("id", ""))
    if model is None:
        from chalicelib.commands import registry

        model = registry.to_payload()
    body = model
    if not target.deployed_yet:
        commands = Check("commands", Status.SKIP, f"{target.stack}: make deploy registers them")
        return [token_check, check_endpoint(rest, target.application_id, ""), commands]
    return [
        token_check,
        _guard(
            "interactions endpoint",
            lambda: check_endpoint(rest, target.application_id, target.interactions_url),
        ),
        _guard("commands", lambda: check_commands(rest, app_id, body, target)),
    ]


def _guard(name: str, check: Callable[[], Check]) -> Check:
    """Run one check; an unexpected error becomes its failing line instead of hiding the others."""
    try:
        return check()
    except Exception as exc:
        return Check(
            name, Status.FAIL, f"could not check: {_reason(exc)}", "fix the error above and run doctor again"
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def failed(checks: Sequence[Check]) -> bool:
    """Whether any check failed (warnings and skips do not count)."""
    return any(c.status is Status.FAIL for c in checks)


def table(checks: Sequence[Check], target: Target) -> str:
    """The report: a heading naming the deployment, then one aligned line per check, its fix last."""
    width = max(len(c.name) for c in checks)
    lines = [f"gangway doctor: {target.stack}, {target.region}", f"{'check':<{width}}  {'status':<6}  result"]
    for c in checks:
        line = f"{c.name:<{width}}  {c.status.value:<6}  {c.found}"
        if c.fix and c.status is not Status.OK:
            line += f"  -> fix: {c.fix}"
        lines.append(line)
    bad = sum(c.status is Status.FAIL for c in checks)
    others = ", ".join(
        f"{n} {word}"
        for word, s in (("warning(s)", Status.WARN), ("skipped", Status.SKIP))
        if (n := sum(c.status is s for c in checks))
    )
    if bad:
        lines.append(f"{bad} check(s) failed: fix each as its line says, then run doctor again")
    else:
        lines.append("no check failed" + (f" ({others})" if others else ": all passed"))
    return "\n".join(lines)
