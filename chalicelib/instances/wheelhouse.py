"""Where a game instance gets its agent: the wheelhouse `make deploy` uploaded (deploy/wheelhouse.py).

The AGENT_WHEELHOUSE setting names it, `s3://<artifacts bucket>/agent/<sha256 of the archive>`. For each
launch the user data gets a presigned GET URL for the archive, valid for an hour, and the requirements
with every wheel's sha256, read here once per container. Why a presigned URL rather than a prefix the
instance roles may read: instances run in the tenants' own accounts, and a bucket policy naming every
tenant's instance role would have to change with each tenant; a URL signed here reaches any account,
expires on its own, and gives nothing but that one archive. Nothing in it is secret (the agent is this
repository's code), which matters because user data is readable by anyone who may describe the instance.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["URL_LIFETIME_S", "AgentInstall", "AgentWheelhouse", "NoWheelhouse"]

# Long enough for a boot that waits on apt's lock; short enough that a leaked user data is soon useless.
URL_LIFETIME_S: Final = 3600
_LOCATION: Final = re.compile(
    r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>agent/(?P<sha>[0-9a-f]{64}))"
)
# One pinned distribution with one or more wheel hashes: nothing else may reach the user data's heredoc.
_REQUIREMENT: Final = re.compile(r"[a-z0-9][a-z0-9.-]*==[A-Za-z0-9.+!-]+( --hash=sha256:[0-9a-f]{64})+")


class NoWheelhouse(Exception):
    """The setting is missing or malformed, or the requirements are missing or not all pinned by hash."""


@dataclass(frozen=True)
class AgentInstall:
    """What the user data needs to install the agent: the archive's URL and sha256, and the requirements."""

    url: str
    sha256: str
    requirements: str


class AgentWheelhouse:
    """Reads the wheelhouse's requirements once and signs a fresh archive URL for each launch."""

    def __init__(self, s3: Any, location: str, *, lifetime_s: int = URL_LIFETIME_S) -> None:
        self._s3 = s3
        self._location = location
        self._lifetime_s = lifetime_s
        self._requirements: str | None = None
        self._lock = threading.Lock()

    def install(self) -> AgentInstall:
        """The URL, hash and requirements for one launch.

        Raises:
            NoWheelhouse: AGENT_WHEELHOUSE unset or malformed, or its requirements missing or unpinned.
        """
        m = _LOCATION.fullmatch(self._location)
        if m is None:
            raise NoWheelhouse(
                f"AGENT_WHEELHOUSE is {self._location!r}, not s3://<bucket>/agent/<sha256> "
                "(make deploy sets it)"
            )
        bucket, key = m["bucket"], m["key"]
        with self._lock:
            if self._requirements is None:
                self._requirements = self._read(bucket, f"{key}.requirements.txt")
        url = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": f"{key}.tar"}, ExpiresIn=self._lifetime_s
        )
        return AgentInstall(url=str(url), sha256=m["sha"], requirements=self._requirements)

    def _read(self, bucket: str, key: str) -> str:
        try:
            text = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except Exception as exc:  # missing object, no permission: the start cannot go on either way
            raise NoWheelhouse(f"cannot read s3://{bucket}/{key}: {exc}") from exc
        lines = text.splitlines()
        bad = [line for line in lines if not _REQUIREMENT.fullmatch(line)]
        if not lines or bad:
            raise NoWheelhouse(f"s3://{bucket}/{key} is not a list of pinned, hashed wheels: {bad[:1]}")
        return "\n".join(lines) + "\n"
