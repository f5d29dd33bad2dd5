"""Typed errors for every way a Neon API call can fail; none of them ever carries a key or a password."""

from __future__ import annotations


class NeonError(Exception):
    """Base of all client errors. `str()` is safe to show a user: it has Neon's message and request id."""

    title = "Neon API error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        code: str = "",
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.code = code
        self.method = method
        self.path = path

    def __str__(self) -> str:
        parts = [self.message]
        where = " ".join(p for p in (self.method, self.path) if p)
        extra = []
        if self.status is not None:
            extra.append(f"HTTP {self.status}")
        if where:
            extra.append(where)
        if self.request_id:
            extra.append(f"request id {self.request_id}")
        if extra:
            parts.append(f"({'; '.join(extra)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ApiError(NeonError):
    """Neon answered with an error status that has no more specific class."""


class BadRequestError(ApiError):
    title = "Request rejected"


class AuthenticationError(ApiError):
    title = "API key rejected"


class PermissionDeniedError(ApiError):
    title = "Permission denied"


class NotFoundError(ApiError):
    title = "Not found"


class PasswordsNotStoredError(ApiError):
    """412: the project has store_passwords off, so Neon cannot reveal a password."""

    title = "Passwords are not stored"


class LockedError(ApiError):
    """423: the project has running operations; safe to retry later."""

    title = "Project is busy"


class RateLimitedError(ApiError):
    """429: the account went over Neon's rate limit."""

    title = "Rate limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx from Neon."""

    title = "Neon server error"


class NetworkError(NeonError):
    """The request did not get an HTTP answer (DNS, connect, reset, TLS...)."""

    title = "Network error"


class RequestTimeoutError(NetworkError):
    title = "Request timed out"


class OutcomeUnknownError(NetworkError):
    """A mutation was sent but its answer was lost: it may or may not have been applied.

    For reset_password this means a new password may exist that nobody saw. The client never
    retries it; the caller must reconcile (read the role, reveal the password where stored).
    """

    title = "Outcome unknown"


class UnexpectedResponseError(NeonError):
    """Neon answered, but not with the shape the API spec promises."""

    title = "Unexpected response"


class InsecureTransportError(NeonError):
    """Refused to send the API key over plain http to a host that is not loopback."""

    title = "Insecure API host"


class MalformedApiKeyError(NeonError):
    """The API key cannot be a Neon key (inner whitespace, control or non-ASCII characters). Never shows it."""

    title = "Malformed API key"


class InvalidHostError(InsecureTransportError):
    """NEON_API_HOST is not a usable URL (spaces, control characters, bad port...)."""

    title = "Invalid API host"


class TlsError(NeonError):
    """TLS with the API host failed (certificate verification, handshake). Not retried: it won't change.

    Deliberately not a NetworkError, so callers that retry network errors do not retry this one.
    """

    title = "TLS certificate verification failed"

    def __init__(self, message: str, *, host: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.host = host


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    412: PasswordsNotStoredError,
    423: LockedError,
    429: RateLimitedError,
}


def error_for_status(status: int) -> type[ApiError]:
    """The error class for an HTTP error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ApiError
