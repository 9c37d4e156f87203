"""Expected failures, each with a stable code.

The tree (mapped once to HTTP problem+json in `creditflow.http.problems` and to CLI exit codes in
`creditflow.cli.main`)::

    DomainError                       exit 2
      InvalidInput        422  invalid_input, invalid_amount, invalid_uscc, ...
      NotFound            404  *_not_found
      Forbidden           403  not_holder, not_recipient, not_issuer, role_not_allowed, ...
      Unauthenticated     401  unauthenticated
      Conflict            409  piece_already_spent, piece_frozen, certificate_matured, replayed_operation, ...
      BadSignature        400  bad_signature
      LimitExceeded       413  limit_exceeded, tree_too_large
      Unavailable         503  ledger_busy

Programmer errors are assertions, never DomainError. A DomainError always means "nothing changed".
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A rule said no. `code` is stable and documented; `message` is for humans; `field` names the input."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "domain_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InvalidInput(DomainError):
    status = 422
    default_code = "invalid_input"


class NotFound(DomainError):
    status = 404
    default_code = "not_found"


class Forbidden(DomainError):
    status = 403
    default_code = "forbidden"


class Unauthenticated(DomainError):
    status = 401
    default_code = "unauthenticated"


class Conflict(DomainError):
    status = 409
    default_code = "conflict"


class BadSignature(DomainError):
    status = 400
    default_code = "bad_signature"


class Unavailable(DomainError):
    """Temporarily unable to serve (overloaded, shutting down): retry later."""

    status = 503
    default_code = "unavailable"


class LimitExceeded(DomainError):
    status = 413
    default_code = "limit_exceeded"
