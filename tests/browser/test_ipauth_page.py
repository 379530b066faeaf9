"""The IPAuth page in real headless Chromium (Playwright driving Debian's /usr/bin/chromium) against the
local stack in a subprocess: the page is served from the site origin and calls the API cross-origin.

Each page state is saved as a screenshot under `.local/screenshots/ipauth/`.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.discord_user import DiscordUser, Who, snowflake
from tests.access_helpers import Subscriber, require_program
from tests.stack_runner import running_stack, stack_aws, stack_table

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".local" / "screenshots" / "ipauth"
# feasibility.md §9: the flags that make Debian's Chromium start fast and quietly here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_program("chromium", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[dict[str, Any]]:
    require_program("mosquitto", "/usr/sbin/mosquitto")
    # The pump fires the reaper every second.
    with running_stack(tmp_path_factory.mktemp("ipauth-stack"), {"GANGWAY_REAPER_SECONDS": "1"}) as info:
        yield info


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context; any Content-Security-Policy violation the page logs fails the test."""
    context = browser.new_context(viewport={"width": 900, "height": 900})
    pg = context.new_page()
    violations: list[str] = []
    pg.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    yield pg
    assert violations == []
    context.close()


def _tenant(stack: dict[str, Any]) -> tuple[str, DiscordUser]:
    guild = snowflake()
    admin = DiscordUser.from_stack(stack, Who(guild_id=guild, user_id=snowflake()))
    status, _ = admin.post(admin.command("setup"))
    assert status == 200
    return guild, admin


def _link(user: DiscordUser, command: str, **options: Any) -> str:
    status, answer = user.post(user.command(command, options))
    assert status == 200 and answer["data"]["flags"] == 64, answer
    url: str = answer["data"]["components"][0]["components"][0]["url"]
    return url


def _grants(stack: dict[str, Any], tenant: str) -> list[dict[str, Any]]:
    items = stack_aws(stack, "dynamodb").query(
        TableName=stack_table(stack, "grants"),
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
        ConsistentRead=True,
    )["Items"]
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]


def _state(page: Any, expected: str, shot: str | None = None) -> None:
    from playwright.sync_api import expect

    page.wait_for_selector(f"#card[data-state='{expected}']", timeout=10_000)
    expect(page.locator("#card")).to_have_attribute("aria-busy", "false" if expected != "working" else "true")
    if shot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)


def _running_game(stack: dict[str, Any], tenant: str, name: str) -> None:
    now = int(time.time())
    stack_aws(stack, "dynamodb").put_item(
        TableName=stack_table(stack, "games"),
        Item={
            "tenant_id": {"S": tenant},
            "name": {"S": name},
            "description": {"S": ""},
            "state": {"S": "RUNNING"},
            "created_by": {"S": "1"},
            "created_at": {"N": str(now)},
            "updated_at": {"N": str(now)},
            "version": {"N": "1"},
        },
    )


def test_without_a_link_the_page_says_this_address_is_not_let_in(stack: dict[str, Any], page: Any) -> None:
    # First in the module: the module's fresh stack has no grant for 127.0.0.1 yet.
    from playwright.sync_api import expect

    page.goto(stack["site_url"] + "/")
    _state(page, "checked-out", "check-not-authorised")
    expect(page.locator("#address")).to_have_text("127.0.0.1")
    expect(page.locator("#message")).to_contain_text("/addip")


def test_addip_link_lets_the_browser_in_and_syncs_the_running_games_firewall(
    stack: dict[str, Any], page: Any
) -> None:
    from playwright.sync_api import expect

    guild, admin = _tenant(stack)
    _running_game(stack, guild, "valheim")
    host, port = stack["mqtt_url"].removeprefix("mqtt://").split(":")
    agent = Subscriber(host, int(port), f"gangway/{guild}/+/cmd")
    try:
        url = _link(admin, "addip")
        assert url.startswith(stack["site_url"] + "/#g2.")
        page.goto(url)
        _state(page, "success", "success")
        expect(page.locator("#address")).to_have_text("127.0.0.1")
        expect(page.locator("#games")).to_contain_text("valheim (running)")
        expect(page.locator("#title")).to_be_focused()  # screen readers land on the result
        assert "#" not in page.url  # the secret left the address bar
        grants = _grants(stack, guild)
        assert [(g["address"], g["kind"]) for g in grants] == [("127.0.0.1", "member")]
        topic, msg = agent.next(timeout=10)
        assert topic == f"gangway/{guild}/valheim/cmd" and msg["type"] == "firewall.sync"
        assert msg["body"]["mode"] == "delta"
        assert msg["body"]["grants"] == [{"address": "127.0.0.1", "expires_at": int(grants[0]["expires_at"])}]
    finally:
        agent.close()

    page.goto(url)
    _state(page, "already", "already-authorised")
    page.goto(stack["site_url"] + "/")
    _state(page, "checked-in", "check-authorised")
    expect(page.locator("#address")).to_have_text("127.0.0.1")


def test_success_fits_a_phone_screen(stack: dict[str, Any], browser: Any) -> None:
    _, admin = _tenant(stack)
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        pg = context.new_page()
        pg.goto(_link(admin, "addip"))
        _state(pg, "success", "success-phone")
        width = pg.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375  # no sideways scrolling
    finally:
        context.close()


