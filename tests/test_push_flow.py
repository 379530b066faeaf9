"""The web-push flow end to end (issue 7): /addip for an onboarded member → job → Step Functions (moto)
→ steps Lambda → pywebpush → the push service stand-in on loopback, which decrypts the push with the
browser's keys (http_ece) and plays the service worker by calling the authorise API → the waiting task
is answered → the Discord reply (the stand-in's record) is edited with the authorised address. And the
same flow started by a real StartGame execution once the game runs, whose failures never undo the start."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.access import LinkKind
from chalicelib.games import GameState
from chalicelib.push import Preference, PushService
from chalicelib.wiring import container
from devstack.discord_user import Who, snowflake
from devstack.push_service import Device, PushServiceStandIn
from tests.access_helpers import authorize, make_tenant
from tests.helpers import Harness
from tests.lifecycle_helpers import agent_event, create_game, ec2_of, game_row
from tests.test_local_agents import _wait

SITE = "https://site.gangway.test"
HOME = "203.0.113.7"


def _service_worker(source_ip: str, answers: list[Any]) -> Callable[[Any], None]:
    """What site/sw.js does on a push: POST the pushed token to the authorise API from the site's origin."""

    def on_push(payload: Any) -> None:
        answers.append(authorize(payload["token"], source_ip, headers={"Origin": SITE}))

    return on_push


def _onboard(push: PushService, tenant: str, user: str, device: Device, preference: str = "addip") -> None:
    """What the page does after a successful /addip link: subscribe with that link's token."""
    token = push_member_token(tenant, user)
    sub = push.subscribe(token, device.subscription, preference, int(time.time()))
    push.confirm(tenant, user, sub.link, int(time.time()))  # the member's button under /addip's reply


def push_member_token(tenant: str, user: str) -> str:
    c = container()
    token, _ = c.sealer.seal(
        tenant_id=tenant, kind=LinkKind.MEMBER, issued_at=int(time.time()), lifetime_s=3600, user_id=user
    )
    return token


