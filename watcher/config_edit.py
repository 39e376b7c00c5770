"""Safe edits of ``config.toml`` and of rule files: the file layer under ``watcher.editing``
(the admin's and the CLI's editing service) and ``watcher admin set-password``.

Three promises:

* **Comments and order are kept.** The file is edited as a tomlkit document: a changed
  value is replaced where it stands (with its trailing comment), untouched entries are not
  re-rendered, and comments that introduce the *next* entry (tomlkit stores them at the end
  of the previous table) move with that entry when one is added or deleted. After every
  edit the rendered text is parsed again and compared with the intended data, so a
  rendering surprise is refused instead of written.
* **Atomic writes.** A temp file in the same folder, flushed and fsynced, then renamed over
  the target (and the folder fsynced), so a crash leaves the old file or the new one, never
  half of either. The file's permissions are kept. A write that fails (permissions, a full
  disk) leaves the file as it was and no temp file, and raises ``FileWriteError``; a
  process killed mid-write can leave its temp file (``.config.toml.<random>.tmp``), which
  ``remove_stale_temp_files`` removes at the service's start.
* **No lost updates.** Every read returns a version token (a hash of the file's bytes). A
  save names the version it was based on; if the file changed since (another admin, an
  editor, a deploy), the save is refused with ``EditConflict`` and nothing is written. The
  compare and the rename happen under an exclusive lock on the folder (``flock``), so two
  processes cannot both win.

Validation is the config's own: ``sources.registry.validate_config`` (structure and adapter
options) over the whole edited document, so an edit is refused with the same dotted key
paths (``sources[3].options.item``) that ``watcher check-config`` prints.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Comment, InlineTable, Item, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from sources.registry import validate_config
from watcher.config import Config
from watcher.exceptions import ConfigError, EditConflict

try:  # POSIX; elsewhere the version check alone guards saves
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ABSENT = "absent"  # the version token of a file that does not exist yet


class FileWriteError(ConfigError):
    """A config or rule file could not be written (permissions, a full disk …); it is as
    it was. ``path`` is the file, ``reason`` the system's words. A ``ConfigError``, so the
    surfaces that report a failed save report this one too; one that can tell the admin
    more (the file is unchanged, try again) catches it first.

    (It belongs in the tree of ``watcher.exceptions``; it lives here until it moves.)"""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot write {path.name}: {reason}; the file is unchanged", str(path))


# The order keys get in a new [[sources]] / [[networks]] entry.
SOURCE_KEYS = ("id", "name", "kind", "url", "schedule", "enabled", "areas", "themes", "language")
NETWORK_KEYS = (
    "id",
    "name",
    "areas",
    "themes",
    "members",
    "schedule",
    "language",
    "sources",
    "kinds",
    "enabled",
)


# -- versions, locking, atomic writes ------------------------------------------------------


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_version(path: Path) -> str:
    """The version token of a file: a hash of its bytes, or ``ABSENT``."""
    try:
        return version_of(path.read_bytes())
    except FileNotFoundError:
        return ABSENT


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder: held from the version check to the rename."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, expected_version: str | None) -> str:
    """Write ``data`` to ``path`` atomically; returns the new version token.

    With ``expected_version`` the write happens only if the file still has that version
    (``ABSENT``: only if it does not exist), else ``EditConflict``. A write the system
    refuses is ``FileWriteError``, with the file as it was and no temp file left."""
    path = Path(path)
    try:
        return _atomic_write(path, data, expected_version)
    except OSError as e:
        raise FileWriteError(path, e.strerror or str(e)) from e


def _atomic_write(path: Path, data: bytes, expected_version: str | None) -> str:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder):
        if expected_version is not None:
            actual = file_version(path)
            if actual != expected_version:
                raise EditConflict(path, expected_version, actual)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_folder(folder)
    return version_of(data)


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temp files that writes of ``path`` left behind when their process was
    killed between creating and renaming them (``.config.toml.<random>.tmp``); the ones
    removed. Under the folder's lock, which every write holds from creating its temp file
    to renaming it: a temp file seen here belongs to no write in progress, in this process
    or another. A file that cannot be removed is left (and not listed)."""
    folder = Path(path).parent
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    pattern = f".{glob.escape(Path(path).name)}.*.tmp"
    try:
        with _folder_lock(folder):
            for tmp in sorted(folder.glob(pattern)):
                with contextlib.suppress(OSError):
                    if tmp.is_file() and not tmp.is_symlink():
                        tmp.unlink()
                        removed.append(tmp)
    except OSError:  # the folder cannot be locked: nothing is removed
        return removed
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


