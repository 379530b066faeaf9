"""The few CloudFormation spellings every part of the template uses: `Fn::Sub`, `Ref`, `Fn::GetAtt`.

One small module so each resource family reads as the template it writes, and logical ids are made
from names one way (`camel`).
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["LOG_RETENTION_DAYS", "Json", "att", "camel", "ref", "sub"]

# A template fragment: CloudFormation values nest freely (strings, numbers, lists, intrinsic functions).
Json = dict[str, Any]
# How long every log group the stack makes (functions, state machines) keeps its events.
LOG_RETENTION_DAYS: Final = 30


def sub(text: str) -> Json:
    """`Fn::Sub` of `text` (its `${Name}` placeholders are resolved by CloudFormation)."""
    return {"Fn::Sub": text}


def ref(name: str) -> Json:
    """`Ref` to a parameter, a pseudo parameter or a resource."""
    return {"Ref": name}


def att(name: str, attr: str) -> Json:
    """`Fn::GetAtt` of a resource's attribute."""
    return {"Fn::GetAtt": [name, attr]}


def camel(text: str) -> str:
    """`gangway-dev-agent-events` -> `GangwayDevAgentEvents`: logical ids allow only letters and digits."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", text) if p)
