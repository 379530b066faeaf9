"""Web push onboarding and the service worker in real headless Chromium (Playwright, Debian's
/usr/bin/chromium) against the local stack in a subprocess (issue 7).

Chromium only subscribes in a persistent (non-incognito) profile, and only once its push service (GCM)
checked it in and registered it: with no network it waits for ever. So the test points Chromium's own
`--gcm-checkin-url`/`--gcm-registration-url` switches at a small stand-in here that answers the check-in
(protobuf) and the registration (`token=…`); Chromium then produces a real PushSubscription with its own
keys. Delivering a push through GCM's MCS channel is out of reach, so the test hands the service worker a
push through the DevTools protocol (`ServiceWorker.deliverPushMessage`), as the browser would on a real
one; the encrypted path to a push service is covered by tests/test_push_flow.py with the loopback stand-in.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.discord_user import DiscordUser, Who, snowflake
from devstack.stack import free_port
from tests.access_helpers import require_program
from tests.browser.test_ipauth_page import _grants, _link, _tenant
from tests.stack_runner import running_stack, stack_aws, stack_table

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".local" / "screenshots" / "push"
# The endpoint Chromium 156 builds from a registration token when its GCM servers are overridden.
CHROMIUM_PUSH_HOST = "jmt17.google.com"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic"]  # fmt: skip
pytestmark = pytest.mark.stack


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([byte])
        out += bytes([byte | 0x80])


class _Gcm(BaseHTTPRequestHandler):
    """Google's GCM check-in and registration servers, as far as Chromium's push subscription needs them."""

    registrations: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/checkin":
            # AndroidCheckinResponse: stats_ok=1, time_msec=3, android_id=7 (fixed64), security_token=8 (fixed64)
            answer = b"\x08\x01\x18" + _varint(int(time.time() * 1000))
            answer += b"\x39" + struct.pack("<Q", 4242424242) + b"\x41" + struct.pack("<Q", 2424242424)
        else:
            self.registrations.append(body.decode(errors="replace"))
            answer = f"token=gangwayTest{len(self.registrations)}:APA91b{snowflake()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def gcm() -> Iterator[tuple[str, list[str]]]:
    registrations: list[str] = []
    handler = type("Gcm", (_Gcm,), {"registrations": registrations})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", registrations
    server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_program("chromium", "/usr/bin/chromium")
    require_program("mosquitto", "/usr/sbin/mosquitto")
    hosts = {"PUSH_HOSTS": f"fcm.googleapis.com,{CHROMIUM_PUSH_HOST}"}
    with running_stack(tmp_path_factory.mktemp("push-stack"), hosts) as info:
        yield info


@pytest.fixture(scope="module")
def browser(
    stack: dict[str, Any], gcm: tuple[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A persistent profile (Chromium has no Push API in incognito contexts) with notifications allowed."""
    from playwright.sync_api import sync_playwright

    chromium = require_program("chromium", "/usr/bin/chromium")
    base, _ = gcm
    flags = [
        f"--gcm-checkin-url={base}/checkin",
        f"--gcm-registration-url={base}/register",
        f"--gcm-mcs-endpoint=https://127.0.0.1:{free_port()}",  # nothing listens: delivery is out of reach
    ]
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")),
            executable_path=chromium,
            headless=True,
            args=ARGS + flags,
        )
        context.grant_permissions(["notifications"], origin=stack["site_url"])
        yield context
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    pg = browser.new_page()
    violations: list[str] = []
    pg.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    yield pg
    assert violations == []
    pg.close()


def _push_rows(stack: dict[str, Any], tenant: str) -> list[dict[str, Any]]:
    items = stack_aws(stack, "dynamodb").query(
        TableName=stack_table(stack, "push"),
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
        ConsistentRead=True,
    )["Items"]
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]


def _state(page: Any, selector: str, shot: str | None = None) -> None:
    page.wait_for_selector(selector, timeout=15_000)
    if shot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)


def _subscription(page: Any) -> dict[str, Any]:
    js = "navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s && s.toJSON())"
    result: dict[str, Any] = page.evaluate(js)
    return result


def _notifications(page: Any) -> list[list[str]]:
    js = "navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.map(n => [n.title, n.body]))"
    result: list[list[str]] = page.evaluate(js)
    return result


def _deliver(browser: Any, page: Any, origin: str, payload: dict[str, Any]) -> None:
    """What Chromium does when its push service delivers: a push event in the service worker."""
    cdp = browser.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 5
    while not registrations and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    [reg] = [r for r in registrations if r["scopeURL"].startswith(origin) and not r.get("isDeleted")][:1]
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin + "/", "registrationId": reg["registrationId"], "data": json.dumps(payload)},
    )
    cdp.detach()


