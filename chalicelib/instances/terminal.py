"""/terminal: a short-lived AWS console sign-in link that opens Session Manager on one game's instance.

The old bot federated with a long-lived IAM user's keys and `sts:GetFederationToken`
(original-behaviour.md §1.3). Only IAM users may call GetFederationToken, and gangway keeps no user
keys, so instead the tenant's credentials from the broker assume a dedicated role (`gangway-terminal`
in the tenant's account) with an inline session policy that allows nothing but `ssm:StartSession` on
that one instance with the Session Manager shell document. That is role chaining, and the federation
endpoint refuses chained credentials that asked for a `DurationSeconds` or a console `SessionDuration`
(IAM user guide, "Enable custom identity broker access to the AWS console"), so we ask for neither:
the credentials live one hour (the most a chained session may), and the sign-in token inside the link
must be used within 15 minutes.

`TerminalGateway` is that for one tenant: its STS client (through the broker, audited), its account
and region, and the federation endpoint.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.discord.rest import Transport, urllib_transport
from chalicelib.errors import InfraError

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

__all__ = [
    "SESSION_SECONDS",
    "SIGNIN_TOKEN_SECONDS",
    "TERMINAL_ROLE_NAME",
    "Federation",
    "TerminalGateway",
    "TerminalLink",
    "session_policy",
    "terminal_link",
]

TERMINAL_ROLE_NAME: Final = "gangway-terminal"
# AssumeRole's default duration, the most a chained role session may last.
SESSION_SECONDS: Final = 3600
# How long the federation endpoint's sign-in token may be used.
SIGNIN_TOKEN_SECONDS: Final = 900
SHELL_DOCUMENT: Final = "SSM-SessionManagerRunShell"


def session_policy(region: str, account: str, instance_id: str) -> dict[str, Any]:
    """The inline policy of the terminal session: a shell on this one instance, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": [
                    f"arn:aws:ec2:{region}:{account}:instance/{instance_id}",
                    f"arn:aws:ssm:{region}:{account}:document/{SHELL_DOCUMENT}",
                ],
            }
        ],
    }


@dataclass(frozen=True)
class TerminalLink:
    """The console link, and until when its sign-in token and its session work (epoch seconds)."""

    url: str
    use_before: int
    session_ends: int


class Federation:
    """The console's federation endpoint: trades temporary credentials for a sign-in token."""

    def __init__(self, url: str, transport: Transport = urllib_transport) -> None:
        self._url = url
        self._transport = transport

    def signin_token(self, credentials: dict[str, str]) -> str:
        """A sign-in token for these credentials.

        Raises:
            InfraError: the endpoint refused or answered something else.
        """
        session = json.dumps(
            {
                "sessionId": credentials["AccessKeyId"],
                "sessionKey": credentials["SecretAccessKey"],
                "sessionToken": credentials["SessionToken"],
            }
        )
        query = urllib.parse.urlencode(
            {"Action": "getSigninToken", "SessionType": "json", "Session": session}
        )
        result = self._transport("GET", f"{self._url}?{query}", None, {"Accept": "application/json"})
        try:
            token = json.loads(result.body)["SigninToken"] if result.status == 200 else None
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            # Never log the body or the query: both carry credentials.
            raise InfraError(f"the federation endpoint answered {result.status} without a sign-in token")
        return token

    def login_url(self, token: str, *, destination: str, issuer: str) -> str:
        query = urllib.parse.urlencode(
            {"Action": "login", "Issuer": issuer, "Destination": destination, "SigninToken": token}
        )
        return f"{self._url}?{query}"


def terminal_link(
    sts: STSClient,
    federation: Federation,
    *,
    region: str,
    account: str,
    instance_id: str,
    user_id: str,
    issuer: str,
    now: int,
) -> TerminalLink:
    """Assume the terminal role for `user_id`, scoped to `instance_id`, and make its console link.

    Raises:
        InfraError: STS or the federation endpoint failed.
    """
    try:
        answer = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{TERMINAL_ROLE_NAME}",
            # The Discord user shows in CloudTrail and in the session's id.
            RoleSessionName=f"discord-{user_id}"[:64],
            Policy=json.dumps(session_policy(region, account, instance_id)),
        )
    except Exception as exc:
        raise InfraError(f"could not assume the terminal role in {account}: {exc}") from exc
    raw = answer["Credentials"]
    credentials = {k: str(raw[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    expiration = raw.get("Expiration")
    session_ends = int(expiration.timestamp()) if hasattr(expiration, "timestamp") else now + SESSION_SECONDS
    token = federation.signin_token(credentials)
    destination = f"https://{region}.console.aws.amazon.com/systems-manager/session-manager/{instance_id}?region={region}"
    url = federation.login_url(token, destination=destination, issuer=issuer)
    return TerminalLink(url, min(now + SIGNIN_TOKEN_SECONDS, session_ends), session_ends)


class TerminalGateway:
    """Console links onto one tenant's instances: the terminal role in its account, then the federation
    endpoint (see the module docstring)."""

    def __init__(
        self, sts: STSClient, federation: Federation, *, region: str, account: str, issuer: str
    ) -> None:
        self._sts = sts
        self._federation = federation
        self._region = region
        self._account = account
        self._issuer = issuer

    def link(self, instance_id: str, *, user_id: str, now: int) -> TerminalLink:
        """A console link to a shell on `instance_id` for the Discord user `user_id`.

        Raises:
            InfraError: STS or the federation endpoint failed.
        """
        return terminal_link(
            self._sts,
            self._federation,
            region=self._region,
            account=self._account,
            instance_id=instance_id,
            user_id=user_id,
            issuer=self._issuer,
            now=now,
        )
