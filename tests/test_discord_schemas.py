"""The Discord stand-in is as strict as Discord: bodies are checked against Discord's published schemas.

Why: a fake that accepts what Discord refuses hides the bug until a user's evening (DESIGN §2). These
tests pin the refusal's shape (50035 with Discord's nested `errors`), that gangway's REST client turns
it into an error naming the field, that the vendored schemas match Discord's file, and that gangway's
own reply builders cannot produce a body Discord would refuse, however long the input.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from chalicelib.commands import registry
from chalicelib.discord.components import (
    ActionRow,
    Button,
    Embed,
    EmbedField,
    LinkButton,
    RoleSelect,
    SelectOption,
    StringSelect,
    TextInput,
)
from chalicelib.discord.replies import (
    Choice,
    Choices,
    Deferred,
    Job,
    Modal,
    Reply,
    Update,
    callback_body,
    message_body,
)
from chalicelib.discord.reply_editor import ReplyEditor
from chalicelib.discord.rest import DiscordRest
from chalicelib.errors import DiscordApiError
from devstack.discord_api import DiscordStandIn
from devstack.discord_schemas import CALLBACK_ROUTE, InvalidFormBody, check_callback, schemas
from devstack.discord_schemas_extract import VENDORED, default_source, extract, render
from devstack.discord_user import snowflake

_LONG = "x" * 5000


def _select(n: int) -> dict[str, Any]:
    options = [{"label": f"game {i}", "value": str(i)} for i in range(n)]
    return {"type": 1, "components": [{"type": 3, "custom_id": "games:pick", "options": options}]}


def _raw(standin: DiscordStandIn, method: str, path: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(standin.url + path, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# -- the vendored file -----------------------------------------------------------------------------


def test_the_vendored_schemas_are_what_the_generator_extracts_from_discords_file() -> None:
    source = default_source()
    if source is None:
        pytest.skip("no copy of shared/reference/discord-openapi.json beside this clone")
    expected = render(extract(json.loads(source.read_text(encoding="utf-8"))))
    assert VENDORED.read_text(encoding="utf-8") == expected, (
        "run `python -m devstack.discord_schemas_extract` and commit devstack/discord_schemas.json"
    )


def test_permission_bit_sets_accept_strings_and_nothing_else_is_loosened() -> None:
    route = "PUT /applications/{application_id}/commands"
    command = {"name": "setup", "description": "Set up", "type": 1}
    assert schemas().errors(route, [{**command, "default_member_permissions": "32"}]) is None
    assert schemas().errors(route, [{**command, "default_member_permissions": 32}]) is None
    assert schemas().errors(route, [{**command, "default_member_permissions": "admin"}]) is not None
    # A string where the file says integer, anywhere else, is refused as Discord's file says.
    hook = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"
    assert schemas().errors(hook, {"content": "hi", "flags": "64"}) is not None


# -- the stand-in refuses like Discord --------------------------------------------------------------


def test_content_over_2000_characters_is_refused_with_50035_and_the_field_named(
    standin: DiscordStandIn,
) -> None:
    token = "tok" + snowflake()
    status, body = _raw(
        standin,
        "PATCH",
        f"/webhooks/1/{token}/messages/@original",
        json.dumps({"content": "x" * 2001}).encode(),
    )
    assert status == 400
    assert body == {
        "code": 50035,
        "message": "Invalid Form Body",
        "errors": {
            "content": {
                "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]
            }
        },
    }
    [call] = [c for c in standin.calls() if token in c["path"]]
    assert call["status"] == 400 and call["errors"] == body["errors"]


def test_a_select_with_26_options_is_refused_at_its_nested_path(standin: DiscordStandIn) -> None:
    token = "tok" + snowflake()
    status, body = _raw(
        standin, "POST", f"/webhooks/1/{token}", json.dumps({"components": [_select(26)]}).encode()
    )
    assert status == 400 and body["code"] == 50035
    options = body["errors"]["components"]["0"]["components"]["0"]["options"]
    assert options == {
        "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}]
    }
    assert (
        _raw(standin, "POST", f"/webhooks/1/{token}", json.dumps({"components": [_select(25)]}).encode())[0]
        == 200
    )


def test_a_body_that_is_not_json_gets_50109(standin: DiscordStandIn) -> None:
    status, body = _raw(standin, "POST", f"/webhooks/1/tok{snowflake()}", b"{not json")
    assert (status, body["code"]) == (400, 50109)


def test_an_injected_fault_still_comes_first(standin: DiscordStandIn) -> None:
    token = "tok" + snowflake()
    standin.fault(method="POST", path_contains=token, status=404, code=10015)
    status, body = _raw(standin, "POST", f"/webhooks/1/{token}", json.dumps({"content": _LONG}).encode())
    assert (status, body["code"]) == (404, 10015)


def test_gangways_rest_client_surfaces_the_refusal_with_the_field_and_reason(standin: DiscordStandIn) -> None:
    rest = DiscordRest(standin.url, lambda: "local-bot-token")
    token = "tok" + snowflake()
    with pytest.raises(DiscordApiError) as err:
        rest.followup("1", token, {"components": [_select(26)]})
    assert (err.value.status, err.value.code) == (400, 50035)
    assert "components.0.components.0.options: Must be 25 or fewer in length." in str(err.value)
    # The reply editor does not mistake it for a dead token: the caller's retry and logs see it.
    with pytest.raises(DiscordApiError, match=r"content: Must be 2000 or fewer"):
        ReplyEditor(rest).edit("1", token, {"content": "x" * 2001})
    with pytest.raises(DiscordApiError, match="Invalid Form Body"):
        rest.create_message("300000000000000003", {"components": [_select(26)]})


def test_the_harness_refuses_an_interaction_answer_discord_would_refuse() -> None:
    with pytest.raises(InvalidFormBody, match=r"data\.content: Must be 2000 or fewer in length"):
        check_callback({"type": 4, "data": {"content": "x" * 2001}})
    with pytest.raises(InvalidFormBody, match=r"type: Value must be one of"):
        check_callback({"type": 3})
    check_callback({"type": 1})
    check_callback({"type": 5, "data": {"flags": 64}})


# -- gangway's own builders stay inside Discord's limits -------------------------------------------


def _worst_message(update: bool = False) -> Reply | Update:
    rows = (
        ActionRow(
            (
                StringSelect(
                    "games:pick",
                    tuple(SelectOption(_LONG, _LONG, _LONG) for _ in range(30)),
                    placeholder=_LONG,
                    max_values=30,
                ),
            )
        ),
        ActionRow((RoleSelect("access:roles", placeholder=_LONG, default_role_ids=("1", "2")),)),
        ActionRow(tuple(Button(_LONG, f"b:{i}") for i in range(5))),
        ActionRow((LinkButton(_LONG, "https://example.com/" + "x" * 490), Button("", "b:empty"))),
        ActionRow((StringSelect("games:one", (SelectOption("a", "a"),), placeholder=""),)),
        ActionRow((Button("sixth row", "b:6"),)),
    )
    embeds = tuple(
        Embed(
            title=_LONG,
            description=_LONG,
            fields=tuple(EmbedField(_LONG, _LONG) for _ in range(30)),
            footer=_LONG,
        )
        for _ in range(12)
    )
    if update:
        return Update(content=_LONG, embeds=embeds, components=rows)
    return Reply(content=_LONG, embeds=embeds, components=rows, ephemeral=True)


@pytest.mark.parametrize(
    "response",
    [
        _worst_message(),
        _worst_message(update=True),
        Reply(),
        Deferred(Job("x")),
        Deferred(Job("x"), ephemeral=False),
        Deferred(Job("x"), update=True),
        Modal(
            "games:create",
            _LONG,
            tuple(TextInput(f"f{i}", _LONG, value=_LONG, placeholder=_LONG) for i in range(7)),
        ),
        Choices(tuple(Choice(_LONG, _LONG) for _ in range(30))),
        Choices(()),
    ],
    ids=lambda r: type(r).__name__,
)
def test_every_kind_of_answer_is_one_discord_accepts(response: Any) -> None:
    errors = schemas().errors(CALLBACK_ROUTE, json.loads(json.dumps(callback_body(response))))
    assert errors is None


def test_a_worst_case_message_is_accepted_as_an_edit_and_a_follow_up() -> None:
    body = json.loads(json.dumps(message_body(_worst_message())))
    assert schemas().errors("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original", body) is None
    assert schemas().errors("POST /webhooks/{webhook_id}/{webhook_token}", body) is None
    assert schemas().errors("POST /channels/{channel_id}/messages", body) is None


def test_builders_refuse_what_discord_would_refuse_and_cannot_be_clipped() -> None:
    with pytest.raises(ValueError, match="at least one option"):
        StringSelect("games:start", ())
    with pytest.raises(ValueError, match="custom_id"):
        callback_body(Modal("games:create:" + _LONG, "New game", ()))
    with pytest.raises(ValueError, match="url"):
        LinkButton("Open", "https://example.com/" + "x" * 500).to_dict()


def test_the_command_registry_is_a_list_discord_accepts() -> None:
    payload = json.loads(json.dumps(registry.to_payload()))
    assert schemas().errors("PUT /applications/{application_id}/guilds/{guild_id}/commands", payload) is None
