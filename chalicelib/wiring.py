"""The composition root: every long-lived object is built here, once per container, on first use.

Nothing heavy is imported at module load: the PING path builds only the verify key and the endpoint;
boto3, PynamoDB, the command catalogue and X-Ray load when the first real interaction or job needs them.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from chalicelib.config import Settings, environment_credentials, settings
from chalicelib.discord.endpoint import InteractionEndpoint
from chalicelib.discord.verify import load_verify_key

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from pynamodb.models import Model

    from chalicelib.access import AccessService, IpAuthApi, TokenSealer
    from chalicelib.agents import AgentEvent, AgentIntake, BoundAgentEvents, Publisher
    from chalicelib.commands import Services
    from chalicelib.discord.dispatch import Dispatcher
    from chalicelib.discord.rest import DiscordRest, Transport
    from chalicelib.dynamodb import DynamoDbClient
    from chalicelib.games.api import GameStateApi
    from chalicelib.instances import AgentWheelhouse, TenantGateways
    from chalicelib.jobs import JobMessage, JobRunner
    from chalicelib.lifecycle import Lifecycle
    from chalicelib.push import PushApi, PushService
    from chalicelib.tenancy import CredentialsBroker
    from chalicelib.tracing import Tracer
    from chalicelib.workflows import StepRegistry, StepRunner, Workflows

__all__ = ["Container", "container"]

# How long a warm container trusts the bot token it read (rotation: README "Deploying").
BOT_TOKEN_MAX_AGE: Final = 300.0

logging.getLogger("chalicelib").setLevel(logging.INFO)


class Container:
    """Builds and holds the app's objects for one set of settings."""

    def __init__(self, cfg: Settings, *, discord_transport: Transport | None = None) -> None:
        self.settings = cfg
        self._transport = discord_transport
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._bot_token: str | None = None
        self._bot_token_at = 0.0
        self._hosting_account: str | None = None
        self._session: Any = None
        if cfg.credentials_source:
            self._sign_tables()

    def _sign_tables(self) -> None:
        """Every PynamoDB model signs with the configured source too (chalicelib/storage.py)."""
        from chalicelib.access import AccessRecord, GrantRecord, RateRecord
        from chalicelib.credentials import SourcedCredentials, load_source
        from chalicelib.games import GameRecord
        from chalicelib.jobs import InteractionRecord
        from chalicelib.push import PushRecord
        from chalicelib.storage import sign_tables_with
        from chalicelib.tenancy import AuditRecord, TenantRecord

        models = (TenantRecord, AuditRecord, GameRecord, InteractionRecord, GrantRecord, AccessRecord)
        source = load_source(self.settings.credentials_source or "")
        sign_tables_with((*models, RateRecord, PushRecord), SourcedCredentials(source))

    def new_session(self) -> Any:
        """A boto3 session: boto3's default chain (in AWS, the Lambda role's credentials), or, when
        CREDENTIALS_SOURCE is set, the current function's identity asked at every request."""
        if self.settings.credentials_source:
            from chalicelib.credentials import load_source, sourced_session

            return sourced_session(load_source(self.settings.credentials_source), self.settings.region)
        import boto3

        return boto3.Session(region_name=self.settings.region)

    def session(self) -> Any:
        """The one session `client()` makes this container's clients from (sessions are not thread-safe
        to share for making clients, so only under the lock)."""
        if self._session is None:
            self._session = self.new_session()
        return self._session

    @cached_property
    def endpoint(self) -> InteractionEndpoint:
        """The interactions endpoint; its dispatcher is built on the first non-PING request."""
        key = load_verify_key(self.settings.discord_public_key)
        return InteractionEndpoint(key, self._answer)

    def _answer(self) -> Any:
        answer: Any = self.dispatcher.answer
        return answer

    @cached_property
    def tracer(self) -> Tracer:
        from chalicelib.tracing import NullTracer, XRayTracer

        if not self.settings.tracing:
            return NullTracer()
        return XRayTracer(
            service=f"gangway-{self.settings.stage}",
            daemon_address=self.settings.xray_daemon_address,
            in_lambda=self.settings.in_lambda,
        )

    @cached_property
    def services(self) -> Services:
        from chalicelib.commands import Services, registry
        from chalicelib.games import GameStore
        from chalicelib.instances.images import ImageConfig
        from chalicelib.tenancy import AuditLog, TenantStore, Verifier

        cfg, client = self.settings, self.dynamodb_client
        return Services(
            settings=cfg,
            tenants=TenantStore(
                default_region=cfg.region,
                ttl=cfg.tenant_cache_seconds,
                client=client,
                table=cfg.tenants_table,
            ),
            games=GameStore(client=client, table=cfg.games_table),
            registry=registry,
            audit=AuditLog(),
            broker=self.broker,
            verifier=Verifier(self.broker, ImageConfig.of(self.settings)),
            tenant_tables=self.tenant_tables,
            hosting_account=self.hosting_account_id,
            access=lambda: self.access,
            push=lambda: self.push,
            lifecycle=lambda: self.lifecycle,
            gateways=lambda: self.gateways,
        )

    @cached_property
    def dynamodb_client(self) -> DynamoDbClient | None:
        """The botocore-free DynamoDB client for the tenant and game reads of the interaction path
        (chalicelib/dynamodb), signing as botocore would: with CREDENTIALS_SOURCE's identity of the
        moment, else the environment's keys (the Lambda role's). Without either, None: the reads stay on
        PynamoDB, whose botocore finds credentials elsewhere (a profile, container credentials)."""
        from chalicelib.dynamodb import Credentials, DynamoDbClient

        cfg = self.settings
        if cfg.credentials_source:
            from chalicelib.credentials import load_source

            source = load_source(cfg.credentials_source)

            def current() -> Credentials:
                return Credentials(*source())

        else:
            found = environment_credentials()
            if found is None:
                return None
            fixed = Credentials(*found)

            def current() -> Credentials:
                return fixed

        return DynamoDbClient(
            region=cfg.region, endpoint_url=cfg.aws_endpoint_url, credentials=current, tracer=self.tracer
        )

    @staticmethod
    def tenant_tables() -> tuple[type[Model], ...]:
        """Every table with rows per tenant, imported only when a tenant is removed (player access and
        web push are packages a cold command does not otherwise load)."""
        from chalicelib.access import AccessRecord, GrantRecord
        from chalicelib.games import GameRecord
        from chalicelib.jobs import InteractionRecord
        from chalicelib.push import PushRecord

        return (GameRecord, InteractionRecord, GrantRecord, AccessRecord, PushRecord)

    @cached_property
    def step_runner(self) -> StepRunner:
        """The steps Lambda's core (chalicelib/workflows/runner.py)."""
        from chalicelib.workflows import StepRunner

        return StepRunner(
            steps=self.step_registry,
            sfn=lambda: self.client("stepfunctions"),
            lifecycle=lambda: self.lifecycle,
            tracer=self.tracer,
        )

    @cached_property
    def agent_intake(self) -> AgentIntake:
        """The agent_intake Lambda's core: re-sends the IoT rule's messages to the fair agent-events
        queue grouped by tenant (chalicelib/agents/intake.py). Nothing but SQS is built for it."""
        from chalicelib.agents.intake import AgentIntake

        return AgentIntake(self.sqs, self.settings.agent_events_queue)

    @cached_property
    def agent_events(self) -> BoundAgentEvents:
        """The agent_events Lambda's core: `run(body)` routes one queue message to the handlers the
        modules chalicelib/registry.py lists declare (imported here, on the first event)."""
        from chalicelib.agents import AGENT_EVENTS
        from chalicelib.registry import AGENT_EVENT_MODULES, load

        load(AGENT_EVENT_MODULES)
        lc = self.lifecycle

        def trace_of(event: AgentEvent) -> str | None:
            """The trace of the step waiting on the event's game (GameStore.wait stored it)."""
            game = lc.games.get(event.tenant_id, event.game)
            return game.wait.task_trace if game is not None else None

        # With tracing off the read is skipped: nothing would use its answer.
        return AGENT_EVENTS.bind(lc, self.tracer, trace_of if self.settings.tracing else None)

    @cached_property
    def step_registry(self) -> StepRegistry:
        """Every workflow step the app defines (the modules chalicelib/registry.py lists declare them)."""
        from chalicelib.registry import STEP_MODULES, load
        from chalicelib.workflows import STEPS

        load(STEP_MODULES)
        return STEPS

    @cached_property
    def workflows(self) -> Workflows:
        """Starts executions of the deployed state machines."""
        from chalicelib.workflows import Workflows

        def trace_header() -> str | None:
            """The starter's current trace, from the tracer of the moment (looked up, not captured)."""
            return self.tracer.trace_header()

        return Workflows(
            lambda: self.client("stepfunctions"), self.settings.workflows_prefix, trace_header=trace_header
        )

    def reconcile_games(self) -> dict[str, str]:
        """The reaper's pass over games whose workflow ended without finishing (lifecycle/reconcile.py)."""
        from chalicelib.lifecycle.reconcile import reconcile

        return reconcile(self.lifecycle)

    @cached_property
    def lifecycle(self) -> Lifecycle:
        """What lifecycle steps, commands and agent events use (chalicelib/lifecycle/collaborators.py)."""
        from chalicelib.discord.reply_editor import ReplyEditor
        from chalicelib.lifecycle.collaborators import Lifecycle

        return Lifecycle(
            settings=self.settings,
            games=self.services.games,
            tenants=self.services.tenants,
            broker=self.broker,
            gateways=self.gateways,
            rest=self.rest,
            replies=ReplyEditor(self.rest),
            workflows=self.workflows,
            sfn=lambda: self.client("stepfunctions"),
            publisher=lambda: self.publisher,
            access=lambda: self.access,
            push=lambda: self.push,
            wheelhouse=lambda: self.wheelhouse,
        )

    @cached_property
    def wheelhouse(self) -> AgentWheelhouse:
        """The agent's wheelhouse in the hosting account's artifacts bucket, with this function's own
        credentials (the instances may be in any tenant's account; the URL it signs reaches them all).
        Its URLs are SigV4 (S3's only signature in newer regions; SigV2 is deprecated)."""
        from botocore.config import Config

        from chalicelib.instances import AgentWheelhouse

        with self._lock:
            s3 = self.session().client(
                "s3",
                region_name=self.settings.region,
                endpoint_url=self.settings.aws_endpoint_url,
                config=Config(signature_version="s3v4"),
            )
        return AgentWheelhouse(s3, self.settings.agent_wheelhouse)

    @cached_property
    def gateways(self) -> TenantGateways:
        """A game's AWS gateways, each through the broker for its tenant (chalicelib/instances)."""
        from chalicelib.instances import TenantGateways

        return TenantGateways(
            self.broker, self.services.tenants, self.settings, hosting_account=self.hosting_account_id
        )

    def on_ec2_event(self, event: dict[str, Any]) -> str:
        """EventBridge EC2 events (chalicelib/lifecycle/ec2_events.py)."""
        from chalicelib.lifecycle.ec2_events import on_ec2_event

        return on_ec2_event(event, self.lifecycle, self.client("ec2"))

    @cached_property
    def game_api(self) -> GameStateApi:
        """The internal game-state API (IAM-authorised routes in app.py)."""
        from chalicelib.games.api import GameStateApi

        return GameStateApi(self.services.games)

    @cached_property
    def broker(self) -> CredentialsBroker:
        """The only source of AWS access for a tenant (chalicelib/tenancy/broker.py)."""
        from chalicelib.tenancy import AuditLog, CredentialsBroker

        return CredentialsBroker(
            sts=lambda: self.client("sts"),
            hosting_session=self.new_session,
            hosting_role_arn=self.settings.hosting_role_arn,
            audit=AuditLog(),
            endpoint_url=self.settings.aws_endpoint_url,
        )

    def hosting_account_id(self) -> str:
        """The account customers' roles trust: configured, or asked of STS once per container."""
        if self._hosting_account is None:
            self._hosting_account = self.settings.hosting_account_id or str(
                self.client("sts").get_caller_identity()["Account"]
            )
        return self._hosting_account

    @cached_property
    def access(self) -> AccessService:
        """Player access: links, grants, checks and expiry (chalicelib/access)."""
        from chalicelib.access import AccessService, FirewallSync, GrantStore

        services = self.services
        grants = GrantStore()
        return AccessService(
            sealer=self.sealer,
            grants=grants,
            tenants=services.tenants,
            games=services.games,
            firewall=FirewallSync(lambda: self.publisher, services.games, grants),
            site_url=self.settings.site_url,
            push=lambda: self.push,
        )

    @cached_property
    def sealer(self) -> TokenSealer:
        """IPAuth link tokens, sealed with keys read from SSM once per container (not per token)."""
        from chalicelib.access import LinkKeySource, TokenSealer

        return TokenSealer(LinkKeySource(lambda: self.client("ssm"), self.settings.ipauth_keys_parameter))

    @cached_property
    def push(self) -> PushService:
        """Web push (chalicelib/push): subscriptions, sending, single-use push tokens."""
        from chalicelib.access import GrantStore
        from chalicelib.push import PushService, PushStore, SubscriptionRules, VapidSource, WebPushSender

        cfg = self.settings
        return PushService(
            store=PushStore(),
            sealer=self.sealer,
            vapid=VapidSource(lambda: self.client("ssm"), cfg.vapid_parameter, cfg.vapid_public_parameter),
            sender=lambda: WebPushSender(subject=cfg.vapid_subject),
            sfn=lambda: self.client("stepfunctions"),
            workflows=lambda: self.workflows,
            rules=SubscriptionRules(hosts=cfg.push_hosts, loopback_http=cfg.push_loopback_http),
            member_days=lambda tenant_id: GrantStore().policy(tenant_id).member_days,
        )

    @cached_property
    def push_api(self) -> PushApi:
        """The REST API the IPAuth page turns web push on and off with."""
        from chalicelib.access import RateLimiter
        from chalicelib.push import PushApi

        return PushApi(lambda: self.push, RateLimiter(), site_url=self.settings.site_url)

    @cached_property
    def ipauth(self) -> IpAuthApi:
        """The REST API behind the IPAuth page."""
        from chalicelib.access import IpAuthApi, RateLimiter

        return IpAuthApi(self.access, RateLimiter(), site_url=self.settings.site_url)

    @cached_property
    def publisher(self) -> Publisher:
        """Where agent commands go: the local broker when MQTT_URL is set, else IoT Core's data API."""
        from chalicelib.agents import IotDataPublisher, MqttPublisher

        if self.settings.mqtt_url:
            return MqttPublisher(self.settings.mqtt_url)
        # Locally without a broker the emulator stands in (moto records iot-data publishes).
        endpoint = self.settings.iot_data_endpoint or self.settings.aws_endpoint_url
        return IotDataPublisher(
            self.new_session().client("iot-data", region_name=self.settings.region, endpoint_url=endpoint)
        )

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from chalicelib.commands import Context, registry
        from chalicelib.discord.dispatch import Dispatcher
        from chalicelib.jobs import SqsJobQueue

        services = self.services
        return Dispatcher(
            registry,
            lambda it: Context(it, services),
            SqsJobQueue(self.sqs, self.settings.jobs_queue),
            self.tracer,
        )

    @cached_property
    def rest(self) -> DiscordRest:
        from chalicelib.discord.rest import DiscordRest, urllib_transport

        return DiscordRest(
            self.settings.discord_api_url, self.bot_token, transport=self._transport or urllib_transport
        )

    @cached_property
    def job_runner(self) -> JobRunner:
        from chalicelib.commands import Context, interaction_of_job, jobs
        from chalicelib.jobs import InteractionLedger, JobRunner

        services = self.services

        def context_for(msg: JobMessage) -> Context:
            return Context(interaction_of_job(msg), services)

        return JobRunner(
            jobs=jobs,
            context_for=context_for,
            ledger=InteractionLedger(client=self.dynamodb_client, table=self.settings.interactions_table),
            rest=self.rest,
            tracer=self.tracer,
            max_receives=self.settings.job_max_receives,
        )

    def client(self, service: str) -> Any:
        """A boto3 client for `service`, pointed at the embedded emulator when configured."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session().client(
                    service, region_name=self.settings.region, endpoint_url=self.settings.aws_endpoint_url
                )
            return self._clients[service]

    def sqs(self) -> SQSClient:
        sqs: SQSClient = self.client("sqs")
        return sqs

    def bot_token(self) -> str | None:
        """The bot token: from the environment locally, from its SSM SecureString parameter in AWS.

        Cached for five minutes, so a rotated token reaches warm containers by itself.
        """
        if self.settings.discord_bot_token:
            return self.settings.discord_bot_token
        if self.settings.discord_bot_token_parameter and (
            self._bot_token is None or time.monotonic() - self._bot_token_at > BOT_TOKEN_MAX_AGE
        ):
            found = self.client("ssm").get_parameter(
                Name=self.settings.discord_bot_token_parameter, WithDecryption=True
            )
            self._bot_token = str(found["Parameter"]["Value"]).strip()
            self._bot_token_at = time.monotonic()
        return self._bot_token


_container: Container | None = None
_container_lock = threading.Lock()


def container() -> Container:
    """The process-wide container, built from the environment's settings."""
    global _container  # noqa: PLW0603 - the one composition root of a Lambda container
    with _container_lock:
        if _container is None:
            _container = Container(settings())
        return _container
