"""Drive the app as Discord and Lambda would: signed requests through Chalice's test client, queued
jobs through the same `jobs` handler the Lambda runs, follow-ups read from the Discord stand-in.

Every 200 answer is checked against Discord's interaction-callback schema, as Discord checks it: an
answer Discord would refuse raises `InvalidFormBody` (devstack/discord_schemas.py) in the test."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalice.test import Client

import app as app_module
from chalicelib.tenancy import Tenant
from chalicelib.wiring import container
from devstack.discord_api import DiscordStandIn
from devstack.discord_schemas import check_callback
from devstack.discord_user import DiscordUser, Who
from devstack.pump import LambdaContext, sqs_event


@dataclass
class Harness:
    user: DiscordUser
    standin: DiscordStandIn
    client: Client = field(default_factory=lambda: Client(app_module.app))
    # Calls the stand-in refused with 50035 fail the test at teardown unless it expects them.
    expect_refusals: bool = False
    started: float = field(default_factory=time.time)

    def refused_calls(self) -> list[dict[str, Any]]:
        """Calls made since this harness started that Discord would have refused (50035)."""
        return [c for c in self.standin.calls() if c["time"] >= self.started and "errors" in c]

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def post_raw(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
        resp = self.client.http.post("/discord/interactions", headers=dict(headers), body=body)
        answer = json.loads(resp.body) if resp.body else None
        if resp.status_code == 200:
            check_callback(answer)
        return resp.status_code, answer

    def post(self, payload: Mapping[str, Any]) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        return self.post_raw(body, self.user.sign(body))

    def command(self, name: str, who: Who | None = None, **options: Any) -> tuple[dict[str, Any], Any]:
        """Send /name with options; returns (the interaction sent, the response body)."""
        payload = self.user.command(name, options, who)
        status, body = self.post(payload)
        assert status == 200, body
        return payload, body

    def component(self, custom_id: str, values: list[str] | None = None, who: Who | None = None) -> Any:
        status, body = self.post(self.user.component(custom_id, values, who))
        assert status == 200, body
        return body

    # -- the jobs Lambda -----------------------------------------------------------------------------

    def queue_url(self) -> str:
        return container().sqs().get_queue_url(QueueName=container().settings.jobs_queue)["QueueUrl"]

    def receive_jobs(self, wait: float = 2.0) -> list[dict[str, Any]]:
        sqs = container().sqs()
        got = sqs.receive_message(
            QueueUrl=self.queue_url(),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=int(wait),
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        return [dict(m) for m in got.get("Messages", [])]

    def deliver(self, message: dict[str, Any], *, delete: bool = True) -> Any:
        """Invoke the jobs handler with `message` exactly as the SQS event source would."""
        sqs = container().sqs()
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url(), AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        result = app_module.jobs(sqs_event(message, arn, container().settings.region), LambdaContext("jobs"))
        if delete:
            sqs.delete_message(QueueUrl=self.queue_url(), ReceiptHandle=message["ReceiptHandle"])
        return result

    def run_jobs_for(self, token: str, wait: float = 5.0) -> int:
        """Deliver queued jobs until the one carrying `token` has run; returns how many ran."""
        ran = 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for message in self.receive_jobs(wait=1):
                self.deliver(message)
                ran += 1
                if token in message["Body"]:
                    return ran
        raise AssertionError("the job never arrived on the queue")

    def calls_for(self, token: str) -> list[dict[str, Any]]:
        return [c for c in self.standin.calls() if token in c["path"]]

    def channel_calls(self, channel_id: str) -> list[dict[str, Any]]:
        return [c for c in self.standin.calls() if c["path"] == f"/channels/{channel_id}/messages"]


def connect_customer_account(tenant_id: str) -> Tenant:
    """The tenant, its games moved to its own AWS account: an access role made as the customer's stack
    makes it (policies/customer-role.yaml's statements, trusting gangway with its ExternalId), which the
    broker assumes for every call in that account (a role IAM does not know could call nothing)."""
    from chalicelib.tenancy import TenantStore
    from devstack.iam import ACCOUNT, create_customer_role

    c = container()
    store = TenantStore(default_region=c.settings.region)
    offered = store.offer_customer_account(tenant_id)
    role = create_customer_role(c.client("iam"), f"gangway-access-{tenant_id}", offered.external_id or "")
    return store.mark_verified(tenant_id, role_arn=role, region=c.settings.region, account_id=ACCOUNT)