def test_onboarding_subscribes_and_the_service_worker_authorises_a_pushed_token_once(
    stack: dict[str, Any], browser: Any, page: Any, gcm: tuple[str, list[str]]
) -> None:
    from playwright.sync_api import expect

    guild, _ = _tenant(stack)
    member = DiscordUser.from_stack(stack, Who(guild_id=guild, user_id=snowflake(), permissions=0))
    page.goto(_link(member, "addip"))
    _state(page, "#card[data-state='success']")
    expect(page.locator("#push")).to_be_visible()
    _state(page, "#push[data-state='off']", "offer")
    page.locator("input[value='start']").check()
    page.locator("#push-on").click()
    _state(page, "#push[data-state='on']", "on")
    expect(page.locator("#push-status")).to_contain_text("this browser lets itself in")

    # Chromium made a real subscription (its own keys), and the API stored exactly it for this member.
    sub = _subscription(page)
    assert sub["endpoint"].startswith(f"https://{CHROMIUM_PUSH_HOST}/fcm/send/gangwayTest")
    [registration] = [r for r in gcm[1] if "X-subtype=wp" in r]  # the web-push registration
    assert (
        "X-subtype=wp:" + stack["site_url"].replace(":", "%3A") in registration or "wp:http" in registration
    )
    [row] = _push_rows(stack, guild)
    assert row["item"].startswith(f"sub#{member.who.user_id}#") and row["endpoint"] == sub["endpoint"]
    assert (row["p256dh"], row["auth"], row["preference"]) == (
        sub["keys"]["p256dh"],
        sub["keys"]["auth"],
        "start",
    )

    # The service worker on a push: it authorises with the pushed token and shows the result.
    from chalicelib.access import LinkKeySource, LinkKind, TokenSealer

    ssm = stack_aws(stack, "ssm")
    flow = snowflake()
    token, claims = TokenSealer(LinkKeySource(lambda: ssm, "/gangway/local/ipauth-keys")).seal(
        tenant_id=guild, kind=LinkKind.PUSH, issued_at=int(time.time()), lifetime_s=60,
        user_id=member.who.user_id, nonce=flow,
    )  # fmt: skip
    stack_aws(stack, "dynamodb").put_item(
        TableName=stack_table(stack, "push"),
        Item={
            "tenant_id": {"S": guild}, "item": {"S": f"wait#{flow}"}, "user_id": {"S": member.who.user_id},
            "state": {"S": "pending"}, "expires_at": {"N": str(claims.expires_at)},
        },
    )  # fmt: skip
    grants_before = len(_grants(stack, guild))
    payload = {"v": 1, "type": "ipauth", "token": token, "expires_at": claims.expires_at}
    _deliver(browser, page, stack["site_url"], payload)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _notifications(page):
        page.wait_for_timeout(100)
    assert _notifications(page) == [["You're in", "127.0.0.1 can reach the game servers. Have fun!"]]
    wait = next(r for r in _push_rows(stack, guild) if r["item"] == f"wait#{flow}")
    assert wait["state"] == "used" and json.loads(wait["result_json"])["address"] == "127.0.0.1"
    assert len(_grants(stack, guild)) == grants_before  # the same address: the member's grant, refreshed

    # The same push again (a replay): refused, and the notification says so.
    _deliver(browser, page, stack["site_url"], payload)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _notifications(page)[0][0] == "You're in":
        page.wait_for_timeout(100)
    assert _notifications(page)[0][0] == "Couldn't let you in"

    # A push that is not ours (no token, or not JSON) authorises nothing; the worker still shows a notice.
    for hostile in ({"type": "ipauth", "token": "g1.1.<script>"}, {"type": "other"}):
        _deliver(browser, page, stack["site_url"], hostile)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _notifications(page)[0][0] != "gangway":
            page.wait_for_timeout(100)
        assert _notifications(page)[0] == [
            "gangway",
            "A notification gangway couldn't read. Run /addip in Discord for a link.",
        ]
        page.evaluate(
            "navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.forEach(n => n.close()))"
        )

    # Later, without a link, the page offers to turn it off; that deletes the subscription everywhere.
    page.goto(stack["site_url"] + "/")
    _state(page, "#push[data-state='on']", "status-on")
    expect(page.locator("#push-on")).to_be_hidden()
    page.locator("#push-off").click()
    _state(page, "#push[data-state='off']", "off")
    assert [r for r in _push_rows(stack, guild) if r["item"].startswith("sub#")] == []
    assert _subscription(page) is None
