"""The exception tree. Each class carries its HTTP status and its error code.

    SidecarError (500 internal)
    ├── BadRequest (400 invalid_request)
    │   ├── InvalidJson (400 invalid_json)
    │   ├── InvalidId (400 invalid_id)
    │   ├── UnknownRight (400 unknown_right)
    │   ├── UnknownRole (400 unknown_role)
    │   ├── TooManyChecks (400 too_many_checks)
    │   └── InvalidCode (400 invalid_code)        a wrong two-step code; carries attempts_left
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    │   └── Escalation (403 escalation)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    ├── BodyTooLarge (413 body_too_large)        over the body limit, declared or counted while reading
    ├── UriTooLong (414 uri_too_long)
    ├── HeaderTooLarge (431 header_too_large)
    ├── PolicyInvalid (422 policy_invalid)      a reload found a broken policy file; the last good one stays
    ├── Expired (410 expired)
    ├── Locked (423 locked)
    ├── RateLimited (429 rate_limited)            carries retry_after (seconds): the Retry-After header
    ├── Unavailable (503 unavailable)
    │   ├── RevisionNotReached (503 revision_not_reached)
    │   └── ChannelUnavailable (503 channel_unavailable)   email not configured, or SMTP failed
    ├── StoreUnavailable (503 redis_unavailable)   redis errors are mapped to this in ``store``
    └── ArchiveUnavailable (503 archive_unavailable)   the audit archive (PostgreSQL) did not answer

Only failures raise; a deny is a value. A failure never becomes an allow. Imports nothing.
"""

from __future__ import annotations

from typing import Any


class SidecarError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class BadRequest(SidecarError):
    status = 400
    code = "invalid_request"


class InvalidBody(BadRequest):
    code = "invalid_body"  # a body the server could not read whole: malformed chunks, shorter than declared


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidId(BadRequest):
    code = "invalid_id"


class UnknownRight(BadRequest):
    code = "unknown_right"


class UnknownRole(BadRequest):
    code = "unknown_role"


class TooManyChecks(BadRequest):
    code = "too_many_checks"


class InvalidCode(BadRequest):
    code = "invalid_code"


class BodyTooLarge(SidecarError):
    status = 413
    code = "body_too_large"


class LengthRequired(SidecarError):
    status = 411
    code = "length_required"


class UriTooLong(SidecarError):
    status = 414
    code = "uri_too_long"


class HeaderTooLarge(SidecarError):
    status = 431
    code = "header_too_large"


class Unauthorized(SidecarError):
    status = 401
    code = "unauthorized"


class Forbidden(SidecarError):
    status = 403
    code = "forbidden"


class Escalation(Forbidden):
    code = "escalation"


class NotFound(SidecarError):
    status = 404
    code = "not_found"


class PolicyInvalid(SidecarError):
    status = 422
    code = "policy_invalid"


class Conflict(SidecarError):
    status = 409
    code = "conflict"


class Expired(SidecarError):
    status = 410
    code = "expired"


class Locked(SidecarError):
    status = 423
    code = "locked"


class RateLimited(SidecarError):
    status = 429
    code = "rate_limited"


class Unavailable(SidecarError):
    status = 503
    code = "unavailable"


class RevisionNotReached(Unavailable):
    code = "revision_not_reached"


class ChannelUnavailable(Unavailable):
    code = "channel_unavailable"


class StoreUnavailable(Unavailable):
    code = "redis_unavailable"


class ArchiveUnavailable(Unavailable):
    code = "archive_unavailable"
