"""The admin's source and network forms: the entry a posted form describes, and the
fields a form page shows.

A source form is built from its adapter kind's option schema (``option_specs``: each
pydantic field's type, default and description), so a new adapter gets its form without
code here. A form keeps what it does not show (a key written by hand stays), and leaves out
options equal to the adapter's default unless the entry already spelled them out, so the
file stays short. Problems are collected on ``errors`` (per field) and ``general``;
``watcher.web.admin.entries`` adds the config validation's problems to them.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.datastructures import FormData

from sources import registry
from watcher.config import AREAS, THEMES, SourceConfig
from watcher.web.adapter_labels import option_label
from watcher.web.render import (
    AREA_LABELS,
    KIND_LABELS,
    THEME_LABELS,
    Gettext,
    code,
    label,
    ticks,
)


@dataclass(frozen=True)
class FormField:
    """One field as the template's ``field`` macro draws it."""

    name: str
    label: str
    type: str = "text"  # text | number | checkbox | textarea | select | checkboxes
    value: Any = ""
    hint: str = ""
    required: bool = False
    choices: Sequence[tuple[str, str]] = ()
    rows: int = 3
    key: str = ""  # the config key behind the field, shown as code (an adapter's option)


@dataclass(frozen=True)
class OptionSpec:
    """One adapter option, from its pydantic field."""

    name: str
    shape: str  # bool | int | float | str | optstr | list | dict | choice
    default: Any
    required: bool
    description: str
    choices: tuple[str, ...] = ()


def option_specs(kind: str) -> list[OptionSpec]:
    """The options of an adapter kind, for building its form."""
    model: type[BaseModel] = registry.get(kind).Options
    specs = []
    for name, fld in model.model_fields.items():
        shape, choices = _shape(fld.annotation)
        default = None if fld.is_required() else fld.get_default(call_default_factory=True)
        specs.append(
            OptionSpec(name, shape, default, fld.is_required(), fld.description or "", choices)
        )
    return specs


def _shape(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if annotation is str:
        return "str", ()
    if origin is Literal:
        return "choice", tuple(str(a) for a in args)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner, choices = _shape(rest[0])
            if inner == "str":
                return "optstr", ()
            return inner, choices
    if origin in (tuple, list, set, frozenset):
        return "list", ()
    if origin is dict:
        return "dict", ()
    return "str", ()


def _display(spec: OptionSpec, value: Any) -> Any:
    if spec.shape == "bool":
        return bool(value)
    if value is None:
        return ""
    if spec.shape == "list":
        return "\n".join(str(v) for v in value)
    if spec.shape == "dict":
        return "\n".join(f"{k} = {v}" for k, v in dict(value).items())
    return str(value)


_KEYS = re.compile(r"<?\b[a-z]+_[a-z0-9_]+\b>?")

KEEP = object()  # the form did not carry the field: keep what the entry has
DEFAULT = object()  # the field was emptied: use the adapter's default


def _parse_option(spec: OptionSpec, form: FormData, t: Gettext) -> tuple[Any, str | None]:
    """(value, error) of one option from the form; the value may be KEEP or DEFAULT."""
    key = f"opt.{spec.name}"
    if spec.shape == "bool":
        # A checkbox that is not ticked is not sent: absent means false.
        return form.get(key) == "1", None
    if key not in form:
        return KEEP, None
    raw = str(form.get(key, "")).replace("\r\n", "\n")
    text = raw.strip()
    if spec.shape == "list":
        return [line.strip() for line in raw.split("\n") if line.strip()], None
    if spec.shape == "dict":
        out: dict[str, str] = {}
        for n, line in enumerate(raw.split("\n"), 1):
            if not line.strip():
                continue
            if "=" not in line:
                return None, t("rad {n}: skriv 'nyckel = värde'", n=n)
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
        return out, None
    if not text:
        if spec.required:
            return None, t("Obligatoriskt fält")
        if spec.shape == "optstr" and spec.default is not None:
            return "", None  # emptied on purpose: TOML has no null, and "" switches it off
        return DEFAULT, None
    if spec.shape == "int":
        try:
            return int(text), None
        except ValueError:
            return None, t("Ange ett heltal")
    if spec.shape == "float":
        try:
            return float(text.replace(",", ".")), None
        except ValueError:
            return None, t("Ange ett tal")
    return text, None


def _same(a: Any, b: Any) -> bool:
    """Equal, counting a tuple and a list with the same elements as equal."""

    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, tuple | list) else v

    return bool(norm(a) == norm(b))


def identity_fields(entry: Mapping[str, Any], t: Gettext, *, new: bool) -> list[FormField]:
    """The id (only when the entry is new: it cannot change) and the name, which every
    config entry's form starts with."""
    fields = []
    if new:
        fields.append(
            FormField(
                "id",
                t("Id"),
                value=entry.get("id", ""),
                required=True,
                hint=t("Små bokstäver, siffror, - och _. Kan inte ändras senare."),
            )
        )
    fields.append(FormField("name", t("Namn"), value=entry.get("name", ""), required=True))
    return fields


