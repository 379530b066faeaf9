"""Shared fixtures: one embedded moto server and one Discord stand-in per session, a real Ed25519 key.

Settings are read from the environment once (like a Lambda container), so the environment is set here,
before anything imports `chalicelib`. Each test gets its own guild (tenant), so tests never see each
other's rows even though they share tables.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from nacl.signing import SigningKey

from devstack.aws import emulator_settings, fake_credentials
from devstack.iam import SOURCE as IAM_SOURCE
from devstack.iam import deployed_names, enforced
from devstack.stack import free_port

if TYPE_CHECKING:
    from botocore.stub import Stubber

    from chalicelib.instances import Ec2Gateway

AWS_PORT = free_port()
DISCORD_PORT = free_port()
SIGNING_KEY = SigningKey.generate()
APPLICATION_ID = "111111111111111111"
# A stand-in for the agent's wheelhouse (deploy/wheelhouse.py) in the emulator's artifacts bucket: the
# steps read its requirements and sign its URL; nothing here installs it (test_instance_bootstrap_run.py
# installs the real one). Its key is its content's sha256, as `make deploy` publishes it.
WHEELHOUSE_ARCHIVE = b"stand-in wheelhouse archive"
WHEELHOUSE_REQUIREMENTS = "gangway-agent==0.1.0 --hash=sha256:" + "0" * 64 + "\n"
WHEELHOUSE_KEY = f"agent/{hashlib.sha256(WHEELHOUSE_ARCHIVE).hexdigest()}"
# Where the emulator publishes its stand-in Debian images: the default region and those the customer
# account tests connect in (each costs moto an EC2 backend).
IMAGE_REGIONS = ("us-east-1", "eu-west-1", "eu-central-1")

os.environ.update(fake_credentials())
os.environ.update(emulator_settings())  # the emulator's stand-in Debian images (devstack/aws.py seed_images)
os.environ.update(
    {
        "GANGWAY_STAGE": "test",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{AWS_PORT}",
        "DISCORD_PUBLIC_KEY": SIGNING_KEY.verify_key.encode().hex(),
        "DISCORD_APPLICATION_ID": APPLICATION_ID,
        "DISCORD_API_URL": f"http://127.0.0.1:{DISCORD_PORT}",
        "DISCORD_BOT_TOKEN": "test-bot-token",
        "TENANTS_TABLE": "test-tenants",
        "STEPS_QUEUE": "test-steps",
        "WORKFLOWS_PREFIX": "gangway-test",
        "AUDIT_TABLE": "test-audit",
        "GAMES_TABLE": "test-games",
        "INTERACTIONS_TABLE": "test-interactions",
        "JOBS_QUEUE": "test-jobs",
        "JOB_MAX_RECEIVES": "3",
        "SITE_URL": "https://site.gangway.test",  # the IPAuth page's origin (CORS, links)
        "AGENT_WHEELHOUSE": f"s3://gangway-artifacts-test/{WHEELHOUSE_KEY}",
        # What the stack gives the functions: the customer role template in the stage's template bucket.
        "CUSTOMER_TEMPLATE_URL": "https://gangway-test-templates.s3.us-east-1.amazonaws.com/gangway-customer-role.yaml",
    }
)
# IAM is enforced (GANGWAY_ENFORCE_IAM=0 turns it off): every handler calls the emulator as its own IAM user
# (devstack/iam.py).
if enforced():
    os.environ["CREDENTIALS_SOURCE"] = IAM_SOURCE
    os.environ.update(deployed_names("test"))  # the names the policies are written for
os.environ.pop("AWS_XRAY_DAEMON_ADDRESS", None)
os.environ.pop("GANGWAY_TRACING", None)

from devstack.aws import Emulator, artifacts_bucket, create_resources  # noqa: E402
from devstack.discord_api import DiscordStandIn  # noqa: E402
from devstack.discord_user import DiscordUser, Who, snowflake  # noqa: E402
from tests.helpers import Harness  # noqa: E402


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(AWS_PORT).start()
    from chalicelib.wiring import container

    c = container()
    create_resources(
        c.settings, c.sqs(), c.client("dynamodb"), visibility_timeout=1, image_regions=IMAGE_REGIONS
    )
    s3 = c.client("s3")
    bucket = artifacts_bucket(s3, "gangway-artifacts-test")
    s3.put_object(Bucket=bucket, Key=f"{WHEELHOUSE_KEY}.tar", Body=WHEELHOUSE_ARCHIVE)
    s3.put_object(
        Bucket=bucket, Key=f"{WHEELHOUSE_KEY}.requirements.txt", Body=WHEELHOUSE_REQUIREMENTS.encode()
    )
    if enforced():
        import app as app_module
        from devstack.iam import enforce, identify_handlers

        identify_handlers(app_module.app)
        enforce(emu.url, c.settings.region, c.settings.stage)
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def standin() -> Iterator[DiscordStandIn]:
    server = DiscordStandIn(port=DISCORD_PORT).start()
    yield server
    server.stop()


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """The environment as it was before the test: `gangway … --local` commands set the stack's keys in
    os.environ for their run, as they do in a shell; in the session they must not outlive the test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def guild() -> str:
    """A fresh guild id: a tenant of this test alone."""
    return snowflake()


