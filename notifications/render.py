"""Rendering digests with Jinja2: HTML (inline styles, autoescaped) and plain text.

Swedish by default, English when the network says ``language = "en"``. Dates are shown in
Europe/Stockholm. The body is rendered once per digest with a random placeholder where
each member's own unsubscribe link goes, then filled in per member: rendering 100 members'
copies costs one render (and a scraped title can never contain the placeholder).
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from notifications.digest import Digest, Entry, FieldNote
from notifications.email import BodyTemplate
from notifications.labels import (
    AREA_NAMES,
    KIND_NAMES,
    STATUS_NAMES,
    STRINGS,
    TAG_NAMES,
    format_date,
    format_datetime,
    format_number,
    lang_of,
)
from notifications.text import one_line
from notifications.wording import describe
from watcher.dates import STOCKHOLM


@dataclass(frozen=True)
class RenderedDigest:
    """A digest rendered once; ``for_member`` fills in one member's unsubscribe link."""

    subject: str
    html: str
    text: str
    placeholder: str

    @cached_property
    def template(self) -> BodyTemplate:
        """Both parts encoded once for sending; each member's copy fills in their link."""
        return BodyTemplate.of(self.text, self.html, self.placeholder)

    def for_member(self, unsubscribe_url: str) -> tuple[str, str]:
        """(html, text) with this member's unsubscribe link."""
        return (
            self.html.replace(self.placeholder, html.escape(unsubscribe_url, quote=True)),
            self.text.replace(self.placeholder, unsubscribe_url),
        )


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment: HTML templates autoescaped, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2", "xml")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def subject_for(digest: Digest) -> str:
    """``GR:s EU-nätverk: 5 nya och 2 uppdaterade – 2 november 2026`` (one line, always)."""
    lang = lang_of(digest.language)
    s = STRINGS[lang]
    parts = []
    if digest.new:
        parts.append(s["count_new"].format(n=format_number(len(digest.new), lang)))
    if digest.updated:
        parts.append(s["count_updated"].format(n=format_number(len(digest.updated), lang)))
    counts = s["and"].join(parts) or s["count_new"].format(n=format_number(0, lang))
    return one_line(
        s["subject"].format(
            network=digest.network_name,
            counts=counts,
            date=format_date(digest.window_end, lang),
        ),
        250,
    )


def _context(digest: Digest, placeholder: str, tz: ZoneInfo) -> dict[str, Any]:
    lang = lang_of(digest.language)
    s = STRINGS[lang]

    def tag_name(tag: str) -> str:
        return TAG_NAMES[lang].get(tag, tag)

    def why(entry: Entry) -> str:
        parts = []
        for t in entry.tags:
            ev = ", ".join(f"{f}: «{m}»" for f, m in t.evidence)
            parts.append(f"{tag_name(t.tag)} ({t.rule_id}{': ' + ev if ev else ''})")
        return "; ".join(parts)

    def change(note: FieldNote) -> list[str]:
        """A change as the sentences every surface uses (``notifications.wording``)."""
        return describe(note.field, note.old, note.new, lang, tz)

    return {
        "d": digest,
        "s": s,
        "lang": lang,
        "intro": s["intro"].format(
            network=digest.network_name, date=format_date(digest.window_end, lang, tz)
        ),
        "footer": s["footer"].format(network=digest.network_name),
        "unsubscribe_url": placeholder,
        "new_groups": digest.groups("new"),
        "updated_groups": digest.groups("updated"),
        "area_name": lambda a: AREA_NAMES[lang].get(a, a),
        "tag_name": tag_name,
        "status_name": lambda v: STATUS_NAMES[lang].get(v or "", v or s["none"]),
        "kind_name": lambda v: KIND_NAMES[lang].get(v or "", v or ""),
        "date": lambda v: format_date(v, lang, tz),
        "datetime": lambda v: format_datetime(v, lang, tz),
        "number": lambda v: format_number(v, lang),
        "why": why,
        "change": change,
    }


EntryCache = dict[tuple[str, str, Entry], str]


def _entry_key(e: Entry) -> Entry:
    # The group decides where an entry is listed, not how it looks; list values (old and
    # new deadlines) are made hashable.
    changes = tuple(
        FieldNote(
            c.field,
            tuple(c.old) if isinstance(c.old, list) else c.old,
            tuple(c.new) if isinstance(c.new, list) else c.new,
        )
        for c in e.changes
    )
    return dataclasses.replace(e, group="", changes=changes)


def render_digest(
    digest: Digest, tz: ZoneInfo = STOCKHOLM, cache: EntryCache | None = None
) -> RenderedDigest:
    """Subject, HTML and text of a digest, with a placeholder for the unsubscribe link.
    ``cache`` shares rendered entries between digests (one item, many networks)."""
    placeholder = f"urn:unsubscribe:{secrets.token_hex(12)}"
    env = environment()
    ctx = _context(digest, placeholder, tz)
    entries: EntryCache = {} if cache is None else cache
    lang = ctx["lang"]
    html_t, text_t = env.get_template("_entry.html.j2"), env.get_template("_entry.txt.j2")

    def entry_html(e: Entry) -> Markup:
        key = ("html", lang, _entry_key(e))
        out = entries.get(key)
        if out is None:
            out = entries[key] = html_t.render({**ctx, "e": e})
        return Markup(out)

    def entry_text(e: Entry) -> str:
        key = ("text", lang, _entry_key(e))
        out = entries.get(key)
        if out is None:
            out = entries[key] = text_t.render({**ctx, "e": e})
        return out

    ctx["entry_html"], ctx["entry_text"] = entry_html, entry_text
    return RenderedDigest(
        subject=subject_for(digest),
        html=env.get_template("digest.html.j2").render(ctx),
        text=env.get_template("digest.txt.j2").render(ctx),
        placeholder=placeholder,
    )


def render_digests(digests: Sequence[Digest], tz: ZoneInfo = STOCKHOLM) -> list[RenderedDigest]:
    """Several digests, each item's entry rendered once per language."""
    cache: EntryCache = {}
    return [render_digest(d, tz, cache) for d in digests]


def render_page(template: str, **context: Mapping[str, Any] | Any) -> str:
    """A small web page from ``notifications/templates`` (the unsubscribe pages)."""
    return environment().get_template(template).render(**context)