@dataclass
class SourceForm:
    """A source form's state: the entry it would write, its fields, and their errors."""

    kind: str
    entry: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> SourceForm:
        return cls(str(entry.get("kind", "")), dict(entry))

    @classmethod
    def from_form(
        cls, form: FormData, kind: str, existing: Mapping[str, Any] | None, t: Gettext
    ) -> SourceForm:
        """The entry the form describes. Options equal to the adapter's default are left
        out (unless the entry already spelled them out), so the file stays short."""
        errors: dict[str, list[str]] = {}
        entry: dict[str, Any] = {}
        entry["id"] = str(existing["id"]) if existing else str(form.get("id", "")).strip()
        entry["name"] = str(form.get("name", "")).strip()
        if not entry["name"]:
            errors.setdefault("name", []).append(t("Ange ett namn"))
        entry["kind"] = kind
        entry["url"] = str(form.get("url", "")).strip()
        schedule = str(form.get("schedule", "")).strip()
        entry["schedule"] = schedule or "6h"
        if form.get("enabled") != "1":
            entry["enabled"] = False
        entry["areas"] = [a for a in form.getlist("areas") if isinstance(a, str)]
        entry["themes"] = [x for x in form.getlist("themes") if isinstance(x, str)]
        language = str(form.get("language", "")).strip()
        if language:
            entry["language"] = language
        # Options of another kind (the admin switched the kind) do not carry over.
        same_kind = existing is not None and existing.get("kind") == kind
        old_opts = dict((existing or {}).get("options", {}) or {}) if same_kind else {}
        options: dict[str, Any] = {}
        try:
            specs = option_specs(kind)
        except KeyError:
            specs = []
            errors.setdefault("kind", []).append(t("Okänd typ"))
        for spec in specs:
            value, error = _parse_option(spec, form, t)
            if error:
                errors.setdefault(f"opt.{spec.name}", []).append(error)
            elif value is KEEP:
                if spec.name in old_opts:
                    options[spec.name] = old_opts[spec.name]
            elif value is DEFAULT:
                continue
            elif spec.required or spec.name in old_opts or not _same(value, spec.default):
                options[spec.name] = value
        if options:
            entry["options"] = options
        # Keep what a form does not show (e.g. a key the admin wrote by hand).
        for k, v in (existing or {}).items():
            if k not in entry and k not in ("enabled", "language", "options", "areas", "themes"):
                entry[k] = v
        if not entry["areas"] and "areas" not in (existing or {}):
            entry.pop("areas")
        if not entry["themes"] and "themes" not in (existing or {}):
            entry.pop("themes")
        return cls(kind, entry, errors)

    def fields(
        self, t: Gettext, lang: str, *, new: bool
    ) -> tuple[list[FormField], list[FormField]]:
        """(common fields, option fields) with the current values."""
        e = self.entry
        common = identity_fields(e, t, new=new)
        common += [
            FormField(
                "url",
                t("Adress (URL)"),
                value=e.get("url", ""),
                required=True,
                hint=t("http:// eller https://"),
            ),
            FormField(
                "schedule",
                t("Schema"),
                value=e.get("schedule", "6h"),
                hint=t("Ett intervall som 30m, 6h, 1d eller ett cron-uttryck som '0 7 * * 1-5'."),
            ),
            FormField(
                "enabled", t("Aktiv (hämtas enligt schemat)"), "checkbox", e.get("enabled", True)
            ),
            FormField(
                "areas",
                t("Områden som alltid sätts"),
                "checkboxes",
                list(e.get("areas", [])),
                choices=[(a, label(AREA_LABELS, a, lang)) for a in AREAS],
            ),
            FormField(
                "themes",
                t("Teman som alltid sätts"),
                "checkboxes",
                list(e.get("themes", [])),
                choices=[(x, label(THEME_LABELS, x, lang)) for x in THEMES],
            ),
            FormField(
                "language",
                t("Språk"),
                value=e.get("language", "") or "",
                hint=t("Tvåbokstavskod som sv eller en; tomt = upptäcks automatiskt."),
            ),
        ]
        options = []
        current = dict(e.get("options", {}) or {})
        try:
            specs = option_specs(self.kind)
        except KeyError:
            specs = []
        for spec in specs:
            value = current.get(spec.name, spec.default)
            ftype = {
                "bool": "checkbox",
                "int": "number",
                "float": "text",
                "list": "textarea",
                "dict": "textarea",
                "choice": "select",
            }.get(spec.shape, "text")
            swedish = option_label(self.kind, spec.name) if lang == "sv" else None
            # The English description names other options and placeholders: shown as code.
            hint: str = ticks(swedish.hint if swedish else _KEYS.sub(r"`\g<0>`", spec.description))
            if spec.shape == "list":
                hint = (hint + " " if hint else "") + t("(en per rad)")
            elif spec.shape == "dict":
                hint = (hint + " " if hint else "") + t("(en per rad: nyckel = värde)")
            options.append(
                FormField(
                    f"opt.{spec.name}",
                    swedish.label if swedish else spec.name.replace("_", " ").capitalize(),
                    ftype,
                    _display(spec, value),
                    hint=hint,
                    required=spec.required,
                    choices=[
                        (c, label(KIND_LABELS, c, lang) if spec.name == "kind" else c)
                        for c in spec.choices
                    ],
                    rows=4 if spec.shape in ("list", "dict") else 3,
                    key=spec.name,
                )
            )
        return common, options