def _edits(harness: Harness, token: str, wait: float, *, containing: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        edits = [
            c
            for c in harness.calls_for(token)
            if c["method"] == "PATCH" and containing in json.dumps(c["json"])
        ]
        if edits:
            return edits
        time.sleep(0.1)
    raise AssertionError(f"no edit containing {containing!r}: {harness.calls_for(token)}")


def _member(harness: Harness) -> Who:
    return Who(guild_id=harness.user.who.guild_id, user_id=snowflake(), permissions=0)


@pytest.fixture
def tenant(harness: Harness) -> str:
    harness.command("setup")
    return harness.user.who.guild_id or ""


def test_a_browser_bound_with_a_member_link_pushes_only_after_its_member_confirms_in_discord(
    harness: Harness, tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    who, thief = _member(harness), _member(harness)
    _, answer = harness.command("addip", who=who)  # no browser yet: the link reply
    [row] = answer["data"]["components"]
    link_button, confirm = row["components"]
    token = link_button["url"].split("#", 1)[1]
    assert (
        confirm["custom_id"].startswith("push:confirm:")
        and confirm["label"] == "Confirm automatic authorisation"
    )
    # the link reaches someone else, whose browser subscribes with it: it stays unconfirmed
    device = push_standin.device()
    got = push_loopback.subscribe(token, device.subscription, "addip", int(time.time()))
    assert got.confirmed is False and got.user_id == who.user_id
    assert not push_loopback.wants_push(tenant, who.user_id)
    _, again = harness.command("addip", who=who)
    assert again["type"] == 4  # still the link, never a push to that browser
    # the thief cannot press the member's button for them (it confirms only the presser's own browsers)
    foreign = harness.component(confirm["custom_id"], who=thief)
    assert "No browser has turned on automatic authorisation" in foreign["data"]["content"]
    assert not push_loopback.wants_push(tenant, who.user_id)
    # the member presses it: that browser may push from now on
    mine = harness.component(confirm["custom_id"], who=who)
    assert mine["data"]["flags"] == 64 and "✅ Confirmed 1 browser" in mine["data"]["content"]
    assert push_loopback.wants_push(tenant, who.user_id)
    # a damaged button changes nothing
    assert "damaged" in harness.component("push:confirm:zz<>", who=who)["data"]["content"]


def test_addip_pushes_to_the_browser_which_authorises_itself_and_the_reply_shows_the_address(
    harness: Harness,
    tenant: str,
    push_loopback: PushService,
    push_standin: PushServiceStandIn,
    steps_pump: Any,
) -> None:
    who = _member(harness)
    answers: list[Any] = []
    device = push_standin.device(on_push=_service_worker(HOME, answers))
    _onboard(push_loopback, tenant, who.user_id, device)

    payload, answer = harness.command("addip", who=who)
    assert answer == {"type": 5, "data": {"flags": 64}}  # deferred, ephemeral: push latency exceeds 3 s
    harness.run_jobs_for(payload["token"])
    interim = _edits(harness, payload["token"], 5, containing="Asking your browser")
    assert interim[0]["auth"] is None  # webhook edits carry no bot token

    final = _edits(harness, payload["token"], 20, containing=HOME)[-1]["json"]
    assert "✅" in final["content"] and "<t:" in final["content"]
    assert final["components"][0]["components"][0]["url"].startswith(SITE + "/#g2.")  # another device

    # The push service got one encrypted, VAPID-signed push with a TTL and high urgency.
    [got] = device.received
    assert got.headers["content-encoding"] == "aes128gcm" and got.headers["urgency"] == "high"
    assert 0 < int(got.headers["ttl"]) <= 60
    assert got.vapid is not None and got.vapid["aud"] == push_standin.url
    assert got.vapid_key == push_loopback.public_key()
    assert HOME.encode() not in got.body and b"g2." not in got.body  # the token travels encrypted
    assert got.payload["type"] == "ipauth" and got.payload["token"].startswith(f"g2.{tenant}.")
    assert answers[0].status == 200 and answers[0].json["address"] == HOME
    grant = container().access.member_grant(tenant, who.user_id, int(time.time()))
    assert grant is not None and grant.address == HOME

    # The pushed token was single use: the service worker's replay is refused and changes nothing.
    replay = authorize(got.payload["token"], "198.51.100.99", headers={"Origin": SITE})
    assert replay.status == 403 and replay.json["error"]["code"] == "invalid"
    assert container().access.grants.get(tenant, "198.51.100.99") is None


def test_a_gone_subscription_is_deleted_and_the_member_gets_the_link(
    harness: Harness,
    tenant: str,
    push_loopback: PushService,
    push_standin: PushServiceStandIn,
    steps_pump: Any,
) -> None:
    who = _member(harness)
    device = push_standin.device(status=410)
    _onboard(push_loopback, tenant, who.user_id, device)
    payload, answer = harness.command("addip", who=who)
    assert answer["type"] == 5
    harness.run_jobs_for(payload["token"])
    final = _edits(harness, payload["token"], 20, containing="/#g2.")[-1]["json"]
    assert "expired" in final["content"] and SITE + "/#g2." in final["content"]
    assert len(device.received) == 1
    assert push_loopback.store.subscriptions(tenant, who.user_id) == []  # deleted
    # With no browser left, the next /addip answers with the link at once.
    _, again = harness.command("addip", who=who)
    assert again["type"] == 4 and SITE + "/#g2." in again["data"]["content"]


def test_no_device_answering_in_time_gives_the_link_within_the_timeout(
    harness: Harness,
    tenant: str,
    push_loopback: PushService,
    push_standin: PushServiceStandIn,
    steps_pump: Any,
) -> None:
    user = snowflake()
    silent = push_standin.device()  # receives the push, but its service worker never answers
    _onboard(push_loopback, tenant, user, silent)
    interaction_token = f"aW50ZXJhY3Rpb24{snowflake()}"
    flow = snowflake()
    started = time.monotonic()
    push_loopback.start(
        tenant_id=tenant,
        user_id=user,
        flow=flow,
        application_id=harness.user.application_id,
        interaction_token=interaction_token,
        timeout=3,
    )
    final = _edits(harness, interaction_token, 15, containing="didn't answer within 3 seconds")[-1]["json"]
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 12, elapsed
    assert SITE + "/#g2." in final["content"]
    assert len(silent.received) == 1
    # The flow closed its push token: the device answering late lets nothing in.
    late = authorize(silent.received[0].payload["token"], HOME, headers={"Origin": SITE})
    assert late.status == 403 and late.json["error"]["code"] == "invalid"
    assert container().access.grants.get(tenant, HOME) is None


def test_a_foreign_or_forged_push_token_is_refused(
    harness: Harness, tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    other = snowflake()
    make_tenant(other)
    c = container()
    sealer = c.sealer
    now = int(time.time())
    user = snowflake()
    # A push token nobody waits for (never pushed, e.g. sealed by hand or from another flow).
    stray, _ = sealer.seal(tenant_id=tenant, kind=LinkKind.PUSH, issued_at=now, lifetime_s=60, user_id=user)
    # Another tenant's pushed token relabelled as this tenant's.
    theirs, _ = sealer.seal(tenant_id=other, kind=LinkKind.PUSH, issued_at=now, lifetime_s=60, user_id=user)
    relabelled = theirs.replace(f"g2.{other}.", f"g2.{tenant}.")
    for token in (stray, relabelled):
        got = authorize(token, "198.51.100.5", headers={"Origin": SITE})
        assert got.status == 403 and got.json["error"]["code"] == "invalid", got.json
    assert c.access.grants.all(tenant) == [] and c.access.grants.all(other) == []


def test_another_members_pending_push_cannot_be_redeemed_with_my_token(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    mine, theirs = snowflake(), snowflake()
    _onboard(push_loopback, tenant, theirs, push_standin.device())
    flow = snowflake()
    push_loopback.send(tenant, theirs, flow=flow, task_token="t" * 40, timeout=30, now=int(time.time()))
    c = container()
    forged, _ = c.sealer.seal(
        tenant_id=tenant,
        kind=LinkKind.PUSH,
        issued_at=int(time.time()),
        lifetime_s=30,
        user_id=mine,
        nonce=flow,
    )
    got = authorize(forged, "198.51.100.6", headers={"Origin": SITE})
    assert got.status == 403 and got.json["error"]["code"] == "invalid"
    assert c.access.grants.all(tenant) == []


def test_preference_off_and_start_choose_who_is_pushed_on_addip(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn
) -> None:
    off, start = snowflake(), snowflake()
    _onboard(push_loopback, tenant, off, push_standin.device(), "off")
    _onboard(push_loopback, tenant, start, push_standin.device(), "start")
    assert not push_loopback.wants_push(tenant, off)
    assert push_loopback.wants_push(tenant, start)
    assert push_loopback.wants_push(tenant, start, Preference.START)
    assert not push_loopback.wants_push(tenant, snowflake())


def test_a_game_start_pushes_to_the_members_who_asked_and_their_browsers_let_themselves_in(
    tenant: str, push_loopback: PushService, push_standin: PushServiceStandIn, steps_pump: Any
) -> None:
    from chalicelib.push.addip_push import game_started
    from chalicelib.workflows import StepContext

    on_start, on_addip = snowflake(), snowflake()
    answers: list[Any] = []
    starter = push_standin.device(on_push=_service_worker("203.0.113.80", answers))
    addip_only = push_standin.device()
    _onboard(push_loopback, tenant, on_start, starter, "start")
    _onboard(push_loopback, tenant, on_addip, addip_only, "addip")
    ctx = StepContext(
        tenant_id=tenant, game="valheim", execution="", token="t", lifecycle=container().lifecycle
    )
    execution = f"arn:aws:states:us-east-1:123456789012:execution:gangway-test-start-game:{snowflake()}"
    assert game_started(ctx, {"tenant": tenant, "game": "valheim", "execution": execution}) == {"pushed": 1}
    assert starter.answered.wait(15)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and container().access.member_grant(tenant, on_start, int(time.time())) is None
    ):
        time.sleep(0.1)
    grant = container().access.member_grant(tenant, on_start, int(time.time()))
    assert grant is not None and grant.address == "203.0.113.80"
    assert answers[0].status == 200 and addip_only.received == []


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"user": "not-a-snowflake", "flow": "1", "timeout": 3},
        {"user": "1", "flow": "../../etc", "timeout": 3},
        {"user": "1", "flow": "x" * 200, "timeout": 3},
        {"user": "1", "flow": "1", "timeout": True},
        {"user": "1", "flow": "1", "timeout": 100_000},
        {"user": "1", "flow": "1", "timeout": "60"},
        {"user": ["1"], "flow": "1", "timeout": 3},
    ],
)
def test_hostile_step_input_fails_the_task_as_rejected_and_pushes_nothing(
    tenant: str, push_standin: PushServiceStandIn, data: dict[str, Any]
) -> None:
    from chalicelib.push.addip_push import send
    from chalicelib.workflows import StepContext, StepFailed

    ctx = StepContext(tenant_id=tenant, game="-", execution="", token="t", lifecycle=container().lifecycle)
    with pytest.raises(StepFailed) as failed:  # not retried: the input will never get better
        send(ctx, {"tenant": tenant, "game": "-", **data})
    assert failed.value.error == "gangway.Rejected"


