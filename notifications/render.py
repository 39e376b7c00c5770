"""Rendering digests with Jinja2: HTML (inline styles, autoescaped) and plain text.

Swedish by default, English when the network says ``language = "en"``. Dates are shown in
Europe/Stockholm. The body is rendered once per digest with a random placeholder where
each member's own unsubscribe link goes, then filled in per member: rendering 100 members'
copies costs one render (and a scraped title can never contain the placeholder).

A section's entries left out by the digest's caps (``Digest.hidden``) are said at the end
of their area ("… och 12 till inom Kompetensförsörjning") with a link to the web list, and
in the note of "closing soon"; the subject counts every entry, shown or not.
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import urlencode
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


# What a section's cap left out, in the email's words (``{n}``: how many; ``{area}``).
MORE: dict[str, dict[str, str]] = {
    "sv": {
        "more": "… och {n} till",
        "more_in": "… och {n} till inom {area}",
        "list": "se hela listan på webben",
        "closing_more": (
            "Här visas de {shown} som stänger först; {n} till finns i listan på webben."
        ),
    },
    "en": {
        "more": "… and {n} more",
        "more_in": "… and {n} more in {area}",
        "list": "see the whole list on the web",
        "closing_more": "The {shown} closing first are shown; {n} more are in the web list.",
    },
}


@dataclass(frozen=True)
class More:
    """Where a section's entries left out by the cap are said (the last row of a group)."""

    n: int
    area: str
    url: str


def _list_link(digest: Digest, **params: str) -> str:
    """The web list, filtered as the section was ('' when the digest has no list URL)."""
    if not digest.list_url:
        return ""
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{digest.list_url}?{query}" if query else digest.list_url


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
        parts.append(s["count_new"].format(n=format_number(digest.total("new"), lang)))
    if digest.updated:
        parts.append(s["count_updated"].format(n=format_number(digest.total("updated"), lang)))
    counts = s["and"].join(parts) or s["count_new"].format(n=format_number(0, lang))
    return one_line(
        s["subject"].format(
            network=digest.network_name,
            counts=counts,
            date=format_date(digest.window_end, lang),
        ),
        250,
    )


def _groups(digest: Digest, section: str, lang: str) -> list[tuple[str, list[Entry | More]]]:
    """A section's groups, each ending with what its cap left out (``More``)."""
    out: list[tuple[str, list[Entry | More]]] = []
    for area, entries in digest.groups(section):
        rows: list[Entry | More] = list(entries)
        n = digest.more(section, area)
        if n:
            sort = "deadline" if section == "new" and digest.first else ""
            url = _list_link(digest, area=area, sort=sort)
            rows.append(More(n, AREA_NAMES[lang].get(area, area) if area else "", url))
        out.append((area, rows))
    return out


def _more_said(m: More, lang: str) -> str:
    """ "… och 12 till inom …": what a capped group left out."""
    words = MORE[lang]
    return (words["more_in"] if m.area else words["more"]).format(
        n=format_number(m.n, lang), area=m.area
    )


def _more_html(m: More, lang: str) -> str:
    words = MORE[lang]
    said = _more_said(m, lang)
    link = ""
    if m.url:
        link = (
            f' – <a href="{html.escape(m.url, quote=True)}" style="color:#0b5394;">'
            f"{html.escape(words['list'])}</a>"
        )
    return (
        '<tr><td style="padding:10px 0;font-size:14px;line-height:20px;color:#444444;">'
        f"{html.escape(said)}{link}</td></tr>\n"
    )


def _more_text(m: More, lang: str) -> str:
    words = MORE[lang]
    said = _more_said(m, lang)
    return f"{said}: {words['list']}\n  {m.url}\n\n" if m.url else f"{said}\n\n"


def _strings(digest: Digest, lang: str) -> dict[str, str]:
    """The labels, with "closing soon"'s note saying what its cap left out."""
    s = STRINGS[lang]
    n = digest.more("closing_soon")
    if not n:
        return s
    more = MORE[lang]["closing_more"].format(
        shown=format_number(len(digest.closing_soon), lang), n=format_number(n, lang)
    )
    # The web list of the same calls: open, a deadline within the section's days.
    url = _list_link(digest, sort="deadline", status="open", within=str(digest.closing_soon_days))
    if url:
        more = f"{more} {url}"
    escaped = more.replace("{", "{{").replace("}", "}}")
    return {**s, "closing_soon_note": f"{s['closing_soon_note']} {escaped}"}


def _context(digest: Digest, placeholder: str, tz: ZoneInfo) -> dict[str, Any]:
    lang = lang_of(digest.language)
    s = _strings(digest, lang)

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
        "new_groups": _groups(digest, "new", lang),
        "updated_groups": _groups(digest, "updated", lang),
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

    def entry_html(e: Entry | More) -> Markup:
        if isinstance(e, More):
            return Markup(_more_html(e, lang))
        key = ("html", lang, _entry_key(e))
        out = entries.get(key)
        if out is None:
            out = entries[key] = html_t.render({**ctx, "e": e})
        return Markup(out)

    def entry_text(e: Entry | More) -> str:
        if isinstance(e, More):
            return _more_text(e, lang)
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
