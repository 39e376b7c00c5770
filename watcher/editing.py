"""One editing service for the admin web and the CLI: config entries and rule files.

The admin (``watcher.web.admin``) and ``watcher rules …`` run the same workflows on the same
files, so the workflows live here, below both surfaces and without FastAPI or click in them.
A surface turns requests or options into calls and the results and exceptions into pages or
output; what is checked, written, put in force and recorded is decided here.

* ``ConfigEditor`` saves, deletes and switches on and off the ``[[sources]]`` and
  ``[[networks]]`` entries of config.toml, through ``watcher.config_edit`` (tomlkit,
  atomic writes). An edit names the file version it was based on; if the file is at
  another version the edit is refused with ``EditConflict`` and nothing is written.
  ``_commit`` is the one place a config edit is written and put in force
  (``App.set_config``; the scheduler and the feed cache follow through
  ``hooks.config_changed``), ``audit`` the one place it is recorded (secrets redacted).
  A save, delete or switch that is refused is recorded too (``source.edit_refused`` …,
  ``refused``), with the reason: ``invalid`` (each problem with its key path),
  ``conflict`` (the version the edit was based on and the file's) or ``write_failed``;
  a surface records the refusals of its own checks (a form field that does not parse)
  with ``refuse_entry``.
* ``RulesWorkspace`` is the rule editor's side: which rule files are loaded and which may be
  edited (``files``, ``targets``), the rule set a changed text would give (``candidate``),
  the back-test of a rule set on the stored items (``backtest``: it only reads), and
  ``save``: write the file under the same version check, list a new file in ``[rules]
  paths``, reload the rules, re-tag the stored items (``retag``), and audit; a save
  refused by the version check, or by rules that do not load (``refuse``), is recorded as
  ``rules.save_refused``.
* A write the system refuses (permissions, a full disk) is ``FileWriteError`` (a
  ``ConfigError``) with the file unchanged, recorded with the reason ``write_failed``;
  ``remove_interrupted_writes`` removes what writes killed midway left, at start.

The list of configured rule files is ``watcher.classify.rule_paths``, the one the
classifier loads; everything here derives from it. Time comes from ``App.now``.

Exceptions: ``KeyError`` for an entry or rule file that is not there (a 404 on the web),
``ConfigError`` for an edit that does not validate (with the key paths of its problems),
``EditConflict`` for a stale version, ``RuleSetError`` for rules that do not load,
``config_edit.FileWriteError`` (a ``ConfigError``) for a file that could not be written.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from rules.backtest import TagDiff, backtest
from rules.loader import RuleSetError, rule_files, rules_from_texts
from rules.model import RuleSet
from watcher.app import App
from watcher.classify import RetagReport, retag, rule_paths
from watcher.config import Config, config_path
from watcher.config_edit import (
    NETWORK_KEYS,
    SOURCE_KEYS,
    ConfigFile,
    FileWriteError,
    TextFile,
    diff_entries,
    is_secret_key,
    redact,
    redact_text,
    remove_stale_temp_files,
    save_text,
)
from watcher.exceptions import ConfigError, ConfigProblem, EditConflict, RuleError, WatcherError

# The config tables of entries the editor changes.
EntryTable = Literal["sources", "networks"]

# Per table: the word its audit actions start with ("source.add") and the order keys get
# in a new entry (so an added entry reads like the hand-written ones).
_NOUN: dict[str, str] = {"sources": "source", "networks": "network"}
_KEY_ORDER: dict[str, tuple[str, ...]] = {"sources": SOURCE_KEYS, "networks": NETWORK_KEYS}

REFUSAL_PROBLEMS = 50  # problems of a refused edit kept in its audit entry
BACKTEST_BATCH = 500  # stored items classified per read: bounded memory on big databases
AUDIT_DIFF_LIMIT = 20_000  # characters of a rule file's diff kept in its audit entry


def config_file_path(app: App) -> Path:
    """The config file the editors change: the one loaded, or where one would be loaded
    from (a service started without a file gets one on its first edit)."""
    return Path(app.config.path) if app.config.path else config_path(None).resolve()


def remove_interrupted_writes(app: App) -> list[Path]:
    """Remove the temp files that writes killed midway left beside config.toml and the
    editable rule files (see ``config_edit.remove_stale_temp_files``: never one of a write
    in progress); the ones removed. The service calls this when it starts."""
    paths = [config_file_path(app), *RulesWorkspace(app, "service").targets()]
    removed: list[Path] = []
    for path in dict.fromkeys(paths):
        removed.extend(remove_stale_temp_files(path))
    return removed


# -- config entries ------------------------------------------------------------------------


class ConfigEditor:
    """Edits of config.toml's sources and networks by one actor (a user name, or "cli").

    Saving is two steps for a form: ``read`` the file, then ``check_entry`` (validation
    only: the admin's test fetch) or ``save_entry`` on that ``ConfigFile`` with the version
    the form was opened at. ``delete_entry`` and ``set_enabled`` read and save in one go,
    at the version they read."""

    def __init__(self, app: App, actor: str) -> None:
        self.app = app
        self.actor = actor

    @property
    def path(self) -> Path:
        return config_file_path(self.app)

    def read(self) -> ConfigFile:
        """The config file as it is now, with its version token."""
        return ConfigFile.read(self.path)

    def entry(self, cf: ConfigFile, table: EntryTable, entry_id: str) -> dict[str, Any]:
        """The entry with this id as the file holds it; KeyError when there is none."""
        index = cf.index_of(table, entry_id)
        if index is None:
            raise KeyError(entry_id)
        return cf.entries(table)[index]

    def key_path(self, cf: ConfigFile, table: EntryTable, entry_id: str) -> str:
        """The key path (``sources[3]``) the validation problems of this entry start with."""
        return f"{table}[{cf.index_of(table, entry_id)}]"

    def check_entry(
        self,
        cf: ConfigFile,
        table: EntryTable,
        entry: Mapping[str, Any],
        *,
        replace_id: str | None,
    ) -> Config:
        """Put ``entry`` into the document (in place of ``replace_id``, or appended) and
        validate the whole file as ``watcher check-config`` would. Nothing is written.
        The config it would give; ``ConfigError`` with key paths (see ``key_path``)."""
        cf.put_entry(table, entry, replace_id=replace_id, order=_KEY_ORDER[table])
        return cf.validate()

    def save_entry(
        self,
        cf: ConfigFile,
        table: EntryTable,
        entry: Mapping[str, Any],
        *,
        replace_id: str | None,
        version: str,
    ) -> Config:
        """Add (``replace_id`` None) or replace an entry, if the file is still at
        ``version``: checked, written, put in force and audited (``source.add``,
        ``network.edit`` … with the changed fields). Validation comes first, so problems
        are reported even on a stale form; then ``EditConflict`` if the file is not at
        ``version`` (also when it changes between this read and the write)."""
        existing = self.entry(cf, table, replace_id) if replace_id is not None else None
        action = f"{_NOUN[table]}.{'add' if existing is None else 'edit'}"
        changes = diff_entries(existing, entry)
        try:
            self.check_entry(cf, table, entry, replace_id=replace_id)
            new = self._commit(cf, version)
        except (ConfigError, EditConflict) as e:
            self.refused(action, str(entry.get("id", "")), e, {"changes": changes})
            raise
        self.audit(action, str(entry["id"]), {"changes": changes})
        return new

    def refuse_entry(
        self,
        table: EntryTable,
        entry: Mapping[str, Any],
        *,
        replace_id: str | None,
        problems: Sequence[ConfigProblem],
    ) -> None:
        """Record a save of ``entry`` that a surface refused by its own checks before
        ``save_entry`` (a form field that does not parse, an id taken), as ``save_entry``
        records its own refusals."""
        existing: Mapping[str, Any] | None = None
        if replace_id is not None:
            try:
                existing = self.entry(self.read(), table, replace_id)
            except (KeyError, ConfigError):
                existing = None
        action = f"{_NOUN[table]}.{'add' if replace_id is None else 'edit'}"
        self.refused(
            action,
            str(entry.get("id", "") or replace_id or ""),
            ConfigError(problems),
            {"changes": diff_entries(existing, entry)},
        )

    def delete_entry(self, table: EntryTable, entry_id: str) -> dict[str, Any]:
        """Remove an entry (stored items of a source stay); returns what it held (KeyError
        when there is none). Audited with the removed entry, secrets redacted."""
        cf = self.read()
        removed = cf.delete_entry(table, entry_id)
        action = f"{_NOUN[table]}.delete"
        try:
            self._commit(cf, cf.version)
        except (ConfigError, EditConflict) as e:
            self.refused(action, entry_id, e)
            raise
        self.audit(action, entry_id, {"removed": redact(removed)})
        return removed

    def set_enabled(self, table: EntryTable, entry_id: str, enabled: bool) -> Config:
        """Switch an entry on or off (the intent, not a toggle: switching on what is on
        changes nothing in the file). ``enabled = true`` is the default, so it is written
        only as ``enabled = false``."""
        cf = self.read()
        old = self.entry(cf, table, entry_id)
        new = {k: v for k, v in old.items() if k != "enabled"}
        if not enabled:
            new["enabled"] = False
        action = f"{_NOUN[table]}.{'enable' if enabled else 'disable'}"
        changes = diff_entries(old, new)
        try:
            cf.put_entry(table, new, replace_id=entry_id, order=_KEY_ORDER[table])
            cfg = self._commit(cf, cf.version)
        except (ConfigError, EditConflict) as e:
            self.refused(action, entry_id, e, {"changes": changes})
            raise
        self.audit(action, entry_id, {"changes": changes})
        return cfg

    def list_rules_file(self, path: Path) -> str | None:
        """Add a rule file to ``[rules] paths`` unless it is listed already (itself or its
        folder); the path as listed (relative to config.toml's folder when inside it), or
        None when nothing changed. Audited by the caller, with the rule file's save."""
        cfg = self.app.config
        listed = [p.resolve() for p in rule_paths(cfg)]
        if path in listed or any(path.is_relative_to(p) for p in listed if p.is_dir()):
            return None
        try:
            rel = str(path.relative_to(cfg.base_dir.resolve()))
        except ValueError:
            rel = str(path)
        cf = self.read()
        cf.add_rules_path(rel)
        self._commit(cf, cf.version)
        return rel

    def _commit(self, cf: ConfigFile, version: str) -> Config:
        """The one place a config edit is written and put in force: only if the file is
        still at ``version`` (else ``EditConflict``, nothing written)."""
        if version != cf.version:
            raise EditConflict(cf.path, version, cf.version)
        new = cf.save(version)
        self.app.set_config(new)
        return new

    def audit(self, action: str, target: str, details: Mapping[str, Any]) -> None:
        """Record a change in the audit log, as this editor's actor, at the app's time."""
        self.app.storage.audit(self.actor, action, target, details, self.app.now())

    def refused(
        self,
        action: str,
        target: str,
        error: WatcherError,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that ``action`` (``source.edit`` …) was refused, as ``<action>_refused``
        with why (``refusal``) and ``details`` (what was asked for, secrets redacted)."""
        self.audit(f"{action}_refused", target, {**refusal(error), **(details or {})})


def refusal(error: WatcherError) -> dict[str, Any]:
    """Why an edit was refused, for its audit entry: ``{"reason": "invalid", "problems":
    [{"path", "message"}]}`` (URLs' credentials masked, the message of a secret key's
    problem left out), ``{"reason": "conflict", "version": {"expected", "actual"}}``,
    ``{"reason": "write_failed", "error": …}`` or ``{"reason": "error", "error": …}``."""
    if isinstance(error, FileWriteError):
        return {"reason": "write_failed", "error": redact_text(error.reason)}
    if isinstance(error, EditConflict):
        return {
            "reason": "conflict",
            "version": {"expected": error.expected[:16], "actual": error.actual[:16]},
        }
    if isinstance(error, ConfigError):
        problems = [
            {
                "path": p.path,
                "message": "***"
                if is_secret_key(p.path.rsplit(".", 1)[-1])
                else redact_text(p.message),
            }
            for p in error.problems[:REFUSAL_PROBLEMS]
        ]
        return {"reason": "invalid", "problems": problems}
    return {"reason": "error", "error": redact_text(str(error))}


# -- rule files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backtest:
    """A back-test: the stored items whose tags or relevance would change, of ``checked``."""

    diffs: list[TagDiff]
    checked: int


@dataclass(frozen=True)
class RulesSaved:
    """A rule file written: its versions before and after, the re-tag (None when the rules
    in force could not be loaded after the save: ``error`` says why), and the path it was
    listed as in ``[rules] paths`` when the save listed it."""

    path: Path
    old_version: str
    new_version: str
    retag: RetagReport | None
    error: WatcherError | None = None
    listed_as: str | None = None


class RulesWorkspace:
    """The rule files of a running service, as one actor edits and back-tests them."""

    def __init__(self, app: App, actor: str) -> None:
        self.app = app
        self.actor = actor

    def files(self) -> list[Path]:
        """The files the rules in force are read from, in load order (built-in ones first
        when ``[rules] use_defaults``), resolved."""
        cfg = self.app.config
        return [f.resolve() for f in rule_files(rule_paths(cfg), defaults=cfg.rules.use_defaults)]

    def targets(self) -> list[Path]:
        """The rule files that may be edited: those in ``[rules] paths`` (a folder's
        ``*.toml`` files), or ``rules/local.toml`` next to config.toml when none is listed
        (created and listed on its first save). Resolved."""
        cfg = self.app.config
        configured = rule_paths(cfg)
        if not configured:
            return [(cfg.base_dir / "rules" / "local.toml").resolve()]
        return [p.resolve() for p in rule_files(configured, defaults=False)]

    def target(self, name: str) -> Path:
        """The editable file named exactly ``name`` (as ``targets`` gives it); KeyError for
        anything else, so no other path on the machine can be read or written."""
        for p in self.targets():
            if name == str(p):
                return p
        raise KeyError(name)

    def candidate(self, path: Path, text: str) -> RuleSet:
        """The rule set in force if ``path`` held ``text``: the same files in the same
        order, with this one's text replaced (a file not loaded yet comes last). Raises
        ``RuleSetError`` with every problem, each naming its file and line."""
        files = self.files()
        texts: list[tuple[str, str]] = []
        for f in files:
            if f == path:
                texts.append((str(f), text))
                continue
            try:
                texts.append((str(f), f.read_text(encoding="utf-8")))
            except OSError as e:
                raise RuleSetError([RuleError(f"cannot read rule file: {e}", str(f))]) from e
        if path not in files:
            texts.append((str(path), text))
        return rules_from_texts(texts)

    def backtest(self, new_rules: RuleSet, *, since: datetime | None = None) -> Backtest:
        """Which stored items (first seen since ``since``, or all) would gain or lose which
        tags going from the rules in force to ``new_rules``, with the sources' default
        tags on both sides as the service applies them. Only reads."""
        current = self.app.classifier.store.rules
        defaults = {s.id: (s.areas, s.themes) for s in self.app.config.sources}
        storage = self.app.storage
        ids = storage.all_item_ids(since)
        diffs: list[TagDiff] = []
        for start in range(0, len(ids), BACKTEST_BATCH):
            batch = storage.get_items(ids[start : start + BACKTEST_BATCH])
            diffs.extend(backtest(batch, current, new_rules, source_defaults=defaults))
        return Backtest(diffs, len(ids))

    def retag(self, *, since: datetime | None = None) -> RetagReport:
        """Re-tag stored items with the rules in force, recording each tag change (no item
        becomes "new"), and tell ``hooks.items_retagged`` which items changed."""
        report = retag(self.app.storage, self.app.classifier, self.app.now(), since=since)
        if report.changed:
            for hook in self.app.hooks.items_retagged:
                hook(report.changed_ids)
        return report

    def save(self, path: Path, text: str, version: str) -> RulesSaved:
        """Write ``text`` to the rule file ``path`` if it is still at ``version``
        (``EditConflict`` otherwise, nothing written), then put it in force: list a new
        file in ``[rules] paths``, reload the rules, re-tag. The file stays saved when that
        fails (another rule file broke meanwhile, config.toml changed): ``error`` says so.
        Audited as ``rules.save`` with the file's diff and the re-tag counts."""
        current = TextFile.read(path)
        editor = ConfigEditor(self.app, self.actor)
        try:
            new_version = save_text(path, text, version)
        except (EditConflict, FileWriteError) as e:
            editor.refused("rules.save", str(path), e)
            raise
        report: RetagReport | None = None
        error: WatcherError | None = None
        listed_as: str | None = None
        try:
            listed_as = editor.list_rules_file(path)
            report = self._reload_and_retag()
        except WatcherError as e:
            error = e
        details: dict[str, Any] = {
            "version": {"old": current.version[:16], "new": new_version[:16]},
            "diff": text_diff(path.name, current.text, text)[:AUDIT_DIFF_LIMIT],
        }
        if report is not None:
            details["retag"] = {
                "items": report.items,
                "changed": report.changed,
                "added": report.added,
                "removed": report.removed,
            }
        editor.audit("rules.save", str(path), details)
        return RulesSaved(path, current.version, new_version, report, error, listed_as)

    def refuse(self, path: Path, error: RuleSetError) -> None:
        """Record a save of ``path`` refused because its rules do not load (a surface
        checks them with ``candidate`` before ``save``), with each problem."""
        problems = [
            {"path": f"{e.path}:{e.line}" if e.line else e.path, "rule": e.rule, "message": str(e)}
            for e in error.errors[:REFUSAL_PROBLEMS]
        ]
        ConfigEditor(self.app, self.actor).audit(
            "rules.save_refused", str(path), {"reason": "invalid", "problems": problems}
        )

    def _reload_and_retag(self) -> RetagReport:
        classifier = self.app.classifier
        if not classifier.reload_if_changed():
            # Same size and time stamp as before (a quick edit within the clock's
            # resolution): load it anyway, the text did change.
            classifier.store.reload()
        if classifier.error is not None:
            raise WatcherError(f"the rules do not load: {classifier.error}")
        return self.retag()


def text_diff(name: str, old: str, new: str) -> str:
    """A unified diff of a text file's two versions, as the audit log keeps it."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(True),
            (new if new.endswith("\n") else new + "\n").splitlines(True),
            fromfile=f"{name} (before)",
            tofile=f"{name} (after)",
        )
    )
