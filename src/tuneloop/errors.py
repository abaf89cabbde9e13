"""The exceptions tuneloop raises, written for the person who reads them.

    TuneloopError                 base: catch this to catch everything tuneloop raises on purpose
    ├── ConfigError               tuneloop.yaml is missing or invalid (names file, field, line)
    ├── StoreError                the database cannot be opened or migrated
    ├── NotFound                  a named thing (source, dataset, key, run...) does not exist
    ├── InvalidInput              an argument is malformed or out of range (400)
    ├── DataError                 a record or file is malformed (names file and line)
    ├── PermissionDenied          the principal's role does not allow the action
    │   └── ApprovalRequired      Tier 2 data used without a live approval (names what to request)
    ├── EngineError               an inference engine failed or refused the request
    │   └── InvalidRequest        bad messages or generation parameters (a caller error)
    ├── TrainingError             fine-tuning could not run or could not finish
    └── GateFailed                an evaluation or rollout gate did not pass

Every message says what happened, where, and what to do next. The CLI turns them into one line and
an exit code, the server into an OpenAI-style error body; each in one place.
"""

from __future__ import annotations


class TuneloopError(Exception):
    """Base class of every error tuneloop raises on purpose."""

    #: exit code used by the CLI
    exit_code: int = 1
    #: HTTP status used by the server
    http_status: int = 500
    #: OpenAI-style error type
    error_type: str = "server_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(TuneloopError):
    """tuneloop.yaml is missing, unreadable or invalid."""

    http_status = 500


class StoreError(TuneloopError):
    """The database cannot be opened, migrated or written."""


class NotFound(TuneloopError):
    """A named object does not exist."""

    http_status = 404
    error_type = "not_found_error"


class InvalidInput(TuneloopError):
    """An argument is malformed or out of range (a duration, a scope, a use, a state change that
    does not apply): the caller's mistake, answered with 400 by the server."""

    http_status = 400
    error_type = "invalid_request_error"


class DataError(TuneloopError):
    """Input data is malformed; the message names the file and line."""

    http_status = 400
    error_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.line = line
        self.reason = message


class PermissionDenied(TuneloopError):
    """The principal may not do this."""

    http_status = 403
    error_type = "permission_error"


class ApprovalRequired(PermissionDenied):
    """Tier 2 data was about to be used without a live approval covering it."""

    def __init__(self, message: str, *, use: str, resources: list[str], hint: str) -> None:
        super().__init__(message, hint=hint)
        self.use = use
        self.resources = resources


class EngineError(TuneloopError):
    """An inference engine failed."""

    http_status = 502
    error_type = "engine_error"


class InvalidRequest(EngineError):
    """A caller passed bad messages or parameters."""

    http_status = 400
    error_type = "invalid_request_error"


class TrainingError(TuneloopError):
    """Fine-tuning could not run or finish."""


class GateFailed(TuneloopError):
    """A quality, latency or rollout gate did not pass."""

    exit_code = 3
    http_status = 409
    error_type = "gate_failed"
