"""What goes into a network's digest: pure selection over stored items and history.

``select_digest`` is a pure function of the network, the candidate items, the recorded
notable changes, the network's history and ``now``; ``build_digests`` loads those through
storage (``load_inputs``) and calls it. Loading asks its caller only for a
``notifications.ports.Host`` (config, storage, clock), not the whole ``App``. The rules:

- an item goes to a network when it is ``relevant``, not held (a flood waiting for the
  admin), has at least one tag, and has one of the network's areas and one of its themes
  (``"all"`` lifts the condition for that kind); the optional ``sources``/``kinds`` of a
  network narrow it further;
- **new**: items that no earlier digest of the network has looked at (or looked at while
  they were held for the admin, and released since), that are not a source's silent
  first-poll baseline and are not over (closed, or every deadline passed). What a digest has
  looked at is kept as ids (``watcher.storage.deliveries.Seen``), never as times, so a
  wall clock set back or forward never skips or repeats an item; an old item that gains a
  tag when the rules change was looked at already, and is not new;
- **updated**: notable changes (deadline, status, title, …) of the network's items that no
  earlier digest looked at, with what changed (several changes of one field in one digest
  are folded into first-old → last-new);
- a network's **first** digest lists what is open or forthcoming now (baseline items
  included: that is what the network is joining), not the whole history;
- every section is **capped**: ``new`` and ``updated`` show at most ``GROUP_CAP`` entries
  per area (the soonest deadlines), ``closing soon`` at most ``CLOSING_SOON_CAP``; the rest
  are counted (``Digest.hidden``: "och 12 till") and the email links to the web list. A
  network added to a service with years of items gets a bounded email and a bounded digest
  record: only shown entries are stored, and what was looked at stays a few id ranges;
- **closing soon**: the network's open calls whose next deadline is within
  ``closing_soon_days``; a reminder list, it never triggers a digest by itself;
- entries are grouped by their first area the network follows (in the taxonomy's order)
  and sorted by deadline (none last); one item that cannot be read is skipped and counted,
  never stopping the digest.

The ``Digest`` is self-contained (display values, not rows) and is stored as the digest's
payload, so a resumed send renders exactly what the first attempt rendered.

Items are read in two steps: every candidate without its tags' evidence (what matching,
sorting and counting need), then in full only the ones a digest shows (``Prepared.load``).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from notifications.ports import Host
from notifications.text import multi_line, one_line, safe_link
from watcher.calls import has_passed, is_current, is_open, is_over, next_deadline
from watcher.calls import status as status_at
from watcher.config import AREAS, THEMES, NetworkConfig
from watcher.dates import from_iso
from watcher.storage import Storage
from watcher.storage.deliveries import DeliveryStore, NetworkHistory, NotableChange, Seen, Visible
from watcher.types import NOTABLE_FIELDS, StoredItem

log = logging.getLogger(__name__)

SUMMARY_CHARS = 280
TITLE_CHARS = 300
# At most this many entries per area in "new" and in "updated", and in "closing soon" in
# all; the rest are counted and left to the web list (a first digest over a service with
# years of calls would otherwise be a 100,000-entry email).
GROUP_CAP = 25
CLOSING_SOON_CAP = 25


@dataclass(frozen=True)
class TagNote:
    """A tag and why it was given (rule and the evidence it matched)."""

    kind: str
    tag: str
    rule_id: str
    evidence: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FieldNote:
    """One field that changed, with JSON values as recorded (formatted when rendered)."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Entry:
    """One item as a digest shows it. Every string is cleaned already."""

    item_id: int
    uid: str
    title: str
    link: str
    kind: str
    status: str | None
    programme: str | None
    opening: datetime | None
    deadline: datetime | None  # the next deadline (the last one when all have passed)
    deadlines: tuple[datetime, ...]
    sources: tuple[tuple[str, str], ...]  # (source name, link)
    tags: tuple[TagNote, ...]
    group: str  # the area it is listed under ("" when it has none the network follows)
    summary: str = ""
    changes: tuple[FieldNote, ...] = ()

    @property
    def areas(self) -> list[str]:
        return [t.tag for t in self.tags if t.kind == "area"]

    @property
    def themes(self) -> list[str]:
        return [t.tag for t in self.tags if t.kind == "theme"]


