"""The error every service raises for a request it refuses."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses, with a sentence for the user and a machine code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
