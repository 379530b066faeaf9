"""The botocore-free reader against the emulator with IAM enforced (chalicelib/dynamodb, docs/performance.md).

- The same stored rows read through PynamoDB and through the reader give equal Tenants and Games (GetItem
  and Query; a property test over generated rows: every attribute present, absent or NULL, of every
  declared type).
- The rows the reader decodes into declare exactly the models' attributes, with the models' defaults.
- A read the function's role may not make is refused as botocore's client is refused (same error code
  and message), and a request signed with a wrong secret is refused by the emulator's signature check.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.dynamodb import Credentials, DynamoDbClient, DynamoDbError, Item
from chalicelib.games import TRANSITIONAL, GameRecord, GameState, GameStore
from chalicelib.games.row import GameRow
from chalicelib.tenancy import TenantRecord, TenantStore
from chalicelib.tenancy.tenant import TenantRow
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_user import snowflake
from devstack.iam import current_credentials, running_as

API: Final = "api_handler"
# A function whose policy has no DynamoDB read (policies/agent_intake.json).
NO_READS: Final = "agent_intake"
EXAMPLES: Final = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_number = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.tuples(st.integers(-9999, 9999), st.integers(1, 999)).map(lambda p: f"{p[0]}.{p[1]}"),
)
_absent: Final = object()


def _maybe(value: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """An attribute that is there, NULL, or not there at all."""
    return st.one_of(value, st.just({"NULL": True}), st.just(_absent))


_S = st.builds(lambda s: {"S": s}, _text)
_N = st.builds(lambda n: {"N": n}, _number)
_BOOL = st.builds(lambda b: {"BOOL": b}, st.booleans())
_L = st.builds(lambda xs: {"L": xs}, st.lists(st.one_of(_S, st.just({"NULL": True})), max_size=4))
_SS = st.builds(
    lambda xs: {"SS": sorted(xs)}, st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=3)
)
_KINDS: Final = {
    "UnicodeAttribute": _S,
    "NumberAttribute": _N,
    "BooleanAttribute": _BOOL,
    "ListAttribute": _L,
    "UnicodeSetAttribute": _SS,
    "VersionAttribute": st.builds(lambda n: {"N": str(n)}, st.integers(0, 10**6)),
}
# Values the domain conversion requires to mean something (a GameState) stay in their domain.
_DOMAIN: Final = {"state": st.sampled_from([{"S": s.value} for s in GameState])}
# A secondary index's key is a non-empty string or absent (DynamoDB refuses NULL and ""): the games'
# in-transit index holds only games in a transitional state.
_INDEX_KEYS: Final = {
    "in_transit": st.one_of(st.sampled_from([{"S": s.value} for s in TRANSITIONAL]), st.just(_absent))
}


def _rows(model: Any, keys: dict[str, dict[str, str]]) -> st.SearchStrategy[dict[str, Any]]:
    """Items for `model`: its key as given, its required attributes present, every other one maybe."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, attr in model.get_attributes().items():
        if name in keys:
            continue
        if name in _INDEX_KEYS:
            fields[name] = _INDEX_KEYS[name]
            continue
        kind = _DOMAIN.get(name, _KINDS[type(attr).__name__])
        required = not attr.null and attr.default is None and type(attr).__name__ != "VersionAttribute"
        fields[name] = kind if required else _maybe(kind)
    return st.fixed_dictionaries(fields).map(
        lambda d: {**keys, **{k: v for k, v in d.items() if v is not _absent}}
    )


def _put(table: str, item: Item) -> None:
    container().client("dynamodb").put_item(TableName=table, Item=item)  # as the admin: plays AWS


def _reader() -> DynamoDbClient:
    reader = container().dynamodb_client
    assert reader is not None
    return reader


@pytest.mark.parametrize(("row", "model"), [(GameRow, GameRecord), (TenantRow, TenantRecord)])
def test_the_rows_declare_the_models_attributes_and_defaults(row: Any, model: Any) -> None:
    declared = {f.name: f for f in dataclasses.fields(row)}
    attributes = model.get_attributes()
    assert set(declared) == set(attributes)
    for name, attr in attributes.items():
        default = declared[name].default
        expected = attr.default if attr.default is not None else None
        assert (None if default is dataclasses.MISSING else default) == expected, name


