"""The error code AWS answered with, read off a botocore `ClientError` in one place.

botocore puts the parsed error on `ClientError.response["Error"]["Code"]`; the modeled exceptions
(`client.exceptions.ResourceNotFoundException`, ...) are ClientErrors too. Reading it by duck type
keeps botocore out of the import (callers decide by code, not by class) and lets any other exception
fall back to `default`.
"""

from __future__ import annotations

__all__ = ["error_code"]


def error_code(exc: BaseException, default: str = "") -> str:
    """The AWS error code of a botocore ClientError (like `InvalidGroup.NotFound`), else `default`.

    Callers that show the code to people pass `type(exc).__name__` as `default`, so a failure that
    never reached AWS (a timeout, a refused role) still says what it was.
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return default
    error = response.get("Error", {})
    return str(error.get("Code", default)) if isinstance(error, dict) else default
