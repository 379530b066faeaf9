"""The REST client against the stand-in: rate limits, auth per route, errors; and `gangway register`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest

from chalicelib.commands import registry
from chalicelib.discord.rest import DiscordRest, HttpResult
from chalicelib.errors import DiscordApiError
from devstack.cli import main as gangway
from devstack.discord_api import DiscordStandIn
from devstack.discord_user import snowflake


def test_429_is_retried_after_retry_after(standin: DiscordStandIn) -> None:
    slept: list[float] = []
    rest = DiscordRest(standin.url, lambda: "t", sleep=slept.append)
    token = "tok" + snowflake()
    standin.fault(method="POST", path_contains=token, status=429, retry_after=1.25, times=2)
    rest.followup("1", token, {"content": "hi"})
    assert slept == [1.25, 1.25]
    assert [c["status"] for c in standin.calls() if token in c["path"]] == [429, 429, 200]


def test_rate_limit_is_given_up_after_the_wait_budget(standin: DiscordStandIn) -> None:
    rest = DiscordRest(standin.url, lambda: "t", sleep=lambda s: None, max_wait=5)
    token = "tok" + snowflake()
    standin.fault(method="POST", path_contains=token, status=429, retry_after=3, times=5)
    with pytest.raises(DiscordApiError) as err:
        rest.followup("1", token, {"content": "hi"})
    assert err.value.status == 429


def test_exhausted_bucket_waits_for_reset_before_the_next_call() -> None:
    slept: list[float] = []
    now = [100.0]
    answers = [
        HttpResult(200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset-after": "2.5"}, b"{}"),
        HttpResult(200, {}, b"{}"),
    ]

    def transport(method: str, url: str, body: bytes | None, headers: Any) -> HttpResult:
        return answers.pop(0)

    rest = DiscordRest(
        "http://x", lambda: None, transport=transport, sleep=slept.append, clock=lambda: now[0]
    )
    rest.edit_original("1", "tok", {})
    rest.edit_original("1", "tok", {})
    assert slept == [2.5]


def test_webhook_calls_send_no_authorization_and_bot_calls_do(standin: DiscordStandIn) -> None:
    rest = DiscordRest(standin.url, lambda: "secret-token")
    token = "tok" + snowflake()
    channel = snowflake()
    rest.edit_original("1", token, {"content": "a"})
    rest.create_message(channel, {"content": "b"})
    calls = {c["path"]: c for c in standin.calls()}
    assert calls[f"/webhooks/1/{token}/messages/@original"]["auth"] is None
    assert calls[f"/channels/{channel}/messages"]["auth"] == "Bot"


def test_bot_call_without_a_token_fails_clearly(standin: DiscordStandIn) -> None:
    with pytest.raises(DiscordApiError, match="no bot token"):
        DiscordRest(standin.url, lambda: None).create_message("1", {"content": "x"})


def test_error_status_carries_discords_code(standin: DiscordStandIn) -> None:
    token = "tok" + snowflake()
    standin.fault(method="PATCH", path_contains=token, status=404, code=10015)
    with pytest.raises(DiscordApiError) as err:
        DiscordRest(standin.url, lambda: None).edit_original("1", token, {})
    assert (err.value.status, err.value.code) == (404, 10015)
    assert token not in str(err.value)


def test_register_puts_the_payload_to_one_guild_and_survives_a_429(
    standin: DiscordStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guild = snowflake()
    monkeypatch.setenv("DISCORD_API_URL", standin.url)
    monkeypatch.setenv("DISCORD_APPLICATION_ID", "555")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "bot-token")
    standin.fault(method="PUT", path_contains=f"/guilds/{guild}/", status=429, retry_after=0.05)
    assert gangway(["register", "--guild", guild]) == 0
    puts = [c for c in standin.calls() if c["path"] == f"/applications/555/guilds/{guild}/commands"]
    assert [c["status"] for c in puts] == [429, 200]
    assert puts[-1]["auth"] == "Bot"
    assert puts[-1]["json"] == registry.to_payload()
    assert f"registered {len(registry.commands)} commands (guild {guild})" in capsys.readouterr().out


def test_register_without_credentials_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISCORD_APPLICATION_ID", "DISCORD_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="DISCORD_APPLICATION_ID"):
        gangway(["register"])
    assert "DISCORD_BOT_TOKEN" not in os.environ


def test_faults_can_be_queued_over_http_for_other_processes(standin: DiscordStandIn) -> None:
    """`make run` users and the stack's subprocess tests queue faults with `POST /_faults`."""

    def post(body: bytes) -> int:
        req = urllib.request.Request(
            standin.url + "/_faults", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post(b"[1, 2]") == 400
    token = "http-fault-" + snowflake()
    assert post(json.dumps({"method": "POST", "path_contains": token, "status": 503}).encode()) == 204
    rest = DiscordRest(standin.url, lambda: None, max_attempts=1)
    with pytest.raises(DiscordApiError) as raised:
        rest.followup("1", token, {"content": "x"})
    assert raised.value.status == 503


def test_an_error_body_that_is_not_json_still_raises_the_api_error(standin: DiscordStandIn) -> None:
    """A proxy's HTML page (or bytes that are not UTF-8) must reach callers as a DiscordApiError."""
    token = "tok" + snowflake()
    standin.fault(method="PATCH", path_contains=token, status=502, raw="<html>Bad Gateway \udcff</html>")
    with pytest.raises(DiscordApiError) as err:
        DiscordRest(standin.url, lambda: None, max_attempts=1).edit_original("1", token, {})
    assert err.value.status == 502 and err.value.code is None
    assert "Bad Gateway" in str(err.value)
