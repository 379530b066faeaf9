"""What a cold container imports for its first real command (issue 16; bench/first_command.py times it).

A member's first `/games` needs the tenant and the game list, which it reads with the botocore-free
reader (chalicelib/dynamodb), so neither botocore nor PynamoDB; it needs no player access, web push,
agents, workflows or the game lifecycle, and no boto3 (nor X-Ray, with tracing off as here: with it on,
the traced command is what loads the SDK, chalicelib/tracing.py). Those packages load at the point of use
(`Services` holds them as callables; command modules import them in the handlers that call them; the
PynamoDB models load with the first write). These tests pin that by the modules a fresh interpreter
holds afterwards, not by time, so a top-level import that drags them back fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Final

from chalicelib.games import GameStore
from chalicelib.wiring import container
from devstack.discord_user import DiscordUser, Who, snowflake
from devstack.iam import current_credentials, running_as
from tests.conftest import APPLICATION_ID, SIGNING_KEY
from tests.helpers import Harness

MAIN: Final = "400000000000000001"  # the tenant fixture's main role
# Packages (or modules) that only some commands, other routes or other functions need.
NOT_ON_THE_GAMES_PATH: Final = (
    "chalicelib.access",
    "chalicelib.agents",
    "chalicelib.lifecycle",
    "chalicelib.push",
    "chalicelib.workflows",
    "aws_xray_sdk",
    "boto3",
    "botocore",
    "cryptography",
    "pynamodb",
)

# A cold container: `app` imported, one event handed to the function the template binds, then the list
# of module families loaded.
_CHILD: Final = """\
import json, os, sys
import app
class Context:
    function_name = os.environ["FUNCTION"]
    memory_limit_in_mb = 512
    aws_request_id = "cold-imports"
    def get_remaining_time_in_millis(self):
        return 30000
resp = getattr(app, os.environ["HANDLER"])(json.loads(os.environ["EVENT"]), Context())
print(json.dumps({"resp": resp, "modules": sorted(sys.modules)}))
"""


def _cold(handler: str, function: str, event: dict[str, Any]) -> tuple[Any, list[str]]:
    """Run `event` through `app.<handler>` in a fresh interpreter with `function`'s own keys, as in AWS
    (no CREDENTIALS_SOURCE: the Lambda role's keys are in the environment)."""
    with running_as(function):
        key, secret, token = current_credentials()
    env = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_SOURCE", "AWS_SESSION_TOKEN")}
    env.update(
        {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_LAMBDA_FUNCTION_NAME": function}
    )
    if token:
        env["AWS_SESSION_TOKEN"] = token
    env.update({"HANDLER": handler, "FUNCTION": function, "EVENT": json.dumps(event)})
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["resp"], [str(m) for m in out["modules"]]


def _loaded(modules: list[str]) -> list[str]:
    return sorted(p for p in NOT_ON_THE_GAMES_PATH if any(m == p or m.startswith(p + ".") for m in modules))


def _member(tenant: str) -> DiscordUser:
    who = Who(guild_id=tenant, user_id=snowflake(), user_name="member", role_ids=(MAIN,), permissions=0)
    return DiscordUser(SIGNING_KEY, APPLICATION_ID, who=who)


def test_a_cold_games_loads_only_what_reading_the_tenant_and_its_games_needs(tenant: str) -> None:
    from bench.first_command import api_event

    for name in ("valheim", "factorio"):
        GameStore().create(tenant, name, description=f"cold {name}", created_by="1")
    member = _member(tenant)
    body = json.dumps(member.command("games")).encode()
    resp, modules = _cold("app", "api_handler", api_event(body, member.sign(body)))
    assert resp["statusCode"] == 200, resp
    text = resp["body"]
    assert "**valheim**" in text and "**factorio**" in text, text[:500]
    assert _loaded(modules) == []
    assert "chalicelib.dynamodb.client" in modules  # the reads really happened here, through the reader


def test_a_cold_autocomplete_loads_no_more(tenant: str) -> None:
    """Typing a game's name is often the first interaction after a quiet spell: the same set."""
    from bench.first_command import api_event

    GameStore().create(tenant, "valheim", description="cold", created_by="1")
    member = _member(tenant)
    body = json.dumps(member.command("games", {"game": "va"}, focused="game")).encode()
    resp, modules = _cold("app", "api_handler", api_event(body, member.sign(body)))
    assert resp["statusCode"] == 200, resp
    assert json.loads(resp["body"])["data"]["choices"] == [{"name": "valheim", "value": "valheim"}]
    assert _loaded(modules) == []


def test_a_cold_status_job_loads_no_more(harness: Harness, tenant: str) -> None:
    """The first deferred job (`/status`) through the jobs function: the ledger and the Discord edit,
    still no lifecycle, access or push, and neither botocore nor PynamoDB: its reads and the ledger's
    conditional writes go through chalicelib/dynamodb."""
    from bench.first_command import sqs_event

    member = _member(tenant)
    payload, answer = harness.command("status", member.who)
    assert answer["type"] == 5, answer
    mine = [m for _ in range(5) for m in harness.receive_jobs(wait=1) if payload["token"] in m["Body"]]
    assert mine, "the /status job never arrived on the queue"
    sqs, url = container().sqs(), harness.queue_url()
    sqs.delete_message(QueueUrl=url, ReceiptHandle=mine[0]["ReceiptHandle"])  # this test delivers it
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    edits = len(harness.calls_for(payload["token"]))
    _, modules = _cold("jobs", "jobs", sqs_event(arn, mine[0]["Body"]))
    assert len(harness.calls_for(payload["token"])) == edits + 1  # the reply was edited on Discord
    assert _loaded(modules) == []
    assert "chalicelib.dynamodb.client" in modules
