"""The KMS key that seals IP-link tokens, and the secrets the operator fills (bot token, VAPID keys).

Both outlive a mistake: the key is retained on replacement, the secrets when the stack goes.
"""

from __future__ import annotations

from typing import Final

from deploy.template.cfn import Json, ref, sub
from deploy.template.stage import Stage

__all__ = ["SECRETS", "UNSET_SECRET", "ipauth_alias", "link_key_resources", "secret_resources"]

# What a secret holds until the operator puts the real value (CloudFormation needs some value).
UNSET_SECRET: Final = "unset"  # noqa: S105 - a placeholder, not a secret


def ipauth_alias(stage: Stage) -> str:
    """The link-token key's alias, which the functions are told as IPAUTH_KEY_ID."""
    return f"alias/{stage.prefix}-ipauth"


def link_key_resources(stage: Stage) -> Json:
    """The key (rotated, usable and manageable by the account through IAM) and its alias."""
    # The account (through IAM policies) may use and manage the key; listing the actions instead of
    # kms:* keeps the policy check strict. PutKeyPolicy must stay or the key could not be managed.
    actions = sorted(
        [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "kms:DescribeKey",
            "kms:GetKeyPolicy",
            "kms:PutKeyPolicy",
            "kms:GetKeyRotationStatus",
            "kms:EnableKeyRotation",
            "kms:DisableKeyRotation",
            "kms:ListResourceTags",
            "kms:TagResource",
            "kms:UntagResource",
            "kms:UpdateKeyDescription",
            "kms:EnableKey",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
            "kms:CancelKeyDeletion",
            "kms:CreateAlias",
            "kms:UpdateAlias",
            "kms:DeleteAlias",
        ]
    )
    return {
        "LinkTokenKey": {
            "Type": "AWS::KMS::Key",
            "UpdateReplacePolicy": "Retain",
            "DeletionPolicy": "Delete",
            "Properties": {
                "Description": f"{stage.prefix}: encrypts IP-link tokens",
                "EnableKeyRotation": True,
                "PendingWindowInDays": 7,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AccountUsesAndManagesThroughIam",
                            "Effect": "Allow",
                            "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                            "Action": actions,
                            "Resource": "*",
                        }
                    ],
                },
            },
        },
        "LinkTokenKeyAlias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": ipauth_alias(stage), "TargetKeyId": ref("LinkTokenKey")},
        },
    }


# Secrets the operator fills. Retained when the stack goes, so `make destroy` never loses a token; a
# later deploy adopts an existing one instead of creating it (the `<Name>Exists` parameters).
SECRETS: Final = {
    "BotToken": ("discord-bot-token", "The Discord bot token (Developer Portal, Bot, Reset Token)."),
    "VapidKeys": ("vapid-keys", 'Web-push VAPID key pair as JSON {"public": ..., "private": ...}.'),
    # The public half alone: the API function serves it and may read nothing else of the pair.
    "VapidPublicKey": ("vapid-public", 'Web-push VAPID public key as JSON {"public": ...}.'),
}


def secret_resources(stage: Stage) -> Json:
    """One secret per `SECRETS` entry, created only when the stage has none yet (`<Key>SecretExists`)."""
    return {
        f"{key}Secret": {
            "Type": "AWS::SecretsManager::Secret",
            "Condition": f"Create{key}Secret",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Name": f"gangway/{stage.name}/{name}",
                "Description": about,
                "SecretString": UNSET_SECRET,
            },
        }
        for key, (name, about) in SECRETS.items()
    }
