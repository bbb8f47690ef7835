"""lockd's one exception hierarchy.

Each error has an HTTP ``status`` and a stable ``code``; the web layer turns it into
``{"error": code, "message": ..., "field": ...}`` and the site client turns such a body
back into the same class, so callers of the library and of the client catch the same
exceptions. Driver errors become these at one boundary (:mod:`lockd.manager`).
"""

from __future__ import annotations

from schema.errors import Category, ScsyncError


class LockdError(ScsyncError):
    """Base of every error lockd raises on purpose; each is an answer (``public``)."""

    status = 500
    code = "lockd_error"
    public = True


class BadRequest(LockdError):
    """A request field is missing or malformed; ``field`` names it."""

    status = 400
    code = "bad_request"
    category = Category.REFUSED


class InvalidChange(BadRequest):
    """A save's changes name a column that cannot be edited or carry a bad value."""

    code = "invalid_change"


class Unauthorized(LockdError):
    """No token, or a forged, malformed or expired one."""

    status = 401
    code = "unauthorized"
    category = Category.REFUSED


class Forbidden(LockdError):
    """The caller may not touch this record (another site's) or this operation."""

    status = 403
    code = "forbidden"
    category = Category.REFUSED


class NotEditable(Forbidden):
    """Accounts (``user_accounts``; any ``password_hash`` or ``role``) are changed only
    through the API's account endpoints, never by an edit session's save."""

    code = "not_editable"


class RecordNotFound(LockdError):
    status = 404
    code = "record_not_found"
    category = Category.REFUSED


class NoLease(LockdError):
    """Nothing to break: the record has no lease."""

    status = 404
    code = "no_lease"
    category = Category.REFUSED


class PayloadTooLarge(LockdError):
    status = 413
    code = "payload_too_large"
    category = Category.REFUSED


class LeaseBusy(LockdError):
    """Someone else holds a live lease on the record (``holder``, ``expires_in_ms``)."""

    status = 409
    code = "lease_busy"
    category = Category.REFUSED


class LeaseNotHeld(LockdError):
    """The lease id + token do not name a current lease of the caller: released,
    broken, or expired and taken over. Whatever the caller meant to do is refused."""

    status = 409
    code = "lease_not_held"
    category = Category.REFUSED


class LeaseExpired(LeaseNotHeld):
    """The lease ran past its TTL (by the database clock)."""

    code = "lease_expired"


class VersionConflict(LockdError):
    """The record moved under the edit session (another path wrote it), or the request
    was based on an older revision than the session's. Nothing was written."""

    status = 409
    code = "version_conflict"
    category = Category.REFUSED


class LockdUnavailable(LockdError):
    """lockd could not reach its database. When it happened during a write, the outcome
    is unknown: retry with the same ``save_id``."""

    status = 503
    code = "lockd_unavailable"
    category = Category.UNAVAILABLE


class LockServiceUnreachable(LockdError):
    """(site client) lockd did not answer within the client's timeout. The local API
    turns this into "lock service unreachable - edit offline?"."""

    status = 503
    code = "lock_service_unreachable"
    category = Category.UNAVAILABLE


class OfflineSessionError(LockdError):
    """An offline (unfenced, local-only) session is unknown or already closed."""

    status = 409
    code = "offline_session_closed"
    category = Category.REFUSED


ERRORS_BY_CODE: dict[str, type[LockdError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        InvalidChange,
        Unauthorized,
        Forbidden,
        NotEditable,
        RecordNotFound,
        NoLease,
        PayloadTooLarge,
        LeaseBusy,
        LeaseNotHeld,
        LeaseExpired,
        VersionConflict,
        LockdUnavailable,
        LockServiceUnreachable,
        OfflineSessionError,
    )
}