# -- tomlkit helpers -------------------------------------------------------------------------


def _tail(container: Container) -> Container:
    """The container whose end is rendered last (a table's last sub-table, recursively):
    where tomlkit keeps the comments that stand above the next table header."""
    for key, item in reversed(container.body):
        if key is None:
            continue
        if isinstance(item, Table):
            return _tail(item.value)
        if isinstance(item, AoT) and item.body:
            return _tail(item.body[-1].value)
        return container
    return container


def _pop_trailing(container: Container) -> list[Item]:
    """Remove and return the comments and blank lines at the end of a container."""
    out: list[Item] = []
    while container.body and container.body[-1][0] is None:
        item = container.body[-1][1]
        if not isinstance(item, Comment | Whitespace):
            break
        container.body.pop()
        out.append(item)
    out.reverse()
    return out


def _pop_attached_comments(container: Container) -> None:
    """Drop the comment lines directly above the next table header (no blank line
    between): they described the entry being deleted."""
    while container.body and container.body[-1][0] is None:
        item = container.body[-1][1]
        if not isinstance(item, Comment):
            break
        container.body.pop()


def _extend(container: Container, items: Sequence[Item]) -> None:
    for item in items:
        container.append(None, item)


def _to_item(value: Any) -> Any:
    """A Python value as a tomlkit value: dicts inline, long lists one element a line."""
    if isinstance(value, Mapping):
        t = tomlkit.inline_table()
        for k, v in value.items():
            t[k] = _to_item(v)
        return t
    if isinstance(value, list | tuple):
        arr = tomlkit.array()
        for v in value:
            arr.append(_to_item(v))
        if len(value) > 3 and sum(len(str(v)) for v in value) > 60:
            arr.multiline(True)
        return arr
    return value


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def _update_table(table: Table | InlineTable | Container, desired: Mapping[str, Any]) -> None:
    """Make ``table`` hold exactly ``desired``: equal values stay untouched (formatting and
    comments included), changed ones are replaced in place, missing ones are added, and
    keys not desired are removed."""
    current = {str(k): v for k, v in table.items()}
    for key in list(current):
        if key not in desired:
            del table[key]
    for key, value in desired.items():
        if key in current:
            old = current[key]
            if _plain(old) == _plain(_to_item(value)):
                continue
            if isinstance(old, Table | InlineTable) and isinstance(value, Mapping):
                _update_table(old, value)
                continue
        table[key] = _to_item(value)


def _new_table(desired: Mapping[str, Any], order: Sequence[str]) -> Table:
    t = tomlkit.table()
    keys = [k for k in order if k in desired] + [k for k in desired if k not in order]
    for key in keys:
        value = desired[key]
        if key == "options" and isinstance(value, Mapping):
            if value:
                sub = tomlkit.table()
                for k, v in value.items():
                    sub[k] = _to_item(v)
                t.append(key, sub)
            continue
        t[key] = _to_item(value)
    return t


def _previous_container(doc: TOMLDocument, key: str) -> Container | None:
    """Where the comments above the first ``[[key]]`` entry live: the tail of the table
    before the array of tables (None when that is not a table)."""
    before: Any = None
    for k, item in doc.body:
        if k is not None and str(k) == key:
            break
        if k is not None:
            before = item
    if isinstance(before, Table):
        return _tail(before.value)
    if isinstance(before, AoT) and before.body:
        return _tail(before.body[-1].value)
    return None


# -- config.toml -------------------------------------------------------------------------