# -- a game start pushes: through a real StartGame execution ------------------------------------------


def _start_through_the_workflow(harness: Harness, tenant: str, pushed: list[Any]) -> dict[str, Any]:
    """/newgame, /start; the agent reports in; the StartGame execution succeeds. Nothing is pushed
    before the game is up. Returns the /start interaction."""
    create_game(harness, "valheim")
    payload, answer = harness.command("start", game="valheim")
    assert answer["data"]["content"] == "⏳ Starting **valheim**…"
    _wait("the wait for the agent", lambda: bool(game_row(tenant, "valheim").wait.task_token))
    assert pushed == []  # not while it is still starting
    agent_event(tenant, "valheim", "ready", {"version": "test", "game_running": True})
    _wait("RUNNING", lambda: game_row(tenant, "valheim").state is GameState.RUNNING)
    sfn = container().client("stepfunctions")
    _wait(
        "the start to finish",
        lambda: (
            sfn.describe_execution(executionArn=game_row(tenant, "valheim").wait.execution)["status"]
            != "RUNNING"
        ),
    )
    return payload


def _start_is_kept(harness: Harness, tenant: str, payload: dict[str, Any]) -> None:
    """The start stands: RUNNING with its instance and volume, its execution SUCCEEDED, the user told."""
    game = game_row(tenant, "valheim")
    assert game.state is GameState.RUNNING and game.resources.instance_id and game.resources.volume_id
    assert ec2_of(tenant, "valheim").leftovers() == {
        "instances": [game.resources.instance_id],
        "volumes": [game.resources.volume_id],
    }
    status = (
        container().client("stepfunctions").describe_execution(executionArn=game.wait.execution)["status"]
    )
    assert status == "SUCCEEDED"
    told = [c["json"]["content"] for c in harness.calls_for(payload["token"])]
    assert told[-1].startswith("🟢 **valheim** is up at"), told
    assert not any("could not start" in t for t in told), told


