"""One-time SFTP passwords: issued by the agent, checked by sshd's PAM stack through pam_exec.

Each password is stored as an scrypt hash with its own salt and an expiry, one file per password
in a root-only directory. The checker (``python -m gangway_agent.otp_check DIR``, run by
``pam_exec.so expose_authtok``) reads the password from stdin, and a match is claimed by renaming
its file before it is deleted, so two logins racing on one password cannot both win.
Kept free of the rest of the agent so PAM starts it quickly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Final

_N: Final = 2**14
_R: Final = 8
_P: Final = 1
_MAX_PASSWORD: Final = 512


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def issue(store: Path, user: str, ttl_s: float, now: float | None = None) -> tuple[str, float]:
    """Create a one-time password for ``user``; returns (password, expires_at)."""
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    salt = secrets.token_bytes(16)
    expires = (time.time() if now is None else now) + ttl_s
    record = {"user": user, "salt": salt.hex(), "hash": _hash(password, salt).hex(), "expires_at": expires}
    path = store / f"{secrets.token_hex(8)}.otp"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)
    return password, expires


def check(store: Path, user: str, password: str, now: float | None = None) -> bool:
    """True once for a live password issued to ``user``; expired records are removed on the way."""
    now = time.time() if now is None else now
    if not password or len(password) > _MAX_PASSWORD:
        return False
    try:
        entries = sorted(store.glob("*.otp"))
    except OSError:
        return False
    for path in entries:
        try:
            record = json.loads(path.read_text())
            expired = float(record["expires_at"]) <= now
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if expired:
            path.unlink(missing_ok=True)
            continue
        if record.get("user") != user:
            continue
        digest = _hash(password, bytes.fromhex(record["salt"]))
        if not hmac.compare_digest(digest, bytes.fromhex(record["hash"])):
            continue
        claimed = path.with_suffix(".used")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return False
        claimed.unlink(missing_ok=True)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    """pam_exec entry point: exit 0 to accept, 1 to refuse."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: gangway-otp-check STORE_DIR", file=sys.stderr)
        return 2
    user = os.environ.get("PAM_USER", "")
    # pam_exec expose_authtok writes the password followed by a NUL byte.
    password = sys.stdin.buffer.read(_MAX_PASSWORD + 1).split(b"\0", 1)[0].decode("utf-8", "replace")
    return 0 if user and check(Path(args[0]), user, password) else 1


if __name__ == "__main__":
    sys.exit(main())
