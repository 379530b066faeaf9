"""Creating and rotating the stage's SecureString parameters (what `make deploy` and
`make rotate-link-key` do; the local stack seeds the emulator with the same functions).

Every write names no KMS key, so SSM encrypts with the AWS-managed `aws/ssm` key, and the standard
tier, so the parameter costs nothing (https://aws.amazon.com/systems-manager/pricing/).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Final

from chalicelib.access import LinkKeyRing
from deploy.template.keys import SECURE_PARAMETERS

__all__ = [
    "adopt_legacy_secret",
    "ensure_link_keys",
    "ensure_vapid_keys",
    "put_secure",
    "read_secure",
    "rotate_link_keys",
]

# What a Secrets Manager secret of the old template held until the operator filled it.
_LEGACY_UNSET: Final = "unset"

_TIER: Final = "Standard"


def read_secure(ssm: Any, name: str) -> str | None:
    """The decrypted value, or None when the parameter does not exist."""
    try:
        return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def put_secure(ssm: Any, name: str, value: str, *, overwrite: bool) -> None:
    """Write a standard SecureString under the AWS-managed key (no KeyId: aws/ssm)."""
    about = SECURE_PARAMETERS.get(name.rsplit("/", 1)[-1], "gangway")
    args: dict[str, Any] = {"Name": name, "Value": value, "Type": "SecureString", "Tier": _TIER}
    if overwrite:
        ssm.put_parameter(**args, Overwrite=True)
    else:
        ssm.put_parameter(**args, Description=about)


def adopt_legacy_secret(ssm: Any, secrets: Any, secret_id: str, name: str) -> bool:
    """Copy a secret the old template kept in Secrets Manager (`DeletionPolicy: Retain`) into parameter
    `name` when that does not exist yet, so an upgrade keeps the bot token and the VAPID pair (browsers
    stay subscribed). True when it copied; the operator deletes the secret afterwards ($0.40/month)."""
    if read_secure(ssm, name) is not None:
        return False
    try:
        value = str(secrets.get_secret_value(SecretId=secret_id)["SecretString"]).strip()
    except Exception:  # ClientError: no such secret (a new deployment), or not allowed: nothing to adopt
        return False
    if not value or value == _LEGACY_UNSET:
        return False
    put_secure(ssm, name, value, overwrite=False)
    return True


def ensure_link_keys(ssm: Any, name: str) -> LinkKeyRing:
    """The stage's link keys, made now if there are none (or they are not a key ring)."""
    current = read_secure(ssm, name)
    if current is not None:
        try:
            return LinkKeyRing.parse(current)
        except ValueError:
            pass  # replaced below: tokens sealed with an unreadable ring could not open anyway
    ring = LinkKeyRing.generate()
    put_secure(ssm, name, ring.to_json(), overwrite=current is not None)
    return ring


def ensure_vapid_keys(ssm: Any, name: str, public_name: str = "", *, replace: bool = False) -> str:
    """The web-push VAPID key pair's public key, the pair made now if there is none (or `replace`).

    `public_name` (when given) gets the public half alone, `{"public": ...}`, which is all the API
    function may read; it is rewritten whenever it does not match the pair (a pair made before the split).
    """
    from chalicelib.errors import InfraError
    from chalicelib.push import VapidKeys

    current = read_secure(ssm, name)
    public = None
    if current is not None and not replace:
        with contextlib.suppress(InfraError):  # malformed: a new pair below
            public = VapidKeys.from_json(current).public
    if public is None:
        keys = VapidKeys.generate()
        put_secure(ssm, name, keys.to_json(), overwrite=current is not None)
        public = keys.public
    if public_name:
        wanted = json.dumps({"public": public})
        held = read_secure(ssm, public_name)
        if held != wanted:
            put_secure(ssm, public_name, wanted, overwrite=held is not None)
    return public


def rotate_link_keys(ssm: Any, name: str) -> LinkKeyRing:
    """A new current key; the old current stays as previous, so links issued before still open."""
    current = read_secure(ssm, name)
    try:
        ring = LinkKeyRing.parse(current).rotated() if current is not None else LinkKeyRing.generate()
    except ValueError:
        ring = LinkKeyRing.generate()
    put_secure(ssm, name, ring.to_json(), overwrite=current is not None)
    return ring
