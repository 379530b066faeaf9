"""Creating and rotating the stage's SecureString parameters (what `make deploy` and
`make rotate-link-key` do; the local stack seeds the emulator with the same functions).

Every write names no KMS key, so SSM encrypts with the AWS-managed `aws/ssm` key, and the standard
tier, so the parameter costs nothing (https://aws.amazon.com/systems-manager/pricing/).
"""

from __future__ import annotations

from typing import Any, Final

from chalicelib.access import LinkKeyRing
from deploy.template.keys import SECURE_PARAMETERS

__all__ = ["ensure_link_keys", "ensure_vapid_keys", "put_secure", "read_secure", "rotate_link_keys"]

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


def ensure_vapid_keys(ssm: Any, name: str, *, replace: bool = False) -> str:
    """The web-push VAPID key pair's public key, the pair made now if there is none (or `replace`)."""
    from chalicelib.errors import InfraError
    from chalicelib.push import VapidKeys

    current = read_secure(ssm, name)
    if current is not None and not replace:
        try:
            return VapidKeys.from_json(current).public
        except InfraError:
            pass  # malformed: a new pair below
    keys = VapidKeys.generate()
    put_secure(ssm, name, keys.to_json(), overwrite=current is not None)
    return keys.public


def rotate_link_keys(ssm: Any, name: str) -> LinkKeyRing:
    """A new current key; the old current stays as previous, so links issued before still open."""
    current = read_secure(ssm, name)
    try:
        ring = LinkKeyRing.parse(current).rotated() if current is not None else LinkKeyRing.generate()
    except ValueError:
        ring = LinkKeyRing.generate()
    put_secure(ssm, name, ring.to_json(), overwrite=current is not None)
    return ring
