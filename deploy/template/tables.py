"""One DynamoDB table per PynamoDB model, from the schema PynamoDB's own `create_table` sends.

The models are not imported here: `deploy.template.introspect` reads them in a child process (their
table names are bound from the environment at import) and hands over a `TableSpec` per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from deploy.template.cfn import Json, camel
from deploy.template.stage import Stage

__all__ = ["AttributeDefinition", "IndexSchema", "KeyElement", "TableSchema", "TableSpec", "table_resources"]


class KeyElement(TypedDict):
    """One key of a table or index, as DynamoDB's CreateTable spells it."""

    AttributeName: str
    KeyType: str


class AttributeDefinition(TypedDict):
    """A key attribute's name and scalar type (S, N or B)."""

    AttributeName: str
    AttributeType: str


class Projection(TypedDict):
    """Which attributes an index copies (CreateTable, Projection)."""

    ProjectionType: str
    NonKeyAttributes: NotRequired[list[str]]


class IndexSchema(TypedDict):
    """A secondary index as `Model._get_schema()` gives it."""

    index_name: str
    key_schema: list[KeyElement]
    projection: Projection


class TableSchema(TypedDict):
    """`Model._get_schema()`: what PynamoDB's create_table sends (the local stack creates tables with it)."""

    attribute_definitions: list[AttributeDefinition]
    key_schema: list[KeyElement]
    global_secondary_indexes: list[IndexSchema]
    local_secondary_indexes: list[IndexSchema]


@dataclass(frozen=True)
class TableSpec:
    """One model's table: the name the stage binds, its schema, and its TTL attribute if it has one."""

    name: str
    schema: TableSchema
    ttl: str | None = None


def table_resources(specs: Sequence[TableSpec], stage: Stage) -> Json:
    """A table per spec, keyed by logical id (`gangway-dev-games` -> `GamesTable`)."""
    return dict(_table(spec, stage) for spec in specs)


def _key_schema(keys: Sequence[KeyElement]) -> list[KeyElement]:
    # DynamoDB wants the partition key first (CreateTable, KeySchema).
    return sorted(keys, key=lambda k: k["KeyType"] != "HASH")


def _indexes(indexes: Sequence[IndexSchema]) -> list[Json]:
    return [
        {
            "IndexName": i["index_name"],
            "KeySchema": _key_schema(i["key_schema"]),
            "Projection": i["projection"],
        }
        for i in indexes
    ]


def _table(spec: TableSpec, stage: Stage) -> tuple[str, Json]:
    # The schema PynamoDB's own create_table sends (and the local stack uses), so keys cannot differ.
    schema = spec.schema
    name = spec.name
    props: Json = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": _key_schema(schema["key_schema"]),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
        "Tags": [{"Key": "gangway:stage", "Value": stage.name}],
    }
    for indexes, key in (
        (schema["global_secondary_indexes"], "GlobalSecondaryIndexes"),
        (schema["local_secondary_indexes"], "LocalSecondaryIndexes"),
    ):
        if indexes:
            props[key] = _indexes(indexes)
    if spec.ttl:
        props["TimeToLiveSpecification"] = {"AttributeName": spec.ttl, "Enabled": True}
    logical = camel(name.removeprefix(stage.prefix + "-")) + "Table"
    # Retain on replacement: a key change must never drop a table's rows.
    return logical, {
        "Type": "AWS::DynamoDB::Table",
        "UpdateReplacePolicy": "Retain",
        "DeletionPolicy": "Delete",
        "Properties": props,
    }
