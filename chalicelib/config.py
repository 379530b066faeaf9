"""Settings: the only module that reads the environment (style lesson L15).

`.chalice/config.json` sets these variables per stage; the local stack and tests set them too. Everything
else receives a `Settings` value, so a test can build one by hand and nothing reads `os.environ` behind
its back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Final

__all__ = ["Settings", "environment_credentials", "parameter_name", "settings"]

DISCORD_API: Final = "https://discord.com/api/v10"


def parameter_name(stage: str, name: str) -> str:
    """Where a stage's SecureString parameter lives: /gangway/<stage>/<name> (SSM wants the leading /)."""
    return f"/gangway/{stage}/{name}"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number of seconds from the environment, or a startup error that names the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything configurable, typed, with the defaults a fresh deployment uses."""

    stage: str = "local"
    region: str = "us-east-1"
    discord_public_key: str = ""
    discord_application_id: str = ""
    discord_api_url: str = DISCORD_API
    # Locally the token comes straight from the environment; in AWS it is an SSM SecureString parameter
    # (standard tier: no charge; encrypted with the AWS-managed aws/ssm key).
    discord_bot_token: str | None = field(default=None, repr=False)
    discord_bot_token_parameter: str | None = None
    tenants_table: str = "gangway-tenants"
    audit_table: str = "gangway-audit"
    # The hosting account customers' roles trust (its id; looked up with STS when empty), and where
    # CloudFormation's quick-create link finds the customer role template (an S3 https URL in AWS).
    hosting_account_id: str = ""
    customer_template_url: str = ""
    # The role the broker assumes for a tenant hosted in gangway's own account, tagged with the tenant
    # (tenancy/broker.py); empty only where no such role exists, and then the function's own credentials.
    hosting_role_arn: str = ""
    games_table: str = "gangway-games"
    interactions_table: str = "gangway-interactions"
    jobs_queue: str = "gangway-jobs"
    # Workflows: the steps queue every Task state sends to, and the state machines' name prefix.
    steps_queue: str = "gangway-steps"
    # Agent events and replies: the IoT rule (locally the devstack's MQTT bridge) sends them to the intake
    # queue; the agent_intake function re-sends each with its tenant as MessageGroupId to the agent-events
    # queue, a fair queue, so one tenant's flood cannot delay another's events (docs/scale.md).
    agent_intake_queue: str = "gangway-agent-intake"
    agent_events_queue: str = "gangway-agent-events"
    workflows_prefix: str = "gangway"
    aws_endpoint_url: str | None = None
    xray_daemon_address: str | None = None
    tracing: bool = False
    in_lambda: bool = False
    site_url: str = ""
    # A job that failed this many deliveries tells the user instead of being retried again.
    job_max_receives: int = 3
    # How long a warm Lambda trusts its cached copy of a tenant's roles.
    tenant_cache_seconds: float = 30.0
    # Player access (chalicelib/access): grants, guest-link uses and rate counters, and the SecureString
    # parameter holding the AES keys that seal IPAuth tokens (unset: /gangway/<stage>/ipauth-keys).
    grants_table: str = "gangway-grants"
    access_table: str = "gangway-access"
    ratelimit_table: str = "gangway-ratelimits"
    ipauth_keys_parameter: str = "/gangway/local/ipauth-keys"
    # Where agent commands go: a broker URL locally (mqtt://host:port); in AWS the iot-data API
    # (IOT_DATA_ENDPOINT is the account's `iot:Data-ATS` endpoint, https://…-ats.iot.<region>.amazonaws.com).
    mqtt_url: str | None = None
    iot_data_endpoint: str | None = None
    # Where game instances get their agent (chalicelib/instances/wheelhouse.py): the wheelhouse `make deploy`
    # uploads, s3://<artifacts bucket>/agent/<sha256>. Empty: no game can start (the step says why).
    agent_wheelhouse: str = ""
    # The machine image (chalicelib/instances/images.py): the publisher's public SSM parameter, `{arch}`
    # being amd64 or arm64 after the instance type's architecture; the account that must own the image
    # (Debian's); and optionally one pinned image id, owner-checked all the same.
    image_parameter: str = "/aws/service/debian/release/12/latest/{arch}"
    image_owner: str = "136693071363"
    image_id: str = ""
    # The AWS console's federation endpoint /terminal asks for a sign-in token (a stand-in in tests).
    signin_url: str = "https://signin.aws.amazon.com/federation"
    # Web push (chalicelib/push): subscriptions and pending pushes, the VAPID key pair's SecureString
    # parameter (JSON {"public", "private"}; unset: /gangway/<stage>/vapid-keys), its `sub` claim, how
    # long a push flow waits for a device, and which push services subscriptions may point at (host
    # suffixes, https only; PUSH_LOOPBACK_HTTP lets the local stack's stand-in on http://127.0.0.1 in).
    push_table: str = "gangway-push"
    vapid_parameter: str = "/gangway/local/vapid-keys"
    # The public half alone (unset: /gangway/<stage>/vapid-public): what the API function reads to serve
    # the page, so its role never needs the private key's parameter.
    vapid_public_parameter: str = "/gangway/local/vapid-public"
    vapid_subject: str = "mailto:gangway@example.invalid"
    push_wait_seconds: int = 60
    push_hosts: tuple[str, ...] = (
        "fcm.googleapis.com",
        "push.services.mozilla.com",
        "push.apple.com",
        "notify.windows.com",
    )
    push_loopback_http: bool = False
    # Where AWS credentials come from (chalicelib/credentials.py): unset in AWS (the Lambda role's);
    # locally a `module:function` naming the current function's identity, so the emulator enforces IAM.
    credentials_source: str | None = None
    # Idle shutdown, written into each instance's agent.toml at launch (lifecycle/bootstrap.py): how often
    # the agent counts players, how long a game may start before it can be idle, and the stage's default
    # warning and shutdown times without players (a game's own `/editgame idle_minutes` replaces both).
    idle_check_s: int = 60
    idle_grace_s: int = 600
    idle_warn_s: int = 1200
    idle_stop_s: int = 1800

    def __post_init__(self) -> None:
        if self.idle_check_s < 1:
            raise ValueError(f"IDLE_CHECK_S must be at least 1 second, not {self.idle_check_s}")
        if self.idle_grace_s < 0:
            raise ValueError(f"IDLE_GRACE_S must be 0 or more seconds, not {self.idle_grace_s}")
        if not 1 <= self.idle_warn_s < self.idle_stop_s:
            raise ValueError(
                f"IDLE_WARN_S ({self.idle_warn_s}) must be at least 1 second and less than IDLE_STOP_S "
                f"({self.idle_stop_s}): the warning comes before the shutdown"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the process environment (or `env`) once."""
        e = os.environ if env is None else env
        region = e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or cls.region
        stage = e.get("GANGWAY_STAGE", cls.stage)
        return cls(
            stage=stage,
            region=region,
            discord_public_key=e.get("DISCORD_PUBLIC_KEY", ""),
            discord_application_id=e.get("DISCORD_APPLICATION_ID", ""),
            discord_api_url=e.get("DISCORD_API_URL", DISCORD_API).rstrip("/"),
            discord_bot_token=e.get("DISCORD_BOT_TOKEN") or None,
            discord_bot_token_parameter=e.get("DISCORD_BOT_TOKEN_PARAMETER") or None,
            tenants_table=e.get("TENANTS_TABLE", cls.tenants_table),
            audit_table=e.get("AUDIT_TABLE", cls.audit_table),
            hosting_account_id=e.get("HOSTING_ACCOUNT_ID", ""),
            customer_template_url=e.get("CUSTOMER_TEMPLATE_URL", ""),
            hosting_role_arn=e.get("HOSTING_ROLE_ARN", ""),
            games_table=e.get("GAMES_TABLE", cls.games_table),
            interactions_table=e.get("INTERACTIONS_TABLE", cls.interactions_table),
            jobs_queue=e.get("JOBS_QUEUE", cls.jobs_queue),
            steps_queue=e.get("STEPS_QUEUE", cls.steps_queue),
            agent_intake_queue=e.get("AGENT_INTAKE_QUEUE", cls.agent_intake_queue),
            agent_events_queue=e.get("AGENT_EVENTS_QUEUE", cls.agent_events_queue),
            workflows_prefix=e.get("WORKFLOWS_PREFIX", cls.workflows_prefix),
            aws_endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
            xray_daemon_address=e.get("AWS_XRAY_DAEMON_ADDRESS") or None,
            # In Lambda with active tracing the runtime sets _X_AMZN_TRACE_ID; locally a daemon address
            # (or GANGWAY_TRACING=1) turns tracing on.
            tracing=_flag(e.get("GANGWAY_TRACING"))
            or bool(e.get("AWS_XRAY_DAEMON_ADDRESS") and e.get("GANGWAY_TRACING", "1") != "0"),
            in_lambda=bool(e.get("AWS_LAMBDA_FUNCTION_NAME")),
            site_url=e.get("SITE_URL", "").rstrip("/"),
            signin_url=e.get("SIGNIN_URL", cls.signin_url),
            job_max_receives=int(e.get("JOB_MAX_RECEIVES", str(cls.job_max_receives))),
            tenant_cache_seconds=float(e.get("TENANT_CACHE_SECONDS", str(cls.tenant_cache_seconds))),
            grants_table=e.get("GRANTS_TABLE", cls.grants_table),
            access_table=e.get("ACCESS_TABLE", cls.access_table),
            ratelimit_table=e.get("RATELIMIT_TABLE", cls.ratelimit_table),
            ipauth_keys_parameter=e.get("IPAUTH_KEYS_PARAMETER") or parameter_name(stage, "ipauth-keys"),
            mqtt_url=e.get("MQTT_URL") or None,
            iot_data_endpoint=e.get("IOT_DATA_ENDPOINT") or None,
            agent_wheelhouse=e.get("AGENT_WHEELHOUSE", ""),
            image_parameter=e.get("IMAGE_PARAMETER") or cls.image_parameter,
            image_owner=e.get("IMAGE_OWNER") or cls.image_owner,
            image_id=e.get("IMAGE_ID", cls.image_id).strip(),
            push_table=e.get("PUSH_TABLE", cls.push_table),
            vapid_parameter=e.get("VAPID_PARAMETER") or parameter_name(stage, "vapid-keys"),
            vapid_public_parameter=e.get("VAPID_PUBLIC_PARAMETER") or parameter_name(stage, "vapid-public"),
            vapid_subject=e.get("VAPID_SUBJECT", cls.vapid_subject),
            push_wait_seconds=int(e.get("PUSH_WAIT_SECONDS", str(cls.push_wait_seconds))),
            push_hosts=tuple(h.strip().lower() for h in e["PUSH_HOSTS"].split(",") if h.strip())
            if e.get("PUSH_HOSTS")
            else cls.push_hosts,
            push_loopback_http=_flag(e.get("PUSH_LOOPBACK_HTTP")),
            credentials_source=e.get("CREDENTIALS_SOURCE") or None,
            idle_check_s=_seconds(e, "IDLE_CHECK_S", cls.idle_check_s),
            idle_grace_s=_seconds(e, "IDLE_GRACE_S", cls.idle_grace_s),
            idle_warn_s=_seconds(e, "IDLE_WARN_S", cls.idle_warn_s),
            idle_stop_s=_seconds(e, "IDLE_STOP_S", cls.idle_stop_s),
        )


def environment_credentials(env: Mapping[str, str] | None = None) -> tuple[str, str, str | None] | None:
    """The key pair (and session token) in the environment, as botocore's first provider reads them:
    both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the token from AWS_SESSION_TOKEN (or the older
    AWS_SECURITY_TOKEN); None without both keys. Lambda puts its role's credentials there."""
    e = os.environ if env is None else env
    key, secret = e.get("AWS_ACCESS_KEY_ID", ""), e.get("AWS_SECRET_ACCESS_KEY", "")
    if not key or not secret:
        return None
    return key, secret, e.get("AWS_SESSION_TOKEN") or e.get("AWS_SECURITY_TOKEN") or None


@cache
def settings() -> Settings:
    """The process-wide settings, read once (models bind their table names from it)."""
    return Settings.from_env()
