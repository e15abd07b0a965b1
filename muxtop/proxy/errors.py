"""toxiproxy's error: a message and the HTTP status its API answers with."""

from __future__ import annotations


class ApiError(Exception):
    """What went wrong, as toxiproxy words it, and its HTTP status (400, 404, 409, 500)."""

    def __init__(self, message: str, status: int, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # The why alone, for a command line (--toxic): "bad request body" is the API's.
        self.reason = message if reason is None else reason

    def plain(self) -> dict[str, object]:
        """toxiproxy's JSON body of an error: {"error": ..., "status": N}."""
        return {"error": self.message, "status": self.status}


def bad_body(why: str) -> ApiError:
    return ApiError(f"bad request body: {why}", 400, reason=why)


def missing(field: str) -> ApiError:
    return ApiError(f"missing required field: {field}", 400)
