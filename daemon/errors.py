"""Errors the engine raises; the API turns each into Docker's status and `{"message": ...}`.

The classes live in manager.errors (the swarm store raises them too, and it may not
import this layer); this module is where the daemon and the API take them from.
"""

from manager.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotImplementedYet,
    OverlaydError,
    SystemError_,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidParameter",
    "NotFound",
    "NotImplementedYet",
    "OverlaydError",
    "SystemError_",
    "Unauthorized",
    "Unavailable",
]
