"""One exception tree for the whole service.

::

    WatcherError
    ├── ConfigError            config.toml or an edit of it is invalid (has .problems)
    │   └── FileWriteError     (watcher.config_edit) the file could not be written; it is unchanged
    ├── EditConflict           an edit based on a stale file version; nothing written (has .actual)
    ├── SourceFailure          one source could not be polled (has .code; becomes a SourceError value)
    │   ├── FetchError         HTTP, network, policy (blocked address, size cap, robots.txt …)
    │   └── ParseError         the body could not be read as the adapter's format
    ├── StorageError           the database failed (has .code: db_busy, db_unavailable, db_revision …)
    ├── RuleError              a rule file is invalid (has .path, .line, .rule)
    └── DeliveryError          an email could not be delivered
        ├── TransientDeliveryError   retry later (SMTP 4xx, connection refused, timeout)
        └── PermanentDeliveryError   give up for this recipient (SMTP 5xx)

Boundaries translate lower-level errors with ``raise … from e`` so the rest of the code
catches only these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class WatcherError(Exception):
    """Base of every error the service raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration, with the dotted key path it concerns."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(WatcherError):
    def __init__(self, problems: Sequence[ConfigProblem] | str, source: str = "") -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("", problems)]
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(p) for p in self.problems))


class EditConflict(WatcherError):
    """A file changed since the version an edit was based on; nothing was written.

    ``expected`` is the version the edit was based on, ``actual`` the file's version now
    (``"absent"`` when it does not exist): an editor shows the file at ``actual`` beside the
    edit, and saving again over ``actual`` is then a deliberate choice."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"{path} was changed by someone else since it was read "
            f"(version {expected[:12]}, now {actual[:12]}); nothing was saved"
        )


class SourceFailure(WatcherError):
    """Base for failures of one source; ``code`` is a short stable word."""

    code = "source_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class FetchError(SourceFailure):
    code = "fetch_error"


class ParseError(SourceFailure):
    code = "parse_error"


class StorageError(WatcherError):
    """The database failed. ``code``: ``db_busy`` (locked by another writer past the busy
    timeout), ``db_unavailable`` (cannot be reached), ``db_revision`` (a schema this version
    does not know), ``storage_error`` (anything else). The message is plain for the first
    three; ``detail`` keeps the driver's text for the admin and the log."""

    def __init__(self, message: str, code: str = "storage_error", detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class RuleError(WatcherError):
    def __init__(
        self, message: str, path: str = "", line: int | None = None, rule: str = ""
    ) -> None:
        self.path, self.line, self.rule = path, line, rule
        where = path + (f":{line}" if line else "")
        who = f" (rule {rule})" if rule else ""
        super().__init__(f"{where}{who}: {message}" if where else f"{message}{who}")


class DeliveryError(WatcherError):
    pass


class TransientDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass
