"""parliament (Duo Labs' IAM linter) over every policy in `policies/` and in the built template.

parliament knows each action's resource types and condition keys from the Service Authorization
Reference: it catches a resource ARN an action cannot take, a condition key an action ignores (an
Allow that is wider than it reads), malformed actions and mistyped ARNs, which our own least-privilege
check (`deploy/policy.py`) does not look at. A finding either gets fixed or gets one line in
`tests/parliament_allow.txt` that says why it stays: `ISSUE action  # why`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest
from cfnlint.decode import decode_str  # type: ignore[import-untyped]
from parliament import analyze_policy_string  # type: ignore[import-untyped]

from deploy.policy import template_policies
from tests.test_template import build_template

ROOT: Final = Path(__file__).resolve().parents[1]
ALLOW_FILE: Final = Path(__file__).with_name("parliament_allow.txt")
_ACCOUNT: Final = "123456789012"
_REGION: Final = "us-east-1"
# ARNs of the stack's own resources, by type, for `${Name.Arn}` and `Fn::GetAtt` in the template.
_ARN_OF: Final = {
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{n}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{r}:{a}:table/{n}",
    "AWS::S3::Bucket": "arn:aws:s3:::{n}",
    "AWS::KMS::Key": "arn:aws:kms:{r}:{a}:key/{n}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{n}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{r}:{a}:log-group:{n}",
    "AWS::IAM::Role": "arn:aws:iam::{a}:role/{n}",
    "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:{r}:{a}:secret:{n}",
    "AWS::CloudFront::Distribution": "arn:aws:cloudfront::{a}:distribution/{n}",
    "AWS::Serverless::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
}
_PSEUDO: Final = {
    "AWS::Partition": "aws",
    "AWS::Region": _REGION,
    "AWS::AccountId": _ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "gangway-dev",
}


def allow_list() -> dict[tuple[str, str], str]:
    """{(issue, action or detail): why} from tests/parliament_allow.txt; a line without a why fails."""
    out: dict[tuple[str, str], str] = {}
    for line in ALLOW_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        entry, _, why = line.partition("#")
        issue, key = entry.split()
        assert why.strip(), f"allow-list entry {entry.strip()!r} says not why"
        out[(issue, key)] = why.strip()
    return out


def findings(doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(issue, key) per finding: the action it is about where parliament names one, else its detail."""
    policy = analyze_policy_string(json.dumps(doc))
    for f in policy.findings:
        detail = f.detail
        if isinstance(detail, list) and detail and all(isinstance(d, dict) and "action" in d for d in detail):
            for action in sorted({d["action"] for d in detail}):
                yield f.issue, action
            continue
        if isinstance(detail, list) and detail and all(isinstance(d, str) for d in detail):
            for action in sorted(set(detail)):
                yield f.issue, action
            continue
        text = str(detail)
        m = re.search(r"for action (\S+)", text)
        yield f.issue, m[1] if m else text


def _resolve(value: Any, resources: Mapping[str, Any]) -> Any:
    """A template value as plain text: pseudo parameters, `${Name.Arn}`, Ref and GetAtt filled in."""
    if isinstance(value, list):
        return [_resolve(v, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Sub" in value:
        text = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]

        def fill(m: re.Match[str]) -> str:
            name = m[1]
            if name in _PSEUDO:
                return _PSEUDO[name]
            logical = name.split(".", 1)[0]
            return _arn_of(logical, resources)

        return re.sub(r"\$\{(?!!)([^}]+)\}", fill, str(text)).replace("${!", "${")
    if "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        logical = att[0] if isinstance(att, list) else str(att).split(".", 1)[0]
        return _arn_of(logical, resources)
    if "Ref" in value:
        return _PSEUDO.get(value["Ref"], _arn_of(value["Ref"], resources))
    return {k: _resolve(v, resources) for k, v in value.items()}


def _arn_of(logical: str, resources: Mapping[str, Any]) -> str:
    rtype = resources.get(logical, {}).get("Type", "")
    pattern = _ARN_OF.get(rtype)
    assert pattern is not None, f"no ARN pattern for {logical} ({rtype or 'not a resource'})"
    return pattern.format(r=_REGION, a=_ACCOUNT, n=f"gangway-dev-{logical}")


def policy_files() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [
        (p.name, json.loads(p.read_text())) for p in sorted((ROOT / "policies").glob("*.json"))
    ]
    role, matches = decode_str((ROOT / "policies" / "customer-role.yaml").read_text())
    assert not matches, matches
    for where, _kind, doc in template_policies(role):
        out.append((f"customer-role.yaml {where}", _resolve(doc, role["Resources"])))
    return out


def unexplained(docs: list[tuple[str, dict[str, Any]]], allowed: Mapping[tuple[str, str], str]) -> list[str]:
    return [
        f"{where}: {issue} {key}"
        for where, doc in docs
        for issue, key in findings(doc)
        if (issue, key) not in allowed
    ]


def test_parliament_finds_nothing_unexplained_in_the_policy_files() -> None:
    problems = unexplained(policy_files(), allow_list())
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def template_docs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, dict[str, Any]]]:
    tpl = build_template(tmp_path_factory.mktemp("build"))
    resources = tpl["Resources"]
    return [(where, _resolve(doc, resources)) for where, _kind, doc in template_policies(tpl)]


def test_parliament_finds_nothing_unexplained_in_the_built_template(
    template_docs: list[tuple[str, dict[str, Any]]],
) -> None:
    assert len(template_docs) > 10
    problems = unexplained(template_docs, allow_list())
    assert not problems, "\n".join(problems)


def test_every_allow_list_entry_is_still_needed(template_docs: list[tuple[str, dict[str, Any]]]) -> None:
    seen = {f for _, doc in policy_files() + template_docs for f in findings(doc)}
    stale = sorted(set(allow_list()) - seen)
    assert not stale, f"remove from tests/parliament_allow.txt: {stale}"


def test_parliament_catches_an_action_that_does_not_exist() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstancez", "Resource": "*"}],
    }
    assert [i for i, _ in findings(doc)] == ["UNKNOWN_ACTION"]