@dataclass(frozen=True)
class Digest:
    """A network's digest for one window: what is new, updated and closing soon."""

    network_id: str
    network_name: str
    language: str
    window_start: datetime | None
    window_end: datetime
    first: bool
    new: tuple[Entry, ...] = ()
    updated: tuple[Entry, ...] = ()
    closing_soon: tuple[Entry, ...] = ()
    change_ids: tuple[int, ...] = ()  # the notable changes this digest reports
    skipped: int = 0  # items that could not be read
    closing_soon_days: int = 14
    # Entries left out by the caps: section → group ('' for closing soon) → how many.
    hidden: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    list_url: str = ""  # the web list the email sends a reader to for the rest
    # What the network's digests have looked at once this one is recorded (not part of the
    # payload: it is stored beside it). None for a digest read back from its payload.
    seen: Seen | None = field(default=None, compare=False, repr=False)

    @property
    def is_empty(self) -> bool:
        """Nothing new and nothing updated: nothing is sent."""
        return not self.new and not self.updated

    @property
    def item_ids(self) -> tuple[int, ...]:
        """The items this digest shows as new (those left out by a cap are only counted)."""
        return tuple(e.item_id for e in self.new)

    def more(self, section: str, group: str | None = None) -> int:
        """How many entries of a section (of one of its groups) the caps left out."""
        by = self.hidden.get(section, {})
        return sum(by.values()) if group is None else by.get(group, 0)

    def total(self, section: str) -> int:
        """A section's entries, shown or not."""
        return len(getattr(self, section)) + self.more(section)

    def groups(self, section: str) -> list[tuple[str, list[Entry]]]:
        """``new`` or ``updated`` entries by area, in the taxonomy's order ('' last); an
        area whose entries were all left out by the cap is there, empty."""
        entries: Sequence[Entry] = getattr(self, section)
        order = {a: i for i, a in enumerate(AREAS)}
        by: dict[str, list[Entry]] = {}
        for e in entries:
            by.setdefault(e.group, []).append(e)
        for group, n in self.hidden.get(section, {}).items():
            if n:
                by.setdefault(group, [])
        return sorted(by.items(), key=lambda kv: order.get(kv[0], len(order)))

    # -- stored as the digest's payload ----------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        return {
            "version": 1,
            "network_id": self.network_id,
            "network_name": self.network_name,
            "language": self.language,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "first": self.first,
            "new": [_entry_json(e) for e in self.new],
            "updated": [_entry_json(e) for e in self.updated],
            "closing_soon": [_entry_json(e) for e in self.closing_soon],
            "change_ids": list(self.change_ids),
            "skipped": self.skipped,
            "closing_soon_days": self.closing_soon_days,
            "hidden": {s: dict(g) for s, g in self.hidden.items() if g},
            "list_url": self.list_url,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Digest:
        end = from_iso(data["window_end"])
        assert end is not None
        return cls(
            network_id=data["network_id"],
            network_name=data["network_name"],
            language=data.get("language", "sv"),
            window_start=from_iso(data.get("window_start")),
            window_end=end,
            first=bool(data.get("first")),
            new=tuple(_entry_from(e) for e in data.get("new", ())),
            updated=tuple(_entry_from(e) for e in data.get("updated", ())),
            closing_soon=tuple(_entry_from(e) for e in data.get("closing_soon", ())),
            change_ids=tuple(int(i) for i in data.get("change_ids", ())),
            skipped=int(data.get("skipped", 0)),
            closing_soon_days=int(data.get("closing_soon_days", 14)),
            hidden={
                str(s): {str(g): int(n) for g, n in groups.items()}
                for s, groups in (data.get("hidden") or {}).items()
            },
            list_url=str(data.get("list_url") or ""),
        )


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _entry_json(e: Entry) -> dict[str, Any]:
    return {
        "item_id": e.item_id,
        "uid": e.uid,
        "title": e.title,
        "link": e.link,
        "kind": e.kind,
        "status": e.status,
        "programme": e.programme,
        "opening": _iso(e.opening),
        "deadline": _iso(e.deadline),
        "deadlines": [d.isoformat() for d in e.deadlines],
        "sources": [list(s) for s in e.sources],
        "tags": [
            {
                "kind": t.kind,
                "tag": t.tag,
                "rule": t.rule_id,
                "evidence": [list(x) for x in t.evidence],
            }
            for t in e.tags
        ],
        "group": e.group,
        "summary": e.summary,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in e.changes],
    }