@dataclass
class ConfigFile:
    """``config.toml`` read for editing. Change it with the methods, then ``save``."""

    path: Path
    doc: TOMLDocument
    version: str

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ConfigFile:
        """Read the file (a missing file is an empty document with version ``ABSENT``)."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return cls(p, tomlkit.document(), ABSENT)
        except OSError as e:
            raise ConfigError(f"cannot read: {e}", source=str(p)) from e
        try:
            doc = tomlkit.parse(data.decode("utf-8"))
        except (TOMLKitError, UnicodeDecodeError) as e:
            raise ConfigError(f"not valid TOML: {e}", source=str(p)) from e
        return cls(p, doc, version_of(data))

    # -- reading --

    def data(self) -> dict[str, Any]:
        """The document as plain Python values."""
        return self.doc.unwrap()

    def text(self) -> str:
        return tomlkit.dumps(self.doc)

    def entries(self, key: str) -> list[dict[str, Any]]:
        value = self.data().get(key, [])
        return list(value) if isinstance(value, list) else []

    def index_of(self, key: str, entry_id: str) -> int | None:
        for i, entry in enumerate(self.entries(key)):
            if isinstance(entry, Mapping) and entry.get("id") == entry_id:
                return i
        return None

    # -- editing arrays of tables ([[sources]], [[networks]]) --

    def _aot(self, key: str) -> AoT:
        existing = self.doc.get(key)
        if isinstance(existing, AoT):
            return existing
        if existing is not None and _plain(existing):
            # An inline array of tables: rewrite it as [[key]] entries (rare, by hand).
            values = _plain(existing)
            del self.doc[key]
            aot = tomlkit.aot()
            for v in values:
                aot.append(_new_table(v, ()))
            self.doc.append(key, aot)
            return cast(AoT, self.doc[key])
        if existing is not None:
            del self.doc[key]
        self.doc.append(key, tomlkit.aot())
        return cast(AoT, self.doc[key])

    def put_entry(
        self,
        key: str,
        desired: Mapping[str, Any],
        *,
        replace_id: str | None = None,
        order: Sequence[str] = (),
    ) -> None:
        """Set the entry with id ``replace_id`` (in place) to ``desired``, or append it."""
        expected = self.data()
        entries = self.entries(key)
        index = self.index_of(key, replace_id) if replace_id is not None else None
        if index is None:
            entries.append(dict(desired))
        else:
            entries[index] = dict(desired)
        expected[key] = entries
        aot = self._aot(key)
        if index is None:
            self._append(aot, desired, order)
        else:
            elem = aot.body[index]
            trail = _pop_trailing(_tail(elem.value))
            scalars = {k: v for k, v in desired.items() if k != "options"}
            ordered = {k: scalars[k] for k in order if k in scalars}
            ordered.update({k: v for k, v in scalars.items() if k not in ordered})
            self._update_entry(elem, ordered, desired.get("options"))
            _extend(_tail(elem.value), trail)
        self._check(expected)

    def _update_entry(self, elem: Table, scalars: Mapping[str, Any], options: Any) -> None:
        for k in [str(k) for k in elem]:
            if k != "options" and k not in scalars:
                del elem[k]
        for k, v in scalars.items():
            if k in elem and _plain(elem[k]) == _plain(_to_item(v)):
                continue
            elem[k] = _to_item(v)
        if not options:
            if "options" in elem:
                del elem["options"]
            return
        if "options" in elem and isinstance(elem["options"], Table | InlineTable):
            _update_table(elem["options"], options)
            return
        if "options" in elem:
            del elem["options"]
        sub = tomlkit.table()
        for k, v in options.items():
            sub[k] = _to_item(v)
        elem.append("options", sub)

    def _append(self, aot: AoT, desired: Mapping[str, Any], order: Sequence[str]) -> None:
        new = _new_table(desired, order)
        trail: list[Item] = []
        if aot.body:
            # Comments after the last entry introduce whatever follows the array (the next
            # section): they move below the new entry.
            last_tail = _tail(aot.body[-1].value)
            trail = _pop_trailing(last_tail)
            last_tail.append(None, tomlkit.ws("\n"))
        aot.append(new)
        new_tail = _tail(aot.body[-1].value)
        if trail:
            _extend(new_tail, trail)
        else:
            new_tail.append(None, tomlkit.ws("\n"))

    def delete_entry(self, key: str, entry_id: str) -> dict[str, Any]:
        """Remove the entry with this id; returns what it held. KeyError if there is none."""
        index = self.index_of(key, entry_id)
        if index is None:
            raise KeyError(entry_id)
        expected = self.data()
        entries = self.entries(key)
        removed = entries.pop(index)
        expected[key] = entries
        aot = self._aot(key)
        trail = _pop_trailing(_tail(aot.body[index].value))
        prev = _tail(aot.body[index - 1].value) if index > 0 else _previous_container(self.doc, key)
        del aot[index]
        if prev is not None:
            _pop_attached_comments(prev)
            _pop_trailing_blank(prev)
            _extend(prev, trail)
        self._check(expected)
        return removed

    # -- single values --

    def set_value(self, dotted: str, value: Any) -> None:
        """Set ``section.key`` (creating the section), or remove it when ``value`` is None."""
        expected = self.data()
        *sections, last = dotted.split(".")
        table: Any = self.doc
        target = expected
        for name in sections:
            if name not in table:
                table.append(name, tomlkit.table())
            table = table[name]
            target = target.setdefault(name, {})
        if value is None:
            if last in table:
                del table[last]
            target.pop(last, None)
        else:
            table[last] = _to_item(value)
            target[last] = copy.deepcopy(_plain(_to_item(value)))
        self._check(expected)

    def add_rules_path(self, rel: str) -> None:
        paths = list(self.data().get("rules", {}).get("paths", []))
        if rel not in paths:
            self.set_value("rules.paths", [*paths, rel])

    # -- checking and saving --

    def _check(self, expected: Mapping[str, Any]) -> None:
        """The rendered text must read back as exactly the intended data."""
        try:
            back = tomlkit.parse(self.text()).unwrap()
        except TOMLKitError as e:  # pragma: no cover - a tomlkit rendering bug
            raise ConfigError(f"the edit would not render as valid TOML: {e}") from e
        if back != expected:  # pragma: no cover - a tomlkit rendering bug
            raise ConfigError("the edit would not render as intended; nothing was changed")

    def validate(self) -> Config:
        """The edited document as a validated ``Config`` (``ConfigError`` with key paths)."""
        return validate_config(self.data(), str(self.path))

    def save(self, expected_version: str | None = None) -> Config:
        """Validate, then write atomically if the file is still at ``expected_version``
        (default: the version it was read at). Returns the new config."""
        cfg = self.validate()
        base = self.version if expected_version is None else expected_version
        self.version = atomic_write(self.path, self.text().encode("utf-8"), expected_version=base)
        return cfg


def _pop_trailing_blank(container: Container) -> None:
    while container.body and container.body[-1][0] is None:
        if not isinstance(container.body[-1][1], Whitespace):
            break
        container.body.pop()


# -- rule files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFile:
    """A text file read for editing (rule files): its text and version token."""

    path: Path
    text: str
    version: str

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> TextFile:
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return cls(p, "", ABSENT)
        return cls(p, data.decode("utf-8"), version_of(data))

    @property
    def exists(self) -> bool:
        return self.version != ABSENT


def save_text(path: str | os.PathLike[str], text: str, expected_version: str) -> str:
    """Write a text file atomically if it is still at ``expected_version``; new version."""
    if not text.endswith("\n"):
        text += "\n"
    return atomic_write(Path(path), text.encode("utf-8"), expected_version=expected_version)


# -- audit details -----------------------------------------------------------------------------

_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "hash", "credential")
# Keys whose values carry secrets in themselves: Apprise URLs hold chat tokens and webhook
# keys in their paths (``[admin] alert_urls``).
_SECRET_KEYS = frozenset({"alert_urls"})


def is_secret_key(key: str) -> bool:
    k = key.lower()
    return k in _SECRET_KEYS or any(w in k for w in _SECRET_WORDS)


def redact(value: Any, key: str = "") -> Any:
    """A value fit for the audit log: secret keys masked, credentials in URLs removed."""
    if key and is_secret_key(key) and value not in (None, "", [], {}):
        return "***"
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """``https://user:pw@host/?token=x`` → ``https://***@host/?token=***``."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, "***" if is_secret_key(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """A message fit for the audit log: every URL in it redacted as ``redact_url`` does."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def diff_entries(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any]:
    """What changed between two entries (flattening ``options``), secrets redacted:
    ``{"field": {"old": …, "new": …}}``."""

    def flat(entry: Mapping[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (entry or {}).items():
            if k == "options" and isinstance(v, Mapping):
                out.update({f"options.{ok}": ov for ok, ov in v.items()})
            else:
                out[k] = v
        return out

    a, b = flat(old), flat(new)
    changes: dict[str, Any] = {}
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            leaf = k.rsplit(".", 1)[-1]
            changes[k] = {"old": redact(a.get(k), leaf), "new": redact(b.get(k), leaf)}
    return changes
