"""The merge template for one stage, put together from each resource family's module.

`build` is a pure function of its arguments: what the app declares (tables, SQS handlers) comes in
from `deploy.template.introspect`, so building imports no app code and changes no environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.template.cfn import Json
from deploy.template.functions import chalice_overrides, consumers_wait_for_their_queues
from deploy.template.hosting import hosting_resources
from deploy.template.iot import iot_resources
from deploy.template.params import conditions, outputs, parameters
from deploy.template.queues import queue_resources
from deploy.template.site import site_resources
from deploy.template.stage import ROOT, Stage
from deploy.template.tables import TableSpec, table_resources
from deploy.template.workflows import WORKFLOWS, workflow_resources

__all__ = ["build"]


def build(
    stage: Stage,
    tables: Sequence[TableSpec],
    *,
    workflows: Path = WORKFLOWS,
    policies: Path = ROOT / "policies",
    handlers: Mapping[str, str] | None = None,
) -> Json:
    """The merge template for `stage`: every resource Chalice does not make, and overrides for its own.

    Raises ValueError for a handler whose queue the template lacks, or a workflow file it cannot use.
    """
    resources: Json = table_resources(tables, stage)
    for part in (
        queue_resources(stage, handlers or {}),
        iot_resources(stage),
        hosting_resources(stage, policies),
        site_resources(stage),
        workflow_resources(stage, workflows),
        chalice_overrides(stage, policies),
    ):
        resources.update(part)
    consumers_wait_for_their_queues(resources, handlers or {})
    return {
        # The same words since the generator was one file, so a built template does not change.
        "Description": f"gangway {stage.name}: the whole system in one stack (deploy/template.py + Chalice)",
        "Parameters": parameters(stage),
        "Conditions": conditions(),
        "Resources": resources,
        "Outputs": outputs(),
    }
