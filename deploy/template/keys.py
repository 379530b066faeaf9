"""The stage's SecureString parameters: the bot token, the VAPID key pair (and its public half alone)
and the IPAuth link keys.

Not template resources: CloudFormation cannot create SecureString parameters (AWS::SSM::Parameter takes
String and StringList only), so `make deploy` creates the missing ones (`deploy.parameters`) and
`make destroy` leaves them, so a later deploy finds the same token and keys. Standard-tier parameters
cost nothing at rest and are encrypted with the AWS-managed `aws/ssm` key (no $1/month customer key),
where the two Secrets Manager secrets and the KMS key cost $1.80/month before (issue 16.3).
"""

from __future__ import annotations

from typing import Final

__all__ = ["SECURE_PARAMETERS", "secure_parameter"]

# name → what it holds (the parameter's description).
SECURE_PARAMETERS: Final = {
    "discord-bot-token": "The Discord bot token (Developer Portal, Bot, Reset Token).",
    "vapid-keys": 'Web-push VAPID key pair as JSON {"public": ..., "private": ...}.',
    # The public half alone: the API function serves it to the page and may read nothing of the pair.
    # Not secret, but a SecureString like the others so one writer (deploy.parameters) makes them all.
    "vapid-public": 'Web-push VAPID public key as JSON {"public": ...}.',
    "ipauth-keys": "AES-256 keys sealing IPAuth link tokens, current and previous (make rotate-link-key).",
}


def secure_parameter(stage: str, name: str) -> str:
    """The full name of one of `SECURE_PARAMETERS` for `stage`."""
    if name not in SECURE_PARAMETERS:
        raise KeyError(name)
    return f"/gangway/{stage}/{name}"  # chalicelib.config.parameter_name, without importing the app
