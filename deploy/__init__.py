"""Deployment: the stack's own resources, the policy check, the idle cost, and `make deploy`/`destroy`.

`template` builds the resources Chalice does not make (tables from the PynamoDB models, queues, IoT,
the site, the KMS key, the secrets, the state machines) as a template that `chalice package
--merge-template` merges into its own, so one stack per stage holds the whole system. `policy` is the
least-privilege check CI runs on `policies/*.json` and on every policy in the merged template. `stack`
packages, deploys and destroys with boto3; `cost` prices an idle stack from `prices.json`.
Nothing here ships to Lambda.
"""