@EXAMPLES
@given(data=st.data())
def test_games_read_through_the_reader_equal_pynamodbs(emulator: Emulator, data: st.DataObject) -> None:
    cfg = container().settings
    tenant = snowflake()
    names = data.draw(st.sets(st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=3))
    for name in names:
        _put(cfg.games_table, data.draw(_rows(GameRecord, {"tenant_id": {"S": tenant}, "name": {"S": name}})))
    with running_as(API):
        through_pynamodb = GameStore().all(tenant)
        wire = GameStore(client=_reader(), table=cfg.games_table)
        through_reader = wire.all(tenant)
        each = [(GameStore().get(tenant, n), wire.get(tenant, n)) for n in [*names, "not-there"]]
        prefixes = ["", *(n[:k] for n in names for k in (1, 2, len(n))), "zz"]
        completions = [
            (GameStore().names(tenant, p, limit), wire.names(tenant, p, limit))
            for p in prefixes
            for limit in (1, 2, 25)
        ]
    assert len(through_reader) == len(names)
    assert through_reader == through_pynamodb
    assert all(a == b for a, b in each)
    assert each[-1] == (None, None)
    assert all(a == b for a, b in completions), completions
    assert completions[2][1] == sorted(names)  # prefix "", limit 25: every name, in key order


@EXAMPLES
@given(data=st.data())
def test_a_tenant_read_through_the_reader_equals_pynamodbs(emulator: Emulator, data: st.DataObject) -> None:
    cfg = container().settings
    tenant = snowflake()
    _put(cfg.tenants_table, data.draw(_rows(TenantRecord, {"tenant_id": {"S": tenant}})))
    with running_as(API):
        through_pynamodb = TenantStore(default_region=cfg.region).read(tenant)
        through_reader = TenantStore(
            default_region=cfg.region, client=_reader(), table=cfg.tenants_table
        ).read(tenant)
        missing = TenantStore(default_region=cfg.region, client=_reader(), table=cfg.tenants_table).read(
            snowflake()
        )
    assert through_reader is not None
    assert through_reader == through_pynamodb
    assert missing is None


def test_a_read_the_role_may_not_make_is_refused_as_through_botocore(emulator: Emulator) -> None:
    cfg = container().settings
    key = {"tenant_id": {"S": snowflake()}}
    with running_as(NO_READS):
        with pytest.raises(ClientError) as boto:
            container().new_session().client(
                "dynamodb", region_name=cfg.region, endpoint_url=cfg.aws_endpoint_url
            ).get_item(TableName=cfg.tenants_table, Key=key, ConsistentRead=True)
        with pytest.raises(DynamoDbError) as ours:
            _reader().get_item(cfg.tenants_table, key, consistent=True)
    error = boto.value.response["Error"]
    # The emulator answers a denial in XML with 403 (AWS: JSON AccessDeniedException); either way the
    # reader names it as botocore does.
    assert "not authorized to perform: dynamodb:GetItem" in error["Message"], error
    assert (ours.value.code, ours.value.service_message) == (error["Code"], error["Message"])
    assert ours.value.status == boto.value.response["ResponseMetadata"]["HTTPStatusCode"]
    with running_as(API):  # the api function's role may
        assert _reader().get_item(cfg.tenants_table, key, consistent=True) is None


def test_a_wrong_signature_is_refused_by_the_emulators_check(emulator: Emulator) -> None:
    cfg = container().settings
    with running_as(API):
        key, secret, token = current_credentials()
    forged = DynamoDbClient(
        region=cfg.region,
        endpoint_url=cfg.aws_endpoint_url,
        credentials=lambda: Credentials(key, secret + "x", token),
    )
    key_of_nobody = {"tenant_id": {"S": snowflake()}}
    with pytest.raises(DynamoDbError) as ours:
        forged.get_item(cfg.tenants_table, key_of_nobody, consistent=True)
    client = boto3.client(
        "dynamodb",
        region_name=cfg.region,
        endpoint_url=cfg.aws_endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret + "x",
        aws_session_token=token,
    )
    with pytest.raises(ClientError) as boto:
        client.get_item(TableName=cfg.tenants_table, Key=key_of_nobody, ConsistentRead=True)
    error = boto.value.response["Error"]
    assert "SignatureDoesNotMatch" in error["Message"], error
    assert (ours.value.code, ours.value.service_message) == (error["Code"], error["Message"])
