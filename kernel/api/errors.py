"""Pallet's errors as Docker's status codes and ``{"message": …}`` bodies."""

from __future__ import annotations

import json

from aiohttp import web

from pallet.kernel.errors import Conflict, Forbidden, NotFound, PalletError, Unauthorized, Unavailable, UsageError


class ApiError(PalletError):
    """An error raised by a handler with the HTTP status it stands for."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status_for(exc: PalletError) -> int:
    """Docker's codes: 404 for a missing object, 409 for a conflict, 403 for what the object forbids,
    400 for bad parameters, 401 for missing or refused registry credentials, else 500."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, NotFound) or str(exc).startswith(("No such ", "no such ")):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Unavailable):
        return 501
    return 500


def error_response(status: int, message: str) -> web.Response:
    # Exactly "application/json", no charset: the docker CLI shows anything else as raw text.
    return web.Response(status=status, body=json.dumps({"message": message}).encode() + b"\n",
                        headers={"Content-Type": "application/json"})
