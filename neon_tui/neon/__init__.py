"""The Neon API v2 client: typed models, typed errors, retries and a client-side rate limiter (no UI imports)."""

from neon_tui.neon.client import DEFAULT_HOST, NeonClient, RequestRecord, RetryPolicy
from neon_tui.neon.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    InsecureTransportError,
    LockedError,
    NeonError,
    NetworkError,
    NotFoundError,
    OutcomeUnknownError,
    PasswordsNotStoredError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    UnexpectedResponseError,
)
from neon_tui.neon.ratelimit import RateLimiter, RateLimits
from neon_tui.neon.secret import Secret

__all__ = [
    "DEFAULT_HOST",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "InsecureTransportError",
    "LockedError",
    "NeonClient",
    "NeonError",
    "NetworkError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PasswordsNotStoredError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RateLimiter",
    "RateLimits",
    "RequestRecord",
    "RequestTimeoutError",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "UnexpectedResponseError",
]
