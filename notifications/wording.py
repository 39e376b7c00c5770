"""Changes as a person says them: "Sista ansökningsdag flyttad: 14 september 2027 → 1 oktober
2027", "Ny andra sista ansökningsdag: 1 oktober 2027", "Status: Kommande → Öppen". Pure.

An item's history records what changed as stored values (UTC ISO instants, status words,
lists). Every surface that shows a change (the item page, ``watcher items show``, the
digest's updated entries) says it with ``sentences``, in local time and the reader's
language, so a moved deadline reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from notifications.labels import KIND_NAMES, STATUS_NAMES, format_datetime, lang_of
from notifications.text import one_line
from watcher.dates import STOCKHOLM, from_iso

ORDINALS = {
    "sv": ["första", "andra", "tredje", "fjärde", "femte", "sjätte", "sjunde", "åttonde"],
    "en": ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"],
}
WORDS = {
    "sv": {
        "deadline": "Sista ansökningsdag",
        "moved": "{what} flyttad: {old} → {new}",
        "new_nth": "Ny {nth} sista ansökningsdag: {new}",
        "new_one": "Ny sista ansökningsdag: {new}",
        "removed_nth": "{Nth} sista ansökningsdagen borttagen (var {old})",
        "removed_one": "Sista ansökningsdagen borttagen (var {old})",
        "opening": "Öppnar",
        "opening_new": "Öppnar: {new}",
        "opening_removed": "Inget öppningsdatum längre (var {old})",
        "status": "Status: {old} → {new}",
        "status_new": "Status: {new}",
        "kind": "Typ: {old} → {new}",
        "title": "Ny titel: «{new}» (var «{old}»)",
        "programme": "Program: {old} → {new}",
        "budget": "Budget: {old} → {new}",
        "link": "Ny länk: {new}",
        "summary": "Beskrivningen har ändrats",
        "regions": "Regioner: {old} → {new}",
        "sources": "Ny källa: {new}",
        "none": "ingen",
        "field": "{field}: {old} → {new}",
    },
    "en": {
        "deadline": "Deadline",
        "moved": "{what} moved: {old} → {new}",
        "new_nth": "New {nth} deadline: {new}",
        "new_one": "New deadline: {new}",
        "removed_nth": "{Nth} deadline removed (was {old})",
        "removed_one": "Deadline removed (was {old})",
        "opening": "Opening",
        "opening_new": "Opens: {new}",
        "opening_removed": "No opening date any more (was {old})",
        "status": "Status: {old} → {new}",
        "status_new": "Status: {new}",
        "kind": "Type: {old} → {new}",
        "title": "New title: “{new}” (was “{old}”)",
        "programme": "Programme: {old} → {new}",
        "budget": "Budget: {old} → {new}",
        "link": "New link: {new}",
        "summary": "The description changed",
        "regions": "Regions: {old} → {new}",
        "sources": "New source: {new}",
        "none": "none",
        "field": "{field}: {old} → {new}",
    },
}


def sentences(
    changes: Sequence[Mapping[str, Any]], language: str = "sv", tz: ZoneInfo = STOCKHOLM
) -> list[str]:
    """Every change of a history entry (``{"field", "old", "new"}``) as sentences."""
    out: list[str] = []
    for change in changes:
        out.extend(
            describe(str(change.get("field")), change.get("old"), change.get("new"), language, tz)
        )
    return out


def describe(
    field: str, old: Any, new: Any, language: str = "sv", tz: ZoneInfo = STOCKHOLM
) -> list[str]:
    """One recorded change as one or more sentences (a list of deadlines may say several
    things at once: one moved, another added)."""
    lang = lang_of(language)
    w = WORDS[lang]

    def when(value: Any) -> str:
        d = value if isinstance(value, datetime) else from_iso(str(value)) if value else None
        return format_datetime(d, lang, tz) if d else w["none"]

    def text(value: Any, limit: int = 160) -> str:
        if value in (None, "", []):
            return w["none"]
        if isinstance(value, list | tuple):
            return ", ".join(one_line(str(v), limit) for v in value) or w["none"]
        return one_line(str(value), limit)

    if field == "deadlines":
        return _deadlines(_instants(old), _instants(new), lang, when)
    if field == "opening":
        if not new:
            return [w["opening_removed"].format(old=when(old))]
        if not old:
            return [w["opening_new"].format(new=when(new))]
        return [w["moved"].format(what=w["opening"], old=when(old), new=when(new))]
    if field == "status":
        names = STATUS_NAMES[lang]
        if not old:
            return [w["status_new"].format(new=names.get(str(new), text(new)))]
        return [
            w["status"].format(
                old=names.get(str(old), text(old)), new=names.get(str(new), text(new))
            )
        ]
    if field == "kind":
        names = KIND_NAMES[lang]
        return [
            w["kind"].format(old=names.get(str(old), text(old)), new=names.get(str(new), text(new)))
        ]
    if field == "summary":
        return [w["summary"]]
    if field in ("title", "programme", "budget", "link", "regions", "sources"):
        return [w[field].format(old=text(old), new=text(new))]
    return [w["field"].format(field=field, old=text(old), new=text(new))]


def _instants(value: Any) -> list[datetime]:
    values = value if isinstance(value, list | tuple) else [value] if value else []
    out = [v if isinstance(v, datetime) else from_iso(str(v)) for v in values]
    return sorted(d for d in out if d is not None)


def _deadlines(old: list[datetime], new: list[datetime], lang: str, when: Any) -> list[str]:
    """Deadlines before and after: those that stayed are not mentioned; a deadline that
    went while another came (one for one) moved; the rest were added or removed."""
    w = WORDS[lang]
    gone = [d for d in old if d not in new]
    came = [d for d in new if d not in old]
    out: list[str] = []
    for before, after in zip(gone, came, strict=False):
        out.append(w["moved"].format(what=w["deadline"], old=when(before), new=when(after)))
    several = len(new) > 1
    for after in came[len(gone) :]:
        if several:
            nth = _ordinal(new.index(after), lang)
            out.append(w["new_nth"].format(nth=nth, new=when(after)))
        else:
            out.append(w["new_one"].format(new=when(after)))
    for before in gone[len(came) :]:
        if len(old) > 1:
            nth = _ordinal(old.index(before), lang)
            out.append(w["removed_nth"].format(Nth=nth.capitalize(), old=when(before)))
        else:
            out.append(w["removed_one"].format(old=when(before)))
    return out


def _ordinal(index: int, lang: str) -> str:
    words = ORDINALS[lang]
    return words[index] if index < len(words) else f"{index + 1}."
