"""lockd's one exception hierarchy.

Each error has an HTTP ``status`` and a stable ``code``; the web layer turns it into
``{"error": code, "message": ..., "field": ...}`` and the site client turns such a body
back into the same class, so callers of the library and of the client catch the same
exceptions. Driver errors become these at one boundary (:mod:`lockd.manager`).
"""

from __future__ import annotations

from schema.errors import CodedError


class LockdError(CodedError):
    """Base of every error lockd raises on purpose."""

    status = 500
    code = "lockd_error"


class BadRequest(LockdError):
    """A request field is missing or malformed; ``field`` names it."""

    status = 400
    code = "bad_request"


class InvalidChange(BadRequest):
    """A save's changes name a column that cannot be edited or carry a bad value."""

    code = "invalid_change"


class Unauthorized(LockdError):
    """No token, or a forged, malformed or expired one."""

    status = 401
    code = "unauthorized"


class Forbidden(LockdError):
    """The caller may not touch this record (another site's) or this operation."""

    status = 403
    code = "forbidden"


class NotEditable(Forbidden):
    """Accounts (``user_accounts``; any ``password_hash`` or ``role``) are changed only
    through the API's account endpoints, never by an edit session's save."""

    code = "not_editable"


class RecordNotFound(LockdError):
    status = 404
    code = "record_not_found"


class NoLease(LockdError):
    """Nothing to break: the record has no lease."""

    status = 404
    code = "no_lease"


class PayloadTooLarge(LockdError):
    status = 413
    code = "payload_too_large"


class LeaseBusy(LockdError):
    """Someone else holds a live lease on the record (``holder``, ``expires_in_ms``)."""

    status = 409
    code = "lease_busy"


class LeaseNotHeld(LockdError):
    """The lease id + token do not name a current lease of the caller: released,
    broken, or expired and taken over. Whatever the caller meant to do is refused."""

    status = 409
    code = "lease_not_held"


class LeaseExpired(LeaseNotHeld):
    """The lease ran past its TTL (by the database clock)."""

    code = "lease_expired"


class VersionConflict(LockdError):
    """The record moved under the edit session (another path wrote it), or the request
    was based on an older revision than the session's. Nothing was written."""

    status = 409
    code = "version_conflict"


class LockdUnavailable(LockdError):
    """lockd could not reach its database. When it happened during a write, the outcome
    is unknown: retry with the same ``save_id``."""

    status = 503
    code = "lockd_unavailable"


class LockServiceUnreachable(LockdError):
    """(site client) lockd did not answer within the client's timeout. The local API
    turns this into "lock service unreachable - edit offline?"."""

    status = 503
    code = "lock_service_unreachable"


class OfflineSessionError(LockdError):
    """An offline (unfenced, local-only) session is unknown or already closed."""

    status = 409
    code = "offline_session_closed"


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
