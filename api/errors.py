"""The API's one exception hierarchy; the error middleware turns each into a JSON body
``{"error": code, "message": ..., "field": ...}`` with its HTTP status."""

from __future__ import annotations

from schema.errors import Category, ScsyncError


class ApiError(ScsyncError):
    """Base of every error the API raises on purpose; each is an answer (``public``)."""

    status = 500
    code = "internal_error"
    public = True


class ConfigError(ApiError):
    """A setting is missing or malformed (raised at start-up, never to a client)."""

    code = "config_error"
    category = Category.USAGE


class BadRequest(ApiError):
    status = 400
    category = Category.REFUSED
    code = "bad_request"


class MalformedJson(BadRequest):
    code = "malformed_json"


class ValidationFailed(BadRequest):
    code = "validation_failed"


class Unauthorized(ApiError):
    status = 401
    category = Category.REFUSED
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    category = Category.REFUSED
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    category = Category.REFUSED
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    category = Category.REFUSED
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    category = Category.REFUSED
    code = "conflict"


class Locked(ApiError):
    """Someone else holds the record's edit lease."""

    status = 409
    code = "record_locked"
    category = Category.REFUSED


class TooManyRequests(ApiError):
    """Throttled (sign-in failures); ``retry_after`` seconds go out as Retry-After."""

    status = 429
    code = "too_many_requests"
    category = Category.REFUSED


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    category = Category.REFUSED


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    category = Category.REFUSED


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"
    category = Category.UNAVAILABLE


class LockServiceUnreachable(ServiceUnavailable):
    code = "lock_service_unreachable"


class FromLockd(ApiError):
    """A lockd error passed on with lockd's own status, code and extra fields
    (``lease_busy`` with ``holder`` and ``editing_by``, ``version_conflict``, ...)."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None, **extra: object
    ) -> None:
        super().__init__(message, field=field, **extra)
        self.status = status
        self.code = code


class DatabaseError(ServiceUnavailable):
    code = "database_unavailable"
