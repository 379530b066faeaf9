"""The game's console: its stdin is a named pipe (FIFO) the agent writes one line to (`save-all`, `stop`).

The game opens the FIFO read-write itself (`0<>` in the shell that execs it; the process mode passes an
O_RDWR descriptor), so it holds a writer of its own: it never reads end-of-file when the agent goes
away or restarts, and opening it never blocks. The agent opens it write-only and non-blocking for each
line; with no reader (the game is not running) that fails with ENXIO, said in words. The FIFO lives in
/run/gangway on an instance (systemd mode, as root) and in the state dir otherwise; it is made again,
owned by the game's user (who must open it read-write), before each start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shlex
import stat
from pathlib import Path
from typing import Final

from .config import GameConfig, LaunchMode
from .errors import GameError

__all__ = ["RUN_DIR", "Console", "console_path"]

RUN_DIR: Final = Path("/run/gangway")


def console_path(cfg: GameConfig, state_dir: Path) -> Path:
    base = RUN_DIR if cfg.mode is LaunchMode.SYSTEMD else state_dir / "console"
    return base / f"{cfg.unit}.console"


class Console:
    """One FIFO: made before a start, written one line at a time."""

    def __init__(self, path: Path, user: str | None = None) -> None:
        self.path = path
        self._user = user

    def prepare(self) -> None:
        """A fresh FIFO (mode 0600) owned by the game's user; the directory only traversable by others."""
        self.path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.mkfifo(self.path, 0o600)
        if self._user is not None and os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(self._user)
            except KeyError as exc:
                raise GameError(f"the game's user {self._user!r} does not exist on this instance") from exc
            os.chown(self.path, entry.pw_uid, entry.pw_gid)

    def open_for_game(self) -> int:
        """A read-write descriptor for the game's stdin (process mode); the caller closes its copy."""
        return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def wrap(self, argv: list[str] | tuple[str, ...]) -> list[str]:
        """`argv` run with the FIFO as its stdin, opened read-write by the game's own shell, then exec'd."""
        return ["/bin/sh", "-c", f'exec "$0" "$@" 0<> {shlex.quote(str(self.path))}', *argv]

    def write(self, line: str) -> None:
        """Send one line to the game's console. Raises GameError when the game is not reading it."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                raise GameError("the game is not running, so its console cannot take a command") from exc
            raise GameError(f"cannot open the game's console: {exc.strerror}") from exc
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise GameError("the game's console is not a pipe; start the game again to make it")
            data = (line + "\n").encode()
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            if written != len(data):
                raise GameError("the game's console is full (the game is not reading its input); "
                                "the command was not sent")
        finally:
            os.close(fd)
