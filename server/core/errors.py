"""The one exception hierarchy of the domain; server/app.py maps it to HTTP once."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code
        # Every problem this error stands for: itself, or each field's of a form checked whole
        # (Invalid.of). A form shows them all; the JSON API's one error is the first.
        self.problems: tuple[DomainError, ...] = (self,)


class Invalid(DomainError):
    status_code = 422
    code = "invalid"

    @classmethod
    def of(cls, problems: Sequence[Invalid]) -> Invalid:
        """One error for several: it reads as the first and carries them all in `problems`."""
        first = problems[0]
        combined = cls(first.message, field=first.field, code=first.code)
        combined.problems = tuple(problems)
        return combined


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class TooManyRequests(DomainError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """Something the request truly needs (Redis for the login throttle) is away: try again shortly."""

    status_code = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
