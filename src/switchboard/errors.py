"""The exception tree of Switchboard.

    SwitchboardError
     ├── ConfigError            a SWITCHBOARD_* variable is missing or malformed
     ├── StoreError             the store failed (driver errors are translated into these)
     │    ├── StoreUnavailable  the database cannot be reached right now (HTTP 503)
     │    └── MigrationError    the schema is not at the expected revision
     └── ApiError               a request the client can fix (carries an HTTP status and code)
          ├── BadRequest        400: malformed JSON or parameters
          ├── Unauthorized      401: no API key, or an unknown/revoked one
          ├── Forbidden         403: the key lacks the scope for this action
          ├── NotFound          404: nothing with that id in this tenant
          ├── RequestTimeout    408: the client stopped sending the request (or went away)
          ├── Conflict          409: the change conflicts with what is stored
          ├── PayloadTooLarge   413: body or batch over the configured limit
          ├── UnsupportedMedia  415: the content type is not JSON
          ├── Unprocessable     422: well-formed but invalid (schema violations)
          ├── RateLimited       429: the key or tenant is over its rate limit
          └── ProviderFailed    502: a provider the hub called for the request failed

Each leaf's docstring is its default message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SwitchboardError(Exception):
    """Switchboard failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(SwitchboardError):
    """The configuration is invalid."""


class StoreError(SwitchboardError):
    """The store failed."""


class StoreUnavailable(StoreError):
    """The database is unavailable; try again shortly."""


class MigrationError(StoreError):
    """The database schema is not at the current revision; run `switchboard migrate`."""


class ApiError(SwitchboardError):
    """The request failed."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.details:
            err["details"] = self.details
        return {"error": err}


class BadRequest(ApiError):
    """The request is malformed."""

    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """This API key lacks the scope for this action."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """Nothing with that id exists in this tenant."""

    status = 404
    code = "not_found"


class RequestTimeout(ApiError):
    """The request body did not arrive in time, or the client went away."""

    status = 408
    code = "request_timeout"


class Conflict(ApiError):
    """The change conflicts with what is stored."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    """The request body is over the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMedia(ApiError):
    """Send JSON with `Content-Type: application/json`."""

    status = 415
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    """The request is well-formed but invalid."""

    status = 422
    code = "unprocessable"


class RateLimited(ApiError):
    """Too many requests; retry after the time in the Retry-After header."""

    status = 429
    code = "rate_limited"


class ProviderFailed(ApiError):
    """The provider the hub called for this request failed or answered an error."""

    status = 502
    code = "provider_error"
