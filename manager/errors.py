"""Errors with the HTTP status Docker answers them with; the API turns each into `{"message": ...}`.

One class per HTTP status Docker uses, so handlers never pick status codes themselves.
"""


class OverlaydError(Exception):
    """Base class; `status` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(OverlaydError):
    status = 400


class Unauthorized(OverlaydError):
    status = 401


class Forbidden(OverlaydError):
    status = 403


class NotFound(OverlaydError):
    status = 404


class Conflict(OverlaydError):
    status = 409


class NotImplementedYet(OverlaydError):
    status = 501


class Unavailable(OverlaydError):
    status = 503


class SystemError_(OverlaydError):
    """Something below us failed (kernel, disk): Docker answers 500."""

    status = 500
