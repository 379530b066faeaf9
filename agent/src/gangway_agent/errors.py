"""The agent's one error tree.

::

    AgentError
    ├── ConfigError        the config file is missing or malformed (the CLI exits 2)
    ├── ProtocolError      a message broke the contract; carries the ErrorCode sent back
    ├── QueryFailed        the game's player query got no answer, or one that breaks its protocol
    └── RequestFailed      a valid request could not be carried out; carries its ErrorCode
        ├── CommandFailed  an external command (nft, growpart, sshd...) exited non-zero
        └── GameError      the game process could not be started or stopped

Handlers raise; only the dispatcher turns an error into an ``error`` reply.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` reply (contract/README.md)."""

    BAD_JSON = "bad_json"
    BAD_ENVELOPE = "bad_envelope"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    BAD_BODY = "bad_body"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    code: ErrorCode = ErrorCode.FAILED


class ConfigError(AgentError):
    """The configuration file is missing, unreadable or malformed."""


class ProtocolError(AgentError):
    """A message did not follow the contract."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class QueryFailed(AgentError):
    """The game did not answer its player query, or answered outside its protocol (query/)."""


class RequestFailed(AgentError):
    """A well-formed request could not be carried out."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


class CommandFailed(RequestFailed):
    """An external command exited non-zero; keeps its argv, exit code and stderr."""

    def __init__(self, argv: tuple[str, ...], returncode: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited {returncode}: {stderr.strip()[:300]}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class GameError(RequestFailed):
    """The game process could not be started, stopped or saved."""