def _sealer(stack: dict[str, Any]) -> Any:
    from chalicelib.access import LinkKeySource, TokenSealer

    ssm = stack_aws(stack, "ssm")
    return TokenSealer(LinkKeySource(lambda: ssm, "/gangway/local/ipauth-keys"))


def test_expired_tampered_and_foreign_links_show_their_state_and_write_nothing(
    stack: dict[str, Any], page: Any
) -> None:
    from chalicelib.access import LinkKind

    guild, admin = _tenant(stack)
    other, _ = _tenant(stack)
    expired, _ = _sealer(stack).seal(
        tenant_id=guild,
        kind=LinkKind.MEMBER,
        issued_at=int(time.time()) - 3 * 86400,
        lifetime_s=86400,
        user_id="5",
    )
    page.goto(f"{stack['site_url']}/#{expired}")
    _state(page, "expired", "expired-link")

    token = _link(admin, "addip").split("#", 1)[1]
    head, tid, key_id, blob = token.split(".")
    tampered = f"{head}.{tid}.{key_id}.{blob[:30]}{'B' if blob[30] == 'A' else 'A'}{blob[31:]}"
    page.goto(f"{stack['site_url']}/#{tampered}")
    _state(page, "invalid", "invalid-link")

    page.goto(f"{stack['site_url']}/#{head}.{other}.{key_id}.{blob}")  # this tenant's, shown as another's
    _state(page, "invalid")
    page.goto(f"{stack['site_url']}/#g1.{tid}.{blob}")  # a link from before the AES-GCM format
    _state(page, "expired")
    page.goto(f"{stack['site_url']}/#not-a-link")
    _state(page, "invalid")
    assert _grants(stack, guild) == [] and _grants(stack, other) == []


def test_a_used_up_guest_link_says_so(stack: dict[str, Any], page: Any) -> None:
    guild, admin = _tenant(stack)
    url = _link(admin, "addguestip", uses=1)
    # Another guest already spent the only use (the local gateway sees every browser as 127.0.0.1).
    claims = _sealer(stack).open(url.split("#", 1)[1], now=int(time.time()))
    stack_aws(stack, "dynamodb").put_item(
        TableName=stack_table(stack, "access"),
        Item={"tenant_id": {"S": guild}, "item": {"S": f"link#{claims.nonce}"}, "uses": {"N": "1"}},
    )
    page.goto(url)
    _state(page, "used_up", "guest-link-used-up")
    assert _grants(stack, guild) == []


def test_working_then_a_network_error_then_retry_succeeds(stack: dict[str, Any], page: Any) -> None:
    _, admin = _tenant(stack)
    held: queue.Queue[Any] = queue.Queue()
    page.route("**/ipauth/authorize", held.put)
    page.goto(_link(admin, "addip"))
    _state(page, "working", "working")
    held.get(timeout=10).abort("connectionrefused")
    _state(page, "error", "network-error")
    page.unroute("**/ipauth/authorize")
    page.keyboard.press("Tab")  # the retry button is reachable from the keyboard
    page.locator("#retry").focus()
    page.keyboard.press("Enter")
    _state(page, "success")


def test_too_many_tries_shows_how_long_to_wait(stack: dict[str, Any], page: Any) -> None:
    _, admin = _tenant(stack)
    body = json.dumps({"error": {"code": "rate_limited", "message": "Too many tries."}})
    page.route(
        "**/ipauth/authorize",
        lambda route: route.fulfill(
            status=429,
            body=body,
            headers={
                "Content-Type": "application/json",
                "Retry-After": "240",
                "Access-Control-Allow-Origin": stack["site_url"],
                "Access-Control-Expose-Headers": "Retry-After",
            },
        ),
    )
    page.goto(_link(admin, "addip"))
    _state(page, "rate_limited", "rate-limited")
    assert "4 minutes" in page.inner_text("#message")


def test_the_stacks_reaper_removes_an_expired_grant_and_syncs_the_removal(stack: dict[str, Any]) -> None:
    guild, _ = _tenant(stack)
    _running_game(stack, guild, "valheim")
    now = int(time.time())
    host, port = stack["mqtt_url"].removeprefix("mqtt://").split(":")
    agent = Subscriber(host, int(port), f"gangway/{guild}/+/cmd")
    try:
        stack_aws(stack, "dynamodb").put_item(
            TableName=stack_table(stack, "grants"),
            Item={
                "tenant_id": {"S": guild},
                "address": {"S": "203.0.113.77"},
                "kind": {"S": "guest"},
                "owner": {"S": "link#old"},
                "granted_at": {"N": str(now - 3 * 86400)},
                "expires_at": {"N": str(now - 1)},
                "shard": {"S": "grant"},
            },
        )
        topic, msg = agent.next(timeout=10)
    finally:
        agent.close()
    assert topic == f"gangway/{guild}/valheim/cmd"
    assert msg["body"] == {"mode": "delta", "grants": [], "revoke": ["203.0.113.77"], "version": 1}
    assert _grants(stack, guild) == []