@dataclass
class NetworkForm:
    """A network form's state: the entry it would write, and the errors of its fields."""

    entry: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    @classmethod
    def from_form(
        cls, form: FormData, existing: Mapping[str, Any] | None, t: Gettext
    ) -> NetworkForm:
        errors: dict[str, list[str]] = {}
        entry: dict[str, Any] = {}
        entry["id"] = str(existing["id"]) if existing else str(form.get("id", "")).strip()
        entry["name"] = str(form.get("name", "")).strip()
        if not entry["name"]:
            errors.setdefault("name", []).append(t("Ange ett namn"))
        for key in ("areas", "themes"):
            chosen = [v for v in form.getlist(key) if isinstance(v, str)]
            entry[key] = ["all"] if "all" in chosen else chosen
        raw = str(form.get("members", "")).replace(",", "\n").replace(";", "\n")
        entry["members"] = [m.strip() for m in raw.splitlines() if m.strip()]
        entry["schedule"] = str(form.get("schedule", "")).strip() or "mon 08:00"
        entry["language"] = "en" if form.get("language") == "en" else "sv"
        entry["sources"] = [v for v in form.getlist("sources") if isinstance(v, str)]
        entry["kinds"] = [v for v in form.getlist("kinds") if isinstance(v, str)]
        if form.get("enabled") != "1":
            entry["enabled"] = False
        prior = dict(existing or {})
        # Defaults are left out unless the entry already spelled them out.
        defaults = {
            "areas": ["all"],
            "themes": ["all"],
            "language": "sv",
            "sources": [],
            "kinds": [],
        }
        for key, default in defaults.items():
            if entry[key] == default and key not in prior:
                entry.pop(key)
        for k, v in prior.items():
            if k not in entry and k != "enabled" and k not in defaults:
                entry[k] = v
        return cls(entry, errors)

    def fields(
        self, t: Gettext, lang: str, sources: Sequence[SourceConfig], *, new: bool
    ) -> list[FormField]:
        """The fields with the current values; ``sources`` are the ones a network may be
        limited to."""
        e = self.entry
        out = identity_fields(e, t, new=new)
        out += [
            FormField(
                "areas",
                t("Områden"),
                "checkboxes",
                list(e.get("areas", ["all"])),
                choices=[
                    ("all", t("Alla områden")),
                    *((a, label(AREA_LABELS, a, lang)) for a in AREAS),
                ],
                hint=t("Nätverket får poster med något av de valda områdena."),
            ),
            FormField(
                "themes",
                t("Teman"),
                "checkboxes",
                list(e.get("themes", ["all"])),
                choices=[
                    ("all", t("Alla teman")),
                    *((x, label(THEME_LABELS, x, lang)) for x in THEMES),
                ],
                hint=t("… och något av de valda temana."),
            ),
            FormField(
                "members",
                t("Medlemmar"),
                "textarea",
                "\n".join(e.get("members", [])),
                hint=t("En e-postadress per rad."),
                rows=6,
            ),
            FormField(
                "schedule",
                t("Utskick"),
                value=e.get("schedule", "mon 08:00"),
                required=True,
                hint=t(
                    "{a}, {b}, {c} eller {d} (svensk tid).",
                    a=code("daily 07:30"),
                    b=code("weekdays 08:00"),
                    c=code("mon 08:00"),
                    d=code("mon,thu 08:00"),
                ),
            ),
            FormField(
                "language",
                t("Språk i utskicket"),
                "select",
                e.get("language", "sv"),
                choices=[("sv", "svenska"), ("en", "English")],
            ),
            FormField(
                "sources",
                t("Bara dessa källor (inget val = alla)"),
                "checkboxes",
                list(e.get("sources", [])),
                choices=[(s.id, s.name) for s in sources],
            ),
            FormField(
                "kinds",
                t("Bara dessa typer (inget val = alla)"),
                "checkboxes",
                list(e.get("kinds", [])),
                choices=[(k, label(KIND_LABELS, k, lang)) for k in KIND_LABELS],
            ),
            FormField(
                "enabled", t("Aktivt (utskick enligt schemat)"), "checkbox", e.get("enabled", True)
            ),
        ]
        return out
