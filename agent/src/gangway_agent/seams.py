"""Injectable seams: the clock and the command runner, so tests drive time and see commands."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import CommandFailed


class Clock(Protocol):
    """Wall time for timestamps and deadlines; tests pass a clock they move by hand."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class Completed:
    """The outcome of one external command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs an external command to completion."""

    def run(
        self, argv: Sequence[str], *, input_text: str | None = None, timeout: float = 30.0,
        check: bool = True, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    ) -> Completed:
        """Run ``argv``; raise CommandFailed on a non-zero exit when ``check``."""
        ...


class SubprocessRunner:
    """The real runner: subprocess without a shell."""

    def run(
        self, argv: Sequence[str], *, input_text: str | None = None, timeout: float = 30.0,
        check: bool = True, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    ) -> Completed:
        args = tuple(argv)
        try:
            proc = subprocess.run(
                args, input=input_text, capture_output=True, text=True, timeout=timeout,
                env=dict(env) if env is not None else None, cwd=cwd, check=False,
            )
        except FileNotFoundError as exc:
            raise CommandFailed(args, 127, f"not found: {exc.filename}") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(args, -1, f"timed out after {timeout}s") from exc
        done = Completed(args, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise CommandFailed(args, proc.returncode, proc.stderr)
        return done
