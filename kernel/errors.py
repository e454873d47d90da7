"""Errors a user can cause: each one becomes one line on stderr and an exit code, never a traceback."""

__all__ = ["Conflict", "Forbidden", "NotFound", "PalletError", "Unauthorized", "Unavailable", "UsageError"]


class PalletError(Exception):
    """A failure the user can act on. ``str(err)`` is the whole message; ``exit_code`` is returned."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(PalletError):
    """A wrong flag, name or argument: exit code 2, as click uses for usage errors."""

    exit_code = 2


class NotFound(PalletError):
    """A named object (image, container, network, volume) does not exist."""


class Conflict(PalletError):
    """The request contradicts existing state (name in use, container running, data of another driver)."""


class Forbidden(PalletError):
    """The request is well formed but the object does not allow it (Docker's 403: a configuration-only network)."""


class Unauthorized(PalletError):
    """Credentials are missing or were refused (by a registry): the API answers 401, as Docker."""


class Unavailable(PalletError):
    """A driver cannot work on this host; the message names it and gives its probe's reason."""
