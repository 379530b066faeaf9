"""The resources Chalice does not make, for one stage, as a template to merge into Chalice's own.

`python -m deploy.template --stage dev --out build/dev.resources.json`, then
`chalice package --stage dev --merge-template build/dev.resources.json build/dev` (what `make template`,
i.e. `python -m deploy build`, runs). Chalice deep-merges this into its SAM template: new resources are
added, and the keys given for its own resources (role policies, environment, logging, DependsOn)
override its values.

Built from the code, so the template cannot drift from it, one module per family:
- `tables`: one DynamoDB table per PynamoDB model in `chalicelib/*/models.py` (keys, indexes and TTL
  from the model; the name from the stage's `*_TABLE` variable, or `gangway-<stage>-<suffix>`);
- `queues`: one queue (with dead-letter queue and alarm) per `*_queue` setting, sized for the function
  app.py binds to it, which waits for it (DependsOn, `functions`);
- `workflows`: one Step Functions state machine per `chalicelib/workflows/*.asl.json`;
- `functions`: each function's role policy from its `policies/*.json` file, scoped to the stage
  (`deploy.policy`), and every table and queue name in its environment;
- `iot`, `site`, `keys`, `params`: the agents' IoT rule and policy, the web page's bucket and CDN, the
  parameters, conditions and outputs (`keys` names the SecureString parameters `make deploy` makes).

`stage` reads `.chalice/config.json`; `introspect` learns what the models and app.py declare in a child
process with the stage's environment (they bind names at import), so building changes nothing here;
`compose.build` puts the parts together; `cfn` holds the intrinsic-function spellings they share.
"""

from __future__ import annotations

from deploy.template.cli import main
from deploy.template.compose import build
from deploy.template.introspect import AppFacts, app_facts
from deploy.template.keys import SECURE_PARAMETERS, secure_parameter
from deploy.template.stage import ROOT, Stage, queue_names, table_names
from deploy.template.tables import TableSpec
from deploy.template.workflows import WORKFLOWS

__all__ = [
    "ROOT",
    "SECURE_PARAMETERS",
    "WORKFLOWS",
    "AppFacts",
    "Stage",
    "TableSpec",
    "app_facts",
    "build",
    "main",
    "queue_names",
    "secure_parameter",
    "table_names",
]
