"""Dispatch details without a web framework: both modal shapes, component arguments, coercions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.discord import (
    CallbackType,
    CommandRegistry,
    Deferred,
    Interaction,
    Job,
    Level,
    Modal,
    Reply,
    TextInput,
    Update,
    parse_interaction,
)
from chalicelib.discord.dispatch import Dispatcher
from chalicelib.errors import BadRequest
from chalicelib.tracing import NullTracer
from devstack.discord_user import DiscordUser, Who
from tests.conftest import APPLICATION_ID, SIGNING_KEY


@dataclass
class _Caller:
    interaction: Interaction
    level: Level = Level.ADMIN
    has_tenant: bool = True


class _Jobs:
    def __init__(self) -> None:
        self.queued: list[Deferred] = []

    def enqueue(self, caller: Any, deferred: Deferred, trace_header: str | None) -> None:
        self.queued.append(deferred)


def _dispatcher() -> tuple[Dispatcher, list[Any], _Jobs]:
    reg = CommandRegistry()
    seen: list[Any] = []

    @reg.route("game:create", level=Level.ADMIN)
    def create(ctx: _Caller) -> Reply:
        seen.append(dict(ctx.interaction.fields))
        return Reply(content="created")

    @reg.route("game:pick", level=Level.MAIN)
    def pick(ctx: _Caller, game: str, page: str) -> Update:
        seen.append((game, page, ctx.interaction.values))
        return Update(content=f"{game} {page}")

    @reg.command(level=Level.ADMIN)
    def newgame(ctx: _Caller) -> Modal:
        """Create a game."""
        return Modal("game:create", "New game", (TextInput("name", "Name"),))

    @reg.command()
    def slow(ctx: _Caller) -> Deferred:
        """Slow work."""
        return Deferred(Job("slow", {"n": 1}))

    jobs = _Jobs()
    return Dispatcher(reg, lambda it: _Caller(it), jobs, NullTracer()), seen, jobs


USER = DiscordUser(SIGNING_KEY, APPLICATION_ID, who=Who())


@pytest.mark.parametrize("legacy", [False, True])
def test_modal_submit_is_read_in_both_payload_shapes(legacy: bool) -> None:
    dispatcher, seen, _ = _dispatcher()
    payload = USER.modal_submit("game:create", {"name": "valheim", "description": "Vikings"}, legacy=legacy)
    reply = dispatcher.answer(payload)
    assert json.loads(reply.body)["data"]["content"] == "created"
    assert seen == [{"name": "valheim", "description": "Vikings"}]


def test_component_custom_id_carries_arguments() -> None:
    dispatcher, seen, _ = _dispatcher()
    reply = dispatcher.answer(USER.component("game:pick:valheim:2", ["a"]))
    assert json.loads(reply.body) == {
        "type": CallbackType.UPDATE_MESSAGE,
        "data": {"content": "valheim 2", "embeds": [], "components": [], "allowed_mentions": {"parse": []}},
    }
    assert seen == [("valheim", "2", ("a",))]


def test_command_can_open_a_modal() -> None:
    dispatcher, _, _ = _dispatcher()
    body = json.loads(dispatcher.answer(USER.command("newgame")).body)
    assert body["type"] == CallbackType.MODAL
    assert body["data"]["components"][0]["component"]["custom_id"] == "name"


def test_deferred_result_is_queued_before_the_type_5_answer() -> None:
    dispatcher, _, jobs = _dispatcher()
    body = json.loads(dispatcher.answer(USER.command("slow")).body)
    assert body == {"type": CallbackType.DEFERRED_CHANNEL_MESSAGE, "data": {"flags": 64}}
    assert jobs.queued == [Deferred(Job("slow", {"n": 1}))]


def test_handler_crash_becomes_an_ephemeral_apology_not_a_500() -> None:
    reg = CommandRegistry()

    @reg.command()
    def boom(ctx: _Caller) -> Reply:
        """Crash."""
        raise RuntimeError("secret detail")

    reply = Dispatcher(reg, lambda it: _Caller(it), _Jobs(), NullTracer()).answer(USER.command("boom"))
    body = json.loads(reply.body)
    assert reply.status == 200 and body["data"]["flags"] == 64
    assert "secret detail" not in body["data"]["content"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(id="not-a-snowflake"),
        lambda p: p.update(token=123),
        lambda p: p["member"].update(permissions=8),
        lambda p: p["member"].update(roles="admin"),
        lambda p: p["data"].update(options=[{"name": "x", "value": {"nested": 1}}]),
        lambda p: p["data"].update(options="everything"),
        lambda p: p.pop("member"),
    ],
)
def test_malformed_interaction_shapes_are_bad_requests(mutate: Any) -> None:
    payload = USER.command("help", {"command": "games"})
    mutate(payload)
    with pytest.raises(BadRequest):
        parse_interaction(payload)
