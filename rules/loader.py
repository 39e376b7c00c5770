"""Rule files (TOML) → a validated ``RuleSet``; checking; reloading with a last good set.

* ``load_rules(paths, defaults=True)`` reads the default files in ``rules/defaults/`` first,
  then each path (a file, or a folder of ``*.toml`` files in name order). A rule whose id
  was already loaded replaces the earlier one (so an admin file can override a default
  rule); ``enabled = false`` switches a rule off. Raises ``RuleSetError`` listing every
  problem.
* ``check_rules(paths)`` returns the problems as ``RuleError`` values, each naming the file,
  the line and the rule. ``tomli`` keeps no line numbers, so the line of a rule is found by
  scanning the text for its ``[[rule]]`` header, its ``id = "…"`` line or the offending key.
* ``RuleStore`` holds the last good rule set. ``reload_if_changed()`` notices changed, added
  or removed files (modification time and size); a bad file leaves the last good set in
  force and is reported on ``.error``.

The file format is documented in ``docs/rules.md``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli

from rules.matching import TermSyntaxError, parse_term
from rules.model import (
    DEFAULT_FIELDS,
    FIELDS,
    Conditions,
    Origin,
    RelevanceRule,
    Rule,
    RuleSet,
    Settings,
    Target,
    Term,
)
from watcher.config import AREAS, THEMES
from watcher.exceptions import RuleError
from watcher.types import Kind, Status

DEFAULTS_DIR = Path(__file__).parent / "defaults"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,79}$")
_LANG_RE = re.compile(r"^[a-z]{2}$")
_RULE_KEYS = {
    "id",
    "description",
    "area",
    "areas",
    "theme",
    "themes",
    "terms",
    "requires",
    "exclude",
    "fields",
    "min_score",
    "when",
    "unless",
    "enabled",
    "keep",
}
_RELEVANCE_KEYS = _RULE_KEYS - {"area", "areas", "theme", "themes", "keep"}
_EXTEND_KEYS = {"id", "description", "terms", "requires", "exclude"}
_SETTINGS_KEYS = {"fields", "min_score", "untagged_not_relevant"}
_CONDITION_KEYS = {"sources", "kinds", "statuses", "programmes", "languages"}
_KINDS = frozenset(k.value for k in Kind)
_STATUSES = frozenset(s.value for s in Status)


class RuleSetError(RuleError):
    """One or more problems in rule files; ``errors`` lists them all (each a RuleError)."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(
            first.args[0] if len(self.errors) == 1 else "", first.path, first.line, first.rule
        )
        if len(self.errors) > 1:
            self.args = (
                f"{len(self.errors)} problems in rule files:\n"
                + "\n".join(f"  {e}" for e in self.errors),
            )

    def __str__(self) -> str:
        return str(self.args[0])


# -- where things are in the text ----------------------------------------------------------


class _Locator:
    """Finds lines in a TOML file's text for the tables and keys that tomli parsed."""

    _HEADER = re.compile(r"^\s*\[\[\s*(rule|relevance|extend)\s*\]\]")
    _TABLE = re.compile(r"^\s*\[")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.blocks: dict[str, list[tuple[int, int]]] = {"rule": [], "relevance": [], "extend": []}
        starts: list[tuple[str, int]] = []
        for n, line in enumerate(self.lines):
            m = self._HEADER.match(line)
            if m:
                starts.append((m.group(1), n))
            elif self._TABLE.match(line) and not re.match(
                r"^\s*\[\s*(rule|relevance|extend)\.", line
            ):
                starts.append(("", n))  # another top-level table ends the block
        for k, (name, n) in enumerate(starts):
            end = starts[k + 1][1] if k + 1 < len(starts) else len(self.lines)
            if name:
                self.blocks[name].append((n, end))

    def block(self, section: str, index: int) -> tuple[int, int] | None:
        blocks = self.blocks.get(section, [])
        return blocks[index] if index < len(blocks) else None

    def header_line(self, section: str, index: int) -> int | None:
        b = self.block(section, index)
        return b[0] + 1 if b else None

    def key_line(self, section: str, index: int, *keys: str) -> int | None:
        """The line of the first of ``keys`` (``key =``, ``key.sub =`` or ``[section.key]``)."""
        b = self.block(section, index)
        if b is None:
            return None
        for key in keys:
            pat = re.compile(
                rf"^\s*(?:{re.escape(key)}\s*[=.]|\[\s*{section}\.{re.escape(key)}\s*\])"
            )
            for n in range(b[0], b[1]):
                if pat.match(self.lines[n]):
                    return n + 1
        return b[0] + 1

    def literal_line(self, section: str, index: int, literal: str, fallback: str) -> int | None:
        """The line in the block where the string ``literal`` is written, else the key's line."""
        b = self.block(section, index)
        if b is not None:
            for quoted in (f'"{literal}"', f"'{literal}'"):
                for n in range(b[0], b[1]):
                    if quoted in self.lines[n]:
                        return n + 1
        return self.key_line(section, index, fallback)

    def settings_line(self, key: str | None = None) -> int | None:
        for n, line in enumerate(self.lines):
            if re.match(r"^\s*\[\s*settings\s*\]", line):
                if key is None:
                    return n + 1
                for m in range(n + 1, len(self.lines)):
                    if self._TABLE.match(self.lines[m]):
                        break
                    if re.match(rf"^\s*{re.escape(key)}\s*[=.]", self.lines[m]):
                        return m + 1
                return n + 1
        return None

    def rule_before(self, line: int) -> str:
        """The id of the rule whose block holds ``line`` (for TOML syntax errors)."""
        id_re = re.compile(r"""^\s*id\s*=\s*["']([^"']*)["']""")
        for name in ("rule", "relevance"):
            for a, b in self.blocks[name]:
                if a < line <= b:
                    for n in range(a, b):
                        m = id_re.match(self.lines[n])
                        if m:
                            return m.group(1)
        return ""