def _push_flows(tenant: str, user: str) -> list[dict[str, Any]]:
    """The member's addip-push executions (a start's are named after it and end with the user id)."""
    c = container()
    sfn = c.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=c.workflows.arn("addip-push"))["executions"]
    return [e for e in listed if tenant in e["name"] and e["name"].endswith(f"-{user}")]


def test_a_real_start_pushes_the_member_who_asked_once_the_game_is_running(
    harness: Harness,
    tenant: str,
    push_loopback: PushService,
    push_standin: PushServiceStandIn,
    steps_pump: Any,
) -> None:
    who, bystander = _member(harness), _member(harness)
    answers: list[Any] = []
    device = push_standin.device(on_push=_service_worker("203.0.113.81", answers))
    other = push_standin.device()
    _onboard(push_loopback, tenant, who.user_id, device, "start")
    _onboard(push_loopback, tenant, bystander.user_id, other, "addip")  # asked on /addip only

    payload = _start_through_the_workflow(harness, tenant, device.received)
    _start_is_kept(harness, tenant, payload)
    assert device.answered.wait(20)
    [got] = device.received
    assert got.payload["type"] == "ipauth" and got.payload["token"].startswith(f"g2.{tenant}.")
    _wait(
        "the member's grant",
        lambda: container().access.member_grant(tenant, who.user_id, int(time.time())) is not None,
    )
    grant = container().access.member_grant(tenant, who.user_id, int(time.time()))
    assert grant is not None and grant.address == "203.0.113.81" and answers[0].status == 200
    assert other.received == [] and _push_flows(tenant, bystander.user_id) == []