@pytest.fixture
def admin(guild: str) -> Who:
    """A server administrator of the test's guild."""
    return Who(guild_id=guild, user_id=snowflake(), user_name="admin")


@pytest.fixture
def user(admin: Who) -> DiscordUser:
    return DiscordUser(SIGNING_KEY, APPLICATION_ID, who=admin)


@pytest.fixture
def harness(emulator: Emulator, standin: DiscordStandIn, user: DiscordUser) -> Iterator[Harness]:
    """The app behind Chalice's test client, the jobs queue and the stand-in, driven as Discord would."""
    h = Harness(user=user, standin=standin)
    yield h
    h.close()
    refused = [] if h.expect_refusals else h.refused_calls()
    assert not refused, f"Discord would refuse what gangway sent: {refused}"


def body_of(resp: Any) -> Any:
    return json.loads(resp.body) if resp.body else None


# -- player access (issue 5) -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Mosquitto for the session; skipped (failed under CI=true) when it is not installed."""
    from tests.access_helpers import mosquitto

    with mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def agent_link(emulator: Emulator, mqtt_broker: Any, guild: str) -> Iterator[Any]:
    """The app publishes agent commands to the real broker; yields a subscriber to this guild's `cmd`s."""
    from chalicelib.agents import MqttPublisher
    from tests.access_helpers import Subscriber

    c = container_for_tests()
    c.__dict__["publisher"] = MqttPublisher(mqtt_broker.url)  # what wiring builds when MQTT_URL is set
    sub = Subscriber(mqtt_broker.host, mqtt_broker.port, f"gangway/{guild}/+/cmd")
    yield sub
    sub.close()
    c.__dict__.pop("publisher", None)


def container_for_tests() -> Any:
    from chalicelib.wiring import container

    return container()


# -- web push (issue 7) ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def push_standin() -> Iterator[Any]:
    """The push service stand-in on loopback (devstack/push_service.py) for the session."""
    from devstack.push_service import PushServiceStandIn

    server = PushServiceStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def push_loopback(emulator: Emulator) -> Iterator[Any]:
    """The app's push service, built with http://127.0.0.1 endpoints allowed (the stand-in's), as the
    local stack's PUSH_LOOPBACK_HTTP does; rebuilt afterwards."""
    import dataclasses

    c = container_for_tests()
    saved = c.settings
    c.__dict__.pop("push", None)
    c.settings = dataclasses.replace(saved, push_loopback_http=True)
    try:
        push = c.push
    finally:
        c.settings = saved
    yield push
    c.__dict__.pop("push", None)


@pytest.fixture
def steps_pump(emulator: Emulator) -> Iterator[Any]:
    """Feeds the steps queue to the steps Lambda's handler, as the local stack's pump does."""
    import app as app_module
    from devstack.pump import Pump

    c = container_for_tests()
    url = c.sqs().get_queue_url(QueueName=c.settings.steps_queue)["QueueUrl"]
    pump = Pump(c.sqs(), c.settings.region)
    pump.bind(url, "steps", app_module.steps)
    pump.start()
    yield pump
    pump.stop()


# -- the game lifecycle (issue 4) -------------------------------------------------------------------


@pytest.fixture
def tenant(harness: Harness) -> Iterator[str]:
    harness.command("setup")
    harness.component("setup:main", ["400000000000000001"])  # tests.lifecycle_helpers.MAIN
    yield harness.user.who.guild_id or ""


@pytest.fixture
def customer_tenant(tenant: str) -> str:
    """The tenant, connected to its own AWS account (tests.helpers.connect_customer_account)."""
    from tests.helpers import connect_customer_account

    connect_customer_account(tenant)
    return tenant


@pytest.fixture
def ec2_stub() -> Iterator[tuple[Ec2Gateway, Stubber]]:
    """A game's EC2 gateway over a client answered by botocore's Stubber (EC2's real shapes, no moto)."""
    import boto3
    from botocore.stub import Stubber

    from chalicelib.instances import Ec2Gateway

    client = boto3.client(  # an offline client: nothing leaves the process
        "ec2", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with Stubber(client) as stubber:
        yield Ec2Gateway(client, tenant_id="1", game="valheim"), stubber
        stubber.assert_no_pending_responses()