# -- parsing one file --------------------------------------------------------------------


@dataclass
class FileRules:
    """What one rule file contributes, before files are merged."""

    path: str
    rules: list[Rule]
    relevance: list[RelevanceRule]
    disabled: list[str]
    settings: dict[str, Any]
    extensions: list[Extension] = field(default_factory=list)


@dataclass(frozen=True)
class Extension:
    """``[[extend]]``: terms added to a rule loaded before (a local file's penalty for a
    sense a default rule should not take, or words it misses), without copying the rule."""

    id: str
    terms: tuple[Term, ...]
    requires: tuple[Term, ...]
    exclude: tuple[Term, ...]
    line: int | None


class _FileParser:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.errors: list[RuleError] = []
        self.loc = _Locator(text)

    def error(self, message: str, line: int | None, rule: str = "") -> None:
        self.errors.append(RuleError(message, self.path, line, rule))

    def parse(self) -> FileRules:
        out = FileRules(self.path, [], [], [], {})
        try:
            data = tomli.loads(self.text)
        except tomli.TOMLDecodeError as e:
            m = re.search(r"at line (\d+)", str(e))
            line = int(m.group(1)) if m else None
            if line is None and "end of document" in str(e):
                line = max(len(self.loc.lines), 1)
            msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
            self.error(f"TOML syntax: {msg}", line, self.loc.rule_before(line) if line else "")
            return out
        for key in data:
            if key not in ("rule", "relevance", "extend", "settings"):
                self.error(
                    f"unknown top-level key {key!r} "
                    "(expected [[rule]], [[relevance]], [[extend]], [settings])",
                    self._top_line(key),
                )
        if "settings" in data:
            out.settings = self._settings(data["settings"])
        seen: dict[str, int | None] = {}
        for section in ("rule", "relevance"):
            entries = data.get(section, [])
            if not isinstance(entries, list):
                self.error(f"use [[{section}]] (an array of tables)", self._top_line(section))
                continue
            for index, entry in enumerate(entries):
                parsed = self._entry(section, index, entry, seen)
                if parsed is None:
                    continue
                if parsed == "disabled":
                    out.disabled.append(str(entry.get("id")))
                elif isinstance(parsed, Rule):
                    out.rules.append(parsed)
                elif isinstance(parsed, RelevanceRule):
                    out.relevance.append(parsed)
        extends = data.get("extend", [])
        if not isinstance(extends, list):
            self.error("use [[extend]] (an array of tables)", self._top_line("extend"))
        else:
            for index, entry in enumerate(extends):
                ext = self._extension(index, entry)
                if ext is not None:
                    out.extensions.append(ext)
        return out

    def _extension(self, index: int, entry: Any) -> Extension | None:
        header = self.loc.header_line("extend", index)
        if not isinstance(entry, dict):
            self.error("each [[extend]] must be a table", header)
            return None
        rule_id = entry.get("id")
        if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
            self.error("[[extend]] needs the id of the rule it adds to", header)
            return None
        line = self.loc.key_line("extend", index, "id")
        before = len(self.errors)
        for key in entry:
            if key not in _EXTEND_KEYS:
                self.error(
                    f"unknown key {key!r} in [[extend]] (it takes terms, requires, exclude)",
                    self.loc.key_line("extend", index, key),
                    rule_id,
                )
        terms = self._terms("extend", index, rule_id, entry.get("terms"), "terms")
        requires = self._terms("extend", index, rule_id, entry.get("requires"), "requires")
        exclude = self._terms("extend", index, rule_id, entry.get("exclude"), "exclude")
        if not (terms or requires or exclude) and len(self.errors) == before:
            self.error("[[extend]] adds nothing: give terms, requires or exclude", line, rule_id)
        if len(self.errors) > before:
            return None
        return Extension(rule_id, terms, requires, exclude, line)

    def _top_line(self, key: str) -> int | None:
        for n, line in enumerate(self.loc.lines):
            if re.match(rf"^\s*(\[+\s*{re.escape(key)}\b|{re.escape(key)}\s*=)", line):
                return n + 1
        return None

    # settings ----------------------------------------------------------------------------

    def _settings(self, raw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not isinstance(raw, dict):
            self.error("[settings] must be a table", self.loc.settings_line())
            return out
        for key, value in raw.items():
            line = self.loc.settings_line(key)
            if key not in _SETTINGS_KEYS:
                self.error(f"unknown settings key {key!r}", line)
            elif key == "fields":
                f = self._fields(value, lambda m, at=line: self.error(m, at))
                if f is not None:
                    out["fields"] = f
            elif key == "min_score":
                if _number(value) and value > 0:
                    out["min_score"] = float(value)
                else:
                    self.error("min_score must be a number above 0", line)
            elif key == "untagged_not_relevant":
                if isinstance(value, bool):
                    out["untagged_not_relevant"] = value
                else:
                    self.error("untagged_not_relevant must be true or false", line)
        return out

    # one [[rule]] or [[relevance]] -------------------------------------------------------

    def _entry(
        self, section: str, index: int, entry: Any, seen: dict[str, int | None]
    ) -> Rule | RelevanceRule | str | None:
        header = self.loc.header_line(section, index)
        if not isinstance(entry, dict):
            self.error(f"each [[{section}]] must be a table", header)
            return None
        rule_id = entry.get("id")
        if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
            self.error(
                "missing or invalid id: use lower-case letters, digits and - _ . :"
                if rule_id is not None
                else "every rule needs an id",
                self.loc.key_line(section, index, "id") if rule_id is not None else header,
                rule_id if isinstance(rule_id, str) else "",
            )
            return None
        id_line = self.loc.key_line(section, index, "id")
        before = len(self.errors)

        def err(msg: str, *keys: str) -> None:
            line = self.loc.key_line(section, index, *keys) if keys else id_line
            self.error(msg, line, rule_id)

        if rule_id in seen:
            err(f"duplicate rule id (first at line {seen[rule_id]})", "id")
        seen[rule_id] = id_line
        allowed = _RULE_KEYS if section == "rule" else _RELEVANCE_KEYS
        for key in entry:
            if key not in allowed:
                hint = " (relevance rules give no tags)" if key in _RULE_KEYS else ""
                err(f"unknown key {key!r}{hint}", key)
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            err("enabled must be true or false", "enabled")
        keep = entry.get("keep", False)
        if not isinstance(keep, bool):
            err("keep must be true or false", "keep")
            keep = False
        description = entry.get("description", "")
        if not isinstance(description, str):
            err("description must be a string", "description")
            description = ""

        terms = self._terms(section, index, rule_id, entry.get("terms"), "terms")
        requires = self._terms(section, index, rule_id, entry.get("requires"), "requires")
        exclude = self._terms(section, index, rule_id, entry.get("exclude"), "exclude")
        fields = None
        if "fields" in entry:
            fields = self._fields(entry["fields"], lambda m: err(m, "fields"))
        min_score = None
        if "min_score" in entry:
            v = entry["min_score"]
            if _number(v) and v > 0:
                min_score = float(v)
            else:
                err("min_score must be a number above 0", "min_score")
        when = self._conditions(section, index, rule_id, entry.get("when"), "when")
        unless = self._conditions(section, index, rule_id, entry.get("unless"), "unless")
        targets: list[Target] = []
        if section == "rule":
            targets = self._targets(entry, err)
            if not targets and len(self.errors) == before:
                err('a rule needs a target: area = "…" or theme = "…"')
        if not terms and not when and not requires and len(self.errors) == before:
            err("a rule needs terms or conditions (when), or it would match every item")
        if terms and all(t.weight < 0 for t in terms):
            err("every term has a negative weight, so the rule can never fire", "terms")
        if len(self.errors) > before:
            return None
        if enabled is False:
            return "disabled"
        common: dict[str, Any] = {
            "id": rule_id,
            "terms": terms,
            "requires": requires,
            "exclude": exclude,
            "fields": fields,
            "min_score": min_score,
            "when": when,
            "unless": unless,
            "description": description,
            "origin": Origin(self.path, id_line),
        }
        if section == "rule":
            return Rule(**common, targets=tuple(targets), keep=keep)
        return RelevanceRule(**common)

    def _targets(self, entry: Mapping[str, Any], err: Any) -> list[Target]:
        out: list[Target] = []
        for kind, single, plural, known in (
            ("area", "area", "areas", AREAS),
            ("theme", "theme", "themes", THEMES),
        ):
            values: list[Any] = []
            if single in entry:
                values.append(entry[single])
            if plural in entry:
                if isinstance(entry[plural], list):
                    values.extend(entry[plural])
                else:
                    err(f"{plural} must be a list", plural)
            for v in values:
                if not isinstance(v, str) or v not in known:
                    err(
                        f"unknown {kind} {v!r}; known: {', '.join(known)}",
                        single if single in entry else plural,
                    )
                else:
                    t = Target(kind, v)  # type: ignore[arg-type]
                    if t not in out:
                        out.append(t)
        return out

    def _terms(
        self, section: str, index: int, rule_id: str, raw: Any, key: str
    ) -> tuple[Term, ...]:
        if raw is None:
            return ()
        groups: list[tuple[str | None, Any]]
        if isinstance(raw, list):
            groups = [(None, raw)]
        elif isinstance(raw, dict):
            groups = list(raw.items())
        else:
            self.error(
                f"{key} must be a list of strings or a table of lists by language (sv, en)",
                self.loc.key_line(section, index, key),
                rule_id,
            )
            return ()
        out: list[Term] = []
        for lang, values in groups:
            where = key if lang is None else f"{key}.{lang}"
            if lang is not None and not _LANG_RE.match(lang):
                self.error(
                    f"{where}: a language key is a two-letter code such as sv or en",
                    self.loc.key_line(section, index, key),
                    rule_id,
                )
                continue
            if not isinstance(values, list):
                self.error(
                    f"{where} must be a list of strings",
                    self.loc.key_line(section, index, key),
                    rule_id,
                )
                continue
            for v in values:
                if not isinstance(v, str):
                    self.error(
                        f"{where}: {v!r} is not a string",
                        self.loc.key_line(section, index, key),
                        rule_id,
                    )
                    continue
                try:
                    pattern, weight = parse_term(v)
                except TermSyntaxError as e:
                    self.error(
                        f"{where}: «{v}»: {e}",
                        self.loc.literal_line(section, index, v, key),
                        rule_id,
                    )
                    continue
                if key != "terms" and weight != 1.0:
                    self.error(
                        f"{where}: term {v!r}: weights only count in terms",
                        self.loc.literal_line(section, index, v, key),
                        rule_id,
                    )
                    continue
                out.append(Term(pattern.source, pattern, weight, lang))
        return tuple(out)

    def _fields(self, raw: Any, err: Any) -> tuple[tuple[str, float], ...] | None:
        if isinstance(raw, list):  # fields = ["title"]: those fields, weight 1
            raw = dict.fromkeys(raw, 1.0) if all(isinstance(f, str) for f in raw) else None
        if not isinstance(raw, dict) or not raw:
            err(
                f"fields must be a table such as {{ title = 2, summary = 1 }}; fields: {', '.join(FIELDS)}"
            )
            return None
        out: list[tuple[str, float]] = []
        ok = True
        for name, weight in raw.items():
            if name not in FIELDS:
                err(f"unknown field {name!r}; fields: {', '.join(FIELDS)}")
                ok = False
            elif not _number(weight) or weight < 0:
                err(f"field weight for {name!r} must be a number ≥ 0")
                ok = False
            else:
                out.append((name, float(weight)))
        if ok and not any(w for _, w in out):
            err("at least one field needs a weight above 0")
            ok = False
        return tuple(out) if ok else None

    def _conditions(self, section: str, index: int, rule_id: str, raw: Any, key: str) -> Conditions:
        if raw is None:
            return Conditions()
        line = self.loc.key_line(section, index, key)
        if not isinstance(raw, dict):
            self.error(f'{key} must be a table such as {{ kinds = ["call"] }}', line, rule_id)
            return Conditions()
        values: dict[str, Any] = {}
        for ck, cv in raw.items():
            cline = self.loc.key_line(section, index, f"{key}.{ck}", ck, key)
            if ck not in _CONDITION_KEYS:
                self.error(
                    f"{key}: unknown condition {ck!r}; conditions: {', '.join(sorted(_CONDITION_KEYS))}",
                    cline,
                    rule_id,
                )
                continue
            if isinstance(cv, str):
                cv = [cv]
            if not isinstance(cv, list) or not all(isinstance(x, str) for x in cv) or not cv:
                self.error(f"{key}.{ck} must be a non-empty list of strings", cline, rule_id)
                continue
            if ck == "kinds":
                bad = [x for x in cv if x not in _KINDS]
                if bad:
                    self.error(
                        f"{key}.kinds: unknown kind(s) {', '.join(bad)}; kinds: {', '.join(sorted(_KINDS))}",
                        cline,
                        rule_id,
                    )
                    continue
            if ck == "statuses":
                bad = [x for x in cv if x not in _STATUSES]
                if bad:
                    self.error(
                        f"{key}.statuses: unknown status(es) {', '.join(bad)}; statuses: {', '.join(sorted(_STATUSES))}",
                        cline,
                        rule_id,
                    )
                    continue
            if ck == "programmes":
                progs: list[Term] = []
                for x in cv:
                    try:
                        pattern, _ = parse_term(x)
                    except TermSyntaxError as e:
                        self.error(f"{key}.programmes: {x!r}: {e}", cline, rule_id)
                        continue
                    progs.append(Term(pattern.source, pattern))
                values["programmes"] = tuple(progs)
            else:
                values[ck] = frozenset(cv)
        return Conditions(**values)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- files, merging, versions --------------------------------------------------------------


def _expand(paths: Sequence[Path | str]) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(path.glob("*.toml"))
        else:
            yield path


def rule_files(paths: Sequence[Path | str], *, defaults: bool = True) -> list[Path]:
    """The files a rule set is read from, in order (defaults first)."""
    files = list(_expand([DEFAULTS_DIR])) if defaults else []
    return files + list(_expand(paths))


def parse_file(path: str, text: str) -> tuple[FileRules, list[RuleError]]:
    """Parse one rule file's text; ``path`` names it in errors."""
    p = _FileParser(path, text)
    parsed = p.parse()
    return parsed, sorted(p.errors, key=lambda e: e.line or 0)


def _build(parsed: Sequence[FileRules], version: str) -> tuple[RuleSet, list[RuleError]]:
    rules: dict[str, Rule | RelevanceRule] = {}
    relevance: dict[str, RelevanceRule] = {}
    settings: dict[str, Any] = {}
    errors: list[RuleError] = []
    tagging: dict[str, Rule] = {}
    for f in parsed:
        settings.update(f.settings)
        for rid in f.disabled:
            tagging.pop(rid, None)
            relevance.pop(rid, None)
        for r in f.rules:
            tagging.pop(r.id, None)  # a later file's rule replaces the earlier one, and moves last
            tagging[r.id] = r
        for rr in f.relevance:
            relevance.pop(rr.id, None)
            relevance[rr.id] = rr
        for ext in f.extensions:
            target: Rule | RelevanceRule | None = tagging.get(ext.id) or relevance.get(ext.id)
            if target is None:
                errors.append(
                    RuleError(
                        "[[extend]] names no rule loaded before this file "
                        "(the built-in rules and the files listed before it)",
                        f.path,
                        ext.line,
                        ext.id,
                    )
                )
                continue
            grown = replace(
                target,
                terms=target.terms + ext.terms,
                requires=target.requires + ext.requires,
                exclude=target.exclude + ext.exclude,
            )
            if isinstance(grown, Rule):
                tagging[ext.id] = grown
            else:
                relevance[ext.id] = grown
    del rules
    ruleset = RuleSet(
        rules=tuple(tagging.values()),
        relevance=tuple(relevance.values()),
        settings=Settings(
            fields=settings.get("fields", DEFAULT_FIELDS),
            min_score=settings.get("min_score", 1.0),
            untagged_not_relevant=settings.get("untagged_not_relevant", True),
        ),
        version=version,
        files=tuple(f.path for f in parsed),
    )
    return ruleset, errors


def _load(files: Sequence[tuple[str, str]]) -> tuple[RuleSet | None, list[RuleError]]:
    parsed: list[FileRules] = []
    errors: list[RuleError] = []
    digest = hashlib.sha256()
    for name, text in files:
        fr, errs = parse_file(name, text)
        parsed.append(fr)
        errors.extend(errs)
        digest.update(Path(name).name.encode() + b"\0" + text.encode() + b"\0")
    if errors:
        return None, errors
    ruleset, errors = _build(parsed, digest.hexdigest()[:16])
    return (None, errors) if errors else (ruleset, [])


def _read(files: Sequence[Path]) -> tuple[list[tuple[str, str]], list[RuleError]]:
    out: list[tuple[str, str]] = []
    errors: list[RuleError] = []
    for f in files:
        try:
            out.append((str(f), f.read_text(encoding="utf-8")))
        except FileNotFoundError:
            errors.append(RuleError("no such rule file", str(f)))
        except (OSError, UnicodeDecodeError) as e:
            errors.append(RuleError(f"cannot read rule file: {e}", str(f)))
    return out, errors


def check_rules(paths: Sequence[Path | str], *, defaults: bool = True) -> list[RuleError]:
    """Every problem in the rule files (with the defaults first), each naming file, line and
    rule. An empty list means the files load."""
    texts, errors = _read(rule_files(paths, defaults=defaults))
    return errors + _load(texts)[1]


def load_rules(paths: Sequence[Path | str] = (), *, defaults: bool = True) -> RuleSet:
    """Load and validate the rule set: default files first, then ``paths`` (files or
    folders). Raises ``RuleSetError`` with every problem found."""
    texts, errors = _read(rule_files(paths, defaults=defaults))
    rules, more = _load(texts)
    errors += more
    if errors or rules is None:
        raise RuleSetError(errors)
    return rules


def rules_from_text(text: str, *, name: str = "<text>", defaults: bool = False) -> RuleSet:
    """A rule set from one file's text (with the defaults first if asked): for the admin's
    edit-and-back-test form and for tests. Raises ``RuleSetError``."""
    base, errors = _read(rule_files((), defaults=defaults))
    rules, more = _load([*base, (name, text)])
    errors += more
    if errors or rules is None:
        raise RuleSetError(errors)
    return rules


def rules_from_texts(files: Sequence[tuple[str, str]]) -> RuleSet:
    """A rule set from several files' texts, ``(name, text)`` in load order (later rules
    with the same id replace earlier ones): the admin's back-test of one edited file among
    the others. Raises ``RuleSetError`` with every problem, each naming its file."""
    rules, errors = _load(list(files))
    if errors or rules is None:
        raise RuleSetError(errors)
    return rules


# -- the store the service holds ---------------------------------------------------------


Fingerprint = tuple[tuple[str, int, int], ...]


class RuleStore:
    """The rules in force, reloaded when their files change; a bad file never replaces
    the last good set (the problem is kept on ``.error`` until the files are fixed).

    If the files are bad already at start, the built-in defaults are used (or an empty set
    when defaults are off) and ``.error`` says why."""

    def __init__(self, paths: Sequence[Path | str] = (), *, defaults: bool = True) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self.defaults = defaults
        self._error: RuleSetError | None = None
        self._fingerprint = self._scan()
        try:
            self._rules = load_rules(self.paths, defaults=defaults)
        except RuleSetError as e:
            self._error = e
            self._rules = load_rules((), defaults=defaults)

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @property
    def error(self) -> RuleSetError | None:
        return self._error

    @property
    def version(self) -> str:
        return self._rules.version

    def _scan(self) -> Fingerprint:
        out: list[tuple[str, int, int]] = []
        for p in self.paths:
            out.append((str(p), *_stat(p)))
            if p.is_dir():
                out.extend((str(f), *_stat(f)) for f in sorted(p.glob("*.toml")))
        return tuple(out)

    def reload_if_changed(self) -> bool:
        """Reload when a rule file changed, appeared or went; True if new rules took effect."""
        fp = self._scan()
        if fp == self._fingerprint:
            return False
        self._fingerprint = fp
        return self.reload()

    def reload(self) -> bool:
        """Load the files now; True if they were good and are now in force."""
        try:
            new = load_rules(self.paths, defaults=self.defaults)
        except RuleSetError as e:
            self._error = e
            return False
        self._error = None
        changed = new.version != self._rules.version
        self._rules = new
        return changed


def _stat(p: Path) -> tuple[int, int]:
    try:
        st = os.stat(p)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)
