"""The jobs ledger's rows through the botocore-free client equal PynamoDB's (chalicelib/jobs/ledger_wire.py).

Each step runs through both backends, as the jobs function's own IAM identity against the emulator, on
two interaction ids of one tenant; the answers must match and the stored items (read back raw, as the
admin) must be equal but for the key. Steps: a fresh claim, a claim under a live lease, a claim after the
lease ran out, RAN with its reply, DONE, RAN of a row that is gone, releases of a RUNNING and a DONE row.
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from chalicelib.jobs.ledger import InteractionLedger, LedgerRows, PynamoRows
from chalicelib.jobs.ledger_wire import WireRows
from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.discord_user import snowflake
from devstack.iam import running_as

JOBS: Final = "jobs"


def _stored(tenant: str, interaction: str) -> dict[str, Any] | None:
    c = container()
    got = c.client("dynamodb").get_item(
        TableName=c.settings.interactions_table,
        Key={"tenant_id": {"S": tenant}, "interaction_id": {"S": interaction}},
        ConsistentRead=True,
    )
    item = got.get("Item")
    return None if item is None else {k: v for k, v in item.items() if k != "interaction_id"}


@pytest.fixture
def both(emulator: Emulator) -> tuple[LedgerRows, LedgerRows]:
    client = container().dynamodb_client
    assert client is not None
    return PynamoRows(), WireRows(client, container().settings.interactions_table)


def _same(both: tuple[LedgerRows, LedgerRows], tenant: str, ids: tuple[str, str], step: Any) -> Any:
    """Run `step(rows, interaction_id)` through both backends; equal answers and equal rows."""
    answers = []
    for rows, iid in zip(both, ids, strict=True):
        with running_as(JOBS):
            answers.append(step(rows, iid))
    assert answers[0] == answers[1]
    assert _stored(tenant, ids[0]) == _stored(tenant, ids[1])
    return answers[0]


def test_the_wire_rows_write_what_pynamodb_writes(both: tuple[LedgerRows, LedgerRows]) -> None:
    tenant, ids = snowflake(), (snowflake(), snowflake())
    now, lease = 1_700_000_000.25, 300.0

    def claim(at: float) -> Any:
        return lambda rows, iid: rows.put_claim(
            tenant, iid, "status", now=at, lease_until=at + lease, expires=int(at + 86400)
        )

    assert _same(both, tenant, ids, claim(now)) is True
    assert _stored(tenant, ids[0]) is not None
    assert _same(both, tenant, ids, claim(now + 10)) is False  # a live lease
    assert _same(both, tenant, ids, lambda rows, iid: rows.status(tenant, iid)) == ("RUNNING", None)
    assert _same(both, tenant, ids, claim(now + lease + 1)) is True  # the lease ran out: taken over
    assert _same(both, tenant, ids, lambda rows, iid: rows.mark_ran(tenant, iid, '{"content": "ok"}')) is True
    assert _same(both, tenant, ids, lambda rows, iid: rows.status(tenant, iid)) == (
        "RAN",
        '{"content": "ok"}',
    )
    assert _same(both, tenant, ids, claim(now + 2 * lease)) is False  # RAN is never taken over
    _same(both, tenant, ids, lambda rows, iid: rows.release(tenant, iid))  # not RUNNING: kept
    assert _stored(tenant, ids[0]) is not None
    _same(both, tenant, ids, lambda rows, iid: rows.mark_done(tenant, iid, "edited"))
    assert _stored(tenant, ids[0]) is not None and "reply_json" not in (_stored(tenant, ids[0]) or {})

    gone = (snowflake(), snowflake())
    assert _same(both, tenant, gone, lambda rows, iid: rows.mark_ran(tenant, iid, "{}")) is False
    assert _stored(tenant, gone[0]) is None  # nothing written back for a row that is gone

    running = (snowflake(), snowflake())
    assert _same(both, tenant, running, claim(now)) is True
    _same(both, tenant, running, lambda rows, iid: rows.release(tenant, iid))
    assert _stored(tenant, running[0]) is None


def test_the_ledger_through_the_client_runs_a_job_once(emulator: Emulator) -> None:
    clock = [1_700_000_000.0]
    client = container().dynamodb_client
    assert client is not None
    ledger = InteractionLedger(
        client=client, table=container().settings.interactions_table, clock=lambda: clock[0]
    )
    tenant, iid = snowflake(), snowflake()
    with running_as(JOBS):
        assert ledger.claim(tenant, iid, "status").run is True
        assert ledger.claim(tenant, iid, "status").run is False
        assert ledger.ran(tenant, iid, '{"content": "hi"}') is True
        again = ledger.claim(tenant, iid, "status")
        assert (again.run, again.stored_reply) == (False, '{"content": "hi"}')
        ledger.done(tenant, iid, "edited")
        done = ledger.claim(tenant, iid, "status")
        assert (done.run, done.stored_reply) == (False, None)