@contextlib.contextmanager
def _push_flows_refused() -> Iterator[None]:
    """Step Functions refusing to start any addip-push execution (at the botocore seam of the app's
    client), so the start's push step fails for good."""
    from botocore.awsrequest import AWSResponse

    client = container().client("stepfunctions")

    def deny(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if "addip-push" not in str(params.get("body", "")):
            return None
        body = {"Error": {"Code": "AccessDeniedException", "Message": "injected: StartExecution refused"}}
        return AWSResponse("https://states", 400, {}, None), body  # type: ignore[arg-type]

    client.meta.events.register("before-call.sfn.StartExecution", deny)
    try:
        yield
    finally:
        client.meta.events.unregister("before-call.sfn.StartExecution", deny)


def _without_vapid_keys() -> None:
    """The app's push service rebuilt with a VAPID secret that does not exist (`gangway vapid` never
    ran); the push_loopback fixture drops it again afterwards."""
    c = container()
    saved = c.settings
    c.__dict__.pop("push", None)
    c.settings = dataclasses.replace(
        saved, push_loopback_http=True, vapid_parameter=f"/gangway/test/none-{snowflake()}"
    )
    try:
        assert c.push is not None
    finally:
        c.settings = saved


@pytest.mark.parametrize("failure", ["push service 500", "no VAPID keys", "push flow refused"])
def test_a_failing_push_does_not_undo_the_start(  # noqa: PLR0917 - fixtures and parameters
    harness: Harness,
    tenant: str,
    push_loopback: PushService,
    push_standin: PushServiceStandIn,
    steps_pump: Any,
    failure: str,
) -> None:
    who = _member(harness)
    device = push_standin.device(status=500 if failure == "push service 500" else 201)
    _onboard(push_loopback, tenant, who.user_id, device, "start")
    if failure == "no VAPID keys":
        _without_vapid_keys()
    refused = _push_flows_refused() if failure == "push flow refused" else contextlib.nullcontext()
    with refused:
        payload = _start_through_the_workflow(harness, tenant, device.received)
    _start_is_kept(harness, tenant, payload)
    sfn = container().client("stepfunctions")
    start = json.loads(
        sfn.describe_execution(executionArn=game_row(tenant, "valheim").wait.execution)["output"]
    )
    flows = _push_flows(tenant, who.user_id)
    if failure == "push flow refused":  # the start's push step failed for good: caught, and the start stands
        assert start["push_error"]["Error"] == "gangway.Transient" and "pushed" not in start
        assert flows == [] and device.received == []
        return
    assert start["pushed"] == {"pushed": 1}  # the member's flow started; its push failed there
    [flow] = flows
    _wait(
        "the push flow to end",
        lambda: sfn.describe_execution(executionArn=flow["executionArn"])["status"] != "RUNNING",
    )
    ended = sfn.describe_execution(executionArn=flow["executionArn"])
    why = "gangway.NoDevice" if failure == "push service 500" else "gangway.Transient"
    assert ended["status"] == "SUCCEEDED" and json.loads(ended["output"])["error"]["Error"] == why
    assert len(device.received) == (1 if failure == "push service 500" else 0)
    assert container().access.member_grant(tenant, who.user_id, int(time.time())) is None
    assert push_loopback.store.subscriptions(tenant, who.user_id) != []  # a failure is not a gone device