def _entry_from(d: Mapping[str, Any]) -> Entry:
    return Entry(
        item_id=int(d["item_id"]),
        uid=d.get("uid", ""),
        title=d["title"],
        link=d.get("link", ""),
        kind=d.get("kind", ""),
        status=d.get("status"),
        programme=d.get("programme"),
        opening=from_iso(d.get("opening")),
        deadline=from_iso(d.get("deadline")),
        deadlines=tuple(x for x in (from_iso(v) for v in d.get("deadlines", ())) if x),
        sources=tuple((str(s[0]), str(s[1])) for s in d.get("sources", ())),
        tags=tuple(
            TagNote(
                t["kind"],
                t["tag"],
                t.get("rule", ""),
                tuple((a, b) for a, b in t.get("evidence", ())),
            )
            for t in d.get("tags", ())
        ),
        group=d.get("group", ""),
        summary=d.get("summary", ""),
        changes=tuple(
            FieldNote(c["field"], c.get("old"), c.get("new")) for c in d.get("changes", ())
        ),
    )


# -- the rules ------------------------------------------------------------------------------


def followed(values: Sequence[str], universe: Sequence[str]) -> tuple[str, ...]:
    """A network's areas or themes with ``"all"`` spelled out."""
    return tuple(universe) if tuple(values) == ("all",) else tuple(values)


def item_facts(item: StoredItem) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """An item's areas, themes and sources (what network matching looks at)."""
    areas = frozenset(t.tag for t in item.tags if t.kind == "area")
    themes = frozenset(t.tag for t in item.tags if t.kind == "theme")
    sources = frozenset({s.source_id for s in item.sources} | {item.source_id})
    return areas, themes, sources


def primary_group(areas: frozenset[str], network: NetworkConfig) -> str:
    """The area an item is listed under in a network's digest."""
    for area in AREAS:
        if area in areas and (network.areas == ("all",) or area in network.areas):
            return area
    return ""


def fold_changes(changes: Iterable[NotableChange]) -> tuple[FieldNote, ...]:
    """Several changes of one item, as one note per field: first old → last new; notable
    fields only; a field that came back to where it was is left out."""
    first_old: dict[str, Any] = {}
    last_new: dict[str, Any] = {}
    for ch in changes:
        for c in ch.changes:
            f = str(c.get("field", ""))
            if f not in NOTABLE_FIELDS:
                continue
            first_old.setdefault(f, c.get("old"))
            last_new[f] = c.get("new")
    order = ("title", "status", "opening", "deadlines", "programme", "budget", "link")
    return tuple(
        FieldNote(f, first_old[f], last_new[f])
        for f in sorted(first_old, key=lambda x: order.index(x) if x in order else len(order))
        if first_old[f] != last_new[f]
    )


def make_entry(
    item: StoredItem,
    now: datetime,
    source_names: Mapping[str, str],
    changes: tuple[FieldNote, ...] = (),
    group: str = "",
) -> Entry:
    """An item as the digest shows it, every string cleaned."""
    sources: list[tuple[str, str]] = []
    seen: set[str] = set()
    for s in item.sources or ():
        if s.source_id in seen:
            continue
        seen.add(s.source_id)
        sources.append(
            (one_line(source_names.get(s.source_id, s.source_id), 120), safe_link(s.link))
        )
    if not sources:
        sources.append((one_line(source_names.get(item.source_id, item.source_id), 120), ""))
    tag_order = {t: i for i, t in enumerate((*AREAS, *THEMES))}
    tags = tuple(
        TagNote(
            one_line(t.kind, 16),
            one_line(t.tag, 64),
            one_line(t.rule_id, 128),
            tuple(
                (one_line(e.get("field", ""), 32), one_line(e.get("matched", ""), 80))
                for e in t.evidence[:3]
            ),
        )
        for t in sorted(item.tags, key=lambda t: (t.kind != "area", tag_order.get(t.tag, 99)))
    )
    return Entry(
        item_id=item.id,
        uid=item.uid,
        title=one_line(item.title, TITLE_CHARS) or "(utan titel)",
        link=safe_link(item.link),
        kind=item.kind,
        status=status_at(item, now),
        programme=one_line(item.programme, 200) or None,
        opening=item.opening,
        deadline=next_deadline(item, now),
        deadlines=tuple(sorted(item.deadlines)),
        sources=tuple(sources),
        tags=tags,
        group=group,
        summary=multi_line(item.summary, SUMMARY_CHARS),
        changes=changes,
    )


class CallNow(NamedTuple):
    """An item's call facts at a digest's ``now`` (``watcher.calls``), kept per build."""

    over: bool
    current: bool
    open: bool
    next_deadline: datetime | None


class Prepared:
    """What the selections of several networks over the same items share: each item's
    tag sets, its call facts at ``now`` and its cleaned entry are worked out once, not once
    per network. ``load`` reads items in full by id (the candidates may have been read
    without their tags' evidence); without it the items given are used as they are."""

    def __init__(
        self,
        now: datetime,
        source_names: Mapping[str, str] | None = None,
        load: Callable[[Sequence[int]], Iterable[StoredItem]] | None = None,
    ) -> None:
        self.now = now
        self.names = source_names or {}
        self._load = load
        self.sorted = False  # the items given to ``select_digest`` are in ``order``
        self._full: dict[int, StoredItem] = {}
        self._facts: dict[int, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {}
        self._calls: dict[int, CallNow] = {}
        self._entries: dict[int, Entry] = {}
        # What ``matches`` looks at, as sets of item ids (built once per build, over every
        # item a selection is given): a network's items are a few set operations, not
        # 8,000 calls of ``matches`` (× 30 networks) for the calls closing soon.
        self._item: dict[int, StoredItem] = {}
        self._pos: dict[int, int] = {}  # the order items were first given in
        self._lists: list[tuple[Sequence[StoredItem], frozenset[int]]] = []  # indexed whole
        self._broken: set[int] = set()
        self._eligible: set[int] = set()
        self._by: dict[tuple[str, str], set[int]] = {}
        self._when: dict[tuple[str, datetime], tuple[set[int], set[int]]] = {}

    def _index(self, items: Sequence[StoredItem]) -> frozenset[int]:
        """Index ``items`` (once per list); their ids."""
        for done, ids in self._lists:
            if done is items:
                return ids
        for it in items:
            if it.id in self._item:
                continue
            self._item[it.id] = it
            self._pos[it.id] = len(self._pos)
            try:
                areas, themes, sources = self.facts(it)
                if not it.relevant or it.held or not it.tags:
                    continue
            except Exception:  # one unreadable item never stops a digest
                log.exception("digest: skipping item %s", getattr(it, "id", "?"))
                self._broken.add(it.id)
                continue
            self._eligible.add(it.id)
            for what, values in (("area", areas), ("theme", themes), ("source", sources)):
                for v in values:
                    self._by.setdefault((what, v), set()).add(it.id)
            self._by.setdefault(("kind", str(it.kind)), set()).add(it.id)
        ids = frozenset(it.id for it in items)
        self._lists.append((items, ids))  # kept: a list's id() stays its own
        return ids

    def _any(self, what: str, values: Iterable[str]) -> set[int]:
        out: set[int] = set()
        for v in values:
            out |= self._by.get((what, v), set())
        return out

    def item(self, item_id: int) -> StoredItem:
        return self._item[item_id]

    def in_order(self, ids: Iterable[int]) -> list[int]:
        """``ids`` in the order their items were first given."""
        return sorted(ids, key=self._pos.__getitem__)

    def matching(self, items: Sequence[StoredItem], network: NetworkConfig) -> set[int]:
        """The ids of ``items`` that go to ``network`` (``matches``); the unreadable ones
        are counted by ``broken``."""
        ok = self._eligible & self._index(items)
        if network.areas != ("all",):
            ok &= self._any("area", network.areas)
        if network.themes != ("all",):
            ok &= self._any("theme", network.themes)
        if network.sources:
            ok &= self._any("source", network.sources)
        if network.kinds:
            ok &= self._any("kind", network.kinds)
        return ok

    def broken(self, items: Sequence[StoredItem]) -> int:
        """How many of ``items`` could not be read for matching."""
        return len(self._broken & self._index(items)) if self._broken else 0

    def _which(
        self, what: str, at: datetime, items: Sequence[StoredItem], test: Callable[..., bool]
    ) -> set[int]:
        seen, found = self._when.setdefault((what, at), (set(), set()))
        for item_id in self._index(items) - seen:
            seen.add(item_id)
            if test(self.call(self._item[item_id])):
                found.add(item_id)
        return found

    def current(self, items: Sequence[StoredItem]) -> set[int]:
        """The ids of ``items`` open or forthcoming now."""
        return self._which("current", self.now, items, lambda c: c.current)

    def closing(self, items: Sequence[StoredItem], horizon: datetime) -> set[int]:
        """The ids of ``items`` open now with their next deadline by ``horizon``."""
        now = self.now
        return self._which(
            "closing",
            horizon,
            items,
            lambda c: (
                c.open
                and c.next_deadline is not None
                and not has_passed(c.next_deadline, now)
                and c.next_deadline <= horizon
            ),
        )

    def order(self, item: StoredItem) -> tuple[bool, datetime | str, str]:
        """An item's place in a section, as ``_sort_key`` places its entry (last when its
        dates cannot be read: the digest that shows it skips it)."""
        try:
            nd = self.call(item).next_deadline
        except Exception:
            return (True, "", "")
        return (nd is None, nd or "", (item.title or "").lower())

    def facts(self, item: StoredItem) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        f = self._facts.get(item.id)
        if f is None:
            f = self._facts[item.id] = item_facts(item)
        return f

    def call(self, item: StoredItem) -> CallNow:
        """The item's call facts at ``now``, as ``watcher.calls`` answers them (once)."""
        c = self._calls.get(item.id)
        if c is None:
            now = self.now
            c = self._calls[item.id] = CallNow(
                is_over(item, now),
                is_current(item, now),
                is_open(item, now),
                next_deadline(item, now),
            )
        return c

    def load(self, ids: Iterable[int]) -> None:
        """Read in full the items about to be shown (those not read yet)."""
        if self._load is None:
            return
        wanted = sorted({i for i in ids if i not in self._full and i not in self._entries})
        if wanted:
            self._full.update((it.id, it) for it in self._load(wanted))

    def entry(
        self, item: StoredItem, network: NetworkConfig, changes: tuple[FieldNote, ...] = ()
    ) -> Entry:
        base = self._entries.get(item.id)
        if base is None:
            full = self._full.get(item.id, item)
            base = self._entries[item.id] = make_entry(full, self.now, self.names)
        group = primary_group(self.facts(item)[0], network)
        if group == base.group and changes == base.changes:
            return base
        return dataclasses.replace(base, group=group, changes=changes)


def _sort_key(e: Entry) -> tuple[bool, datetime | str, str]:
    return (e.deadline is None, e.deadline or "", e.title.lower())


Candidate = tuple[StoredItem, tuple[FieldNote, ...]]


def select_digest(
    network: NetworkConfig,
    items: Iterable[StoredItem],
    changes: Sequence[NotableChange],
    history: NetworkHistory,
    now: datetime,
    *,
    visible: Visible,
    closing_soon_days: int = 14,
    source_names: Mapping[str, str] | None = None,
    prepared: Prepared | None = None,
    list_url: str = "",
) -> Digest:
    """The digest of ``network`` for the window that ends ``now`` (pure). ``items`` holds
    the loaded items (those ``visible`` shows as not looked at yet, the current ones and
    the changed ones); ``visible`` is every item and change id the database holds above
    the network's floor. ``prepared`` shares per-item work between the networks of one
    build. The digest's ``seen`` is what the network has looked at once it is recorded."""
    prep = prepared or Prepared(now, source_names)
    first = history.epoch is None
    before = history.seen or Seen()
    given = items if isinstance(items, Sequence) else list(items)
    mine = prep.matching(given, network)  # ids
    skipped = prep.broken(given)

    def entry(it: StoredItem, notes: tuple[FieldNote, ...] = ()) -> Entry | None:
        nonlocal skipped
        try:
            return prep.entry(it, network, notes)
        except Exception:
            log.exception("digest %s: skipping item %s", network.id, it.id)
            skipped += 1
            return None

    hidden: dict[str, dict[str, int]] = {}

    def shown(
        section: str, found: Sequence[Candidate], cap: int, grouped: bool, ordered: bool = False
    ) -> list[Entry]:
        """The entries of a section: at most ``cap`` per group (the soonest deadlines;
        ``ordered``: ``found`` is in that order already); the rest are counted in
        ``hidden``. Only the ones shown are read in full."""
        by: dict[str, list[Candidate]] = {}
        for c in found:
            group = primary_group(prep.facts(c[0])[0], network) if grouped else ""
            by.setdefault(group, []).append(c)
        kept: list[Candidate] = []
        for group, cands in by.items():
            if len(cands) > cap:
                hidden.setdefault(section, {})[group] = len(cands) - cap
                if ordered:
                    cands = cands[:cap]
                else:
                    cands = heapq.nsmallest(cap, cands, key=lambda c: prep.order(c[0]))
            kept.extend(cands)
        prep.load(it.id for it, _ in kept)
        out = [e for it, notes in kept if (e := entry(it, notes))]
        return sorted(out, key=_sort_key)

    # Items not looked at yet, or looked at while held: those held now wait again.
    fresh = [i for i in visible.held if i not in before.items or i in before.held]
    waiting = frozenset(i for i in fresh if visible.held[i])
    fresh_changes = [c for c in visible.changes if c not in before.changes]
    new_found: list[Candidate] = []
    updated_found: list[Candidate] = []
    change_ids: list[int] = []
    if first:
        current = prep.current(given) & mine
        new_found = [(prep.item(i), ()) for i in prep.in_order(current)]
    else:
        for item_id in fresh:
            if item_id not in mine or item_id in waiting:
                continue
            arrived = prep.item(item_id)
            if not arrived.baseline and not prep.call(arrived).over:
                new_found.append((arrived, ()))
        unseen = set(fresh_changes)
        new_ids = {it.id for it, _ in new_found}
        by_item: dict[int, list[NotableChange]] = {}
        for ch in changes:
            if ch.id not in unseen or ch.item_id not in mine:
                continue
            change_ids.append(ch.id)
            if ch.item_id not in new_ids:
                by_item.setdefault(ch.item_id, []).append(ch)
        for item_id, chs in by_item.items():
            notes = fold_changes(chs)
            if notes:
                updated_found.append((prep.item(item_id), notes))
    closing = prep.closing(given, now + timedelta(days=closing_soon_days)) & mine
    soon_found: list[Candidate] = [(prep.item(i), ()) for i in prep.in_order(closing)]
    # ``items`` in ``Prepared.order`` (as ``build_for`` gives them): the first digest's
    # and closing soon's candidates are in order already.
    in_order = prep.sorted
    new = shown("new", new_found, GROUP_CAP, True, first and in_order)
    updated = shown("updated", updated_found, GROUP_CAP, True)
    soon = shown("closing_soon", soon_found, CLOSING_SOON_CAP, False, in_order)
    return Digest(
        network_id=network.id,
        network_name=one_line(network.name, 200),
        language=network.language,
        window_start=history.last_window_end,
        window_end=now,
        first=first,
        new=tuple(new),
        updated=tuple(updated),
        closing_soon=tuple(soon),
        change_ids=tuple(sorted(change_ids)),
        skipped=skipped,
        closing_soon_days=closing_soon_days,
        hidden=hidden,
        list_url=list_url,
        seen=seen_after(before, history, visible, fresh, waiting, fresh_changes),
    )


def seen_after(
    before: Seen,
    history: NetworkHistory,
    visible: Visible,
    fresh: Sequence[int],
    waiting: frozenset[int],
    fresh_changes: Sequence[int],
) -> Seen:
    """What the network has looked at once a digest that looked at ``fresh`` items and
    ``fresh_changes`` is recorded. Ids it did not see stay out (a late commit on PostgreSQL
    is looked at by a later digest) until they are settled: below ``history.settled``, or
    below what this digest saw when ids commit in order (SQLite)."""
    item_mark = max(before.item_mark, max(visible.held, default=0))
    change_mark = max(before.change_mark, max(visible.changes, default=0))
    settled = history.settled if history.settled is not None else (item_mark, change_mark)
    return Seen(
        items=before.items.with_ids(fresh).filled_to(settled[0]),
        changes=before.changes.with_ids(fresh_changes).filled_to(settled[1]),
        held=waiting,
        item_mark=item_mark,
        change_mark=change_mark,
    )


# -- loading --------------------------------------------------------------------------------


@dataclass
class DigestInputs:
    """What ``select_digest`` needs for several networks, loaded once."""

    histories: dict[str, NetworkHistory]
    items: list[StoredItem]
    changes: list[NotableChange] = field(default_factory=list)
    visible: Visible = field(default_factory=Visible)


def load_inputs(
    storage: Storage,
    network_ids: Sequence[str],
    now: datetime,
    closing_soon_days: int = 14,
) -> DigestInputs:
    """Load histories, the items and changes the networks have not looked at yet (above the
    lowest of their floors), the current items (every one for a first digest; else those
    closing within ``closing_soon_days``) and the items of the new changes: only what
    ``select_digest`` can pick at ``now``. They are read without their tags' evidence
    (``DeliveryStore.candidates``); ``Prepared.load`` reads the shown ones in full."""
    store = DeliveryStore(storage)
    histories = {nid: store.network_history(nid, now) for nid in network_ids}
    seens = [h.seen or Seen() for h in histories.values()]
    item_floor = min((s.items.floor for s in seens), default=0)
    change_floor = min((s.changes.floor for s in seens), default=0)
    held = set().union(*(s.held for s in seens))
    visible = store.visible(item_floor, change_floor, held)
    if any(h.epoch is None for h in histories.values()):
        ids = set(store.current_item_ids(now))  # a first digest covers every current call
    else:
        ids = set(store.closing_soon_ids(now, now + timedelta(days=closing_soon_days)))
    ids.update(
        i
        for i, is_held in visible.held.items()
        if i in visible.relevant
        and not is_held
        and any(i not in s.items or i in s.held for s in seens)
    )
    # Changes matter only to networks past their first digest.
    started = [s for h, s in zip(histories.values(), seens, strict=True) if h.epoch is not None]
    changes: list[NotableChange] = []
    if started:
        changes = store.notable_changes(min(s.changes.floor for s in started))
        ids.update(c.item_id for c in changes)
    return DigestInputs(histories, store.candidates(sorted(ids)), changes, visible)


def build_digests(
    app: Host, network_ids: Sequence[str] | None = None, now: datetime | None = None
) -> list[Digest]:
    """The next digest of each network (all configured ones by default), as it would be
    sent at ``now`` (the host's clock by default); nothing is recorded. The admin's
    "preview of the next digest"; ``app`` is the ``App`` or anything with its ``Host`` part."""
    cfg = app.config
    nets = [cfg.network(n) for n in network_ids] if network_ids else list(cfg.networks)
    return build_for(app, nets, now)


def build_for(
    app: Host,
    nets: Sequence[NetworkConfig],
    now: datetime | None = None,
    only: Mapping[str, Callable[[StoredItem], bool]] | None = None,
) -> list[Digest]:
    """The next digest of each of ``nets`` (network-like values: a person's own digest is
    one, ``notifications.subscriptions.personal_network``) at ``now``; ``only`` narrows a
    digest's items further by its id (a person's saved searches and topics). Records
    nothing. A run builds all its networks' digests in one call: the items are read,
    indexed and sorted once for all (``Prepared``)."""
    cfg = app.config
    at = now or app.now()
    inputs = load_inputs(app.storage, [n.id for n in nets], at, cfg.email.closing_soon_days)
    names = {s.id: s.name for s in cfg.sources}
    prepared = Prepared(at, names, load=app.storage.get_items)
    inputs.items.sort(key=prepared.order)
    prepared.sorted = True
    list_url = cfg.watcher.base_url.rstrip("/") + "/"
    narrow = only or {}
    return [
        select_digest(
            n,
            inputs.items if n.id not in narrow else [i for i in inputs.items if narrow[n.id](i)],
            inputs.changes,
            inputs.histories[n.id],
            at,
            visible=inputs.visible,
            closing_soon_days=cfg.email.closing_soon_days,
            source_names=names,
            prepared=prepared,
            list_url=list_url,
        )
        for n in nets
    ]


def build_digest(app: Host, network_id: str, now: datetime | None = None) -> Digest:
    """The next digest of one network at ``now`` (KeyError for an unknown network)."""
    return build_digests(app, [network_id], now)[0]
