"""Full-text search on both databases: Swedish compounds and inflections, ranking, filters
with a search, and an index that follows every write (new items, updates, takeovers,
deletions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.builders import OTHER, SRC, poll_into
from tests.conftest import T0
from watcher.storage import ItemFilter, Storage
from watcher.storage import items as items_module
from watcher.text import search_terms, swedish_stem
from watcher.types import Classification, Evidence, RawItem, Tag


def raw(key: str, title: str, summary: str = "", **kw: object) -> RawItem:
    return RawItem(key=key, title=title, link=f"https://esf.example/{key}", summary=summary, **kw)  # type: ignore[arg-type]


def found(storage: Storage, q: str, **kw: object) -> list[str]:
    return [i.title for i in storage.list_items(ItemFilter(text=q, **kw))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("kompetensförsörjningen", "kompetensförsörjning"),
        ("utlysningar", "utlysning"),
        ("ansökningarna", "ansökning"),
        ("partners", "partner"),
        ("innovation", "innovation"),
    ],
)
def test_swedish_stems(word: str, stem: str):
    assert swedish_stem(word) == stem
    assert word.startswith(stem)  # a text holding the word holds its stem


def test_search_terms_are_folded_stemmed_and_kept_long_enough():
    assert search_terms("Utlysningar  EU 100% möjligheter utlysningen") == [
        "utlysning",
        "eu",
        "100%",
        "möjlig",  # not "möj": a stem keeps four letters
    ]


def test_compounds_and_inflections(any_storage: Storage):
    poll_into(
        any_storage,
        SRC,
        [
            raw("a", "Kompetensförsörjningen i regionen", "Stöd till kommuner."),
            raw("b", "Utlysningar för skolor", "Digitalisering i skolan."),
            raw("c", "ÄLDREOMSORG i Öckerö", "Ny satsning på välfärdsteknik."),
        ],
    )
    a, b, c = (
        "Kompetensförsörjningen i regionen",
        "Utlysningar för skolor",
        "ÄLDREOMSORG i Öckerö",
    )
    assert found(any_storage, "kompetensförsörjning") == [a]  # an inflection
    assert found(any_storage, "kompetens") == [a]  # the first part of a compound
    assert found(any_storage, "utlysningen") == [b]  # another inflection of the same stem
    assert found(any_storage, "skola digitaliseringen") == [b]  # every word, any field
    assert found(any_storage, "äldreomsorg öckerö") == [c]  # Unicode case folding
    # A compound's last part: inside a word, which only PostgreSQL's trigrams look up (on
    # SQLite a word prefix is what the FTS5 index answers fast).
    inside = [a] if any_storage.dialect == "postgresql" else []
    assert found(any_storage, "försörjning") == inside
    assert found(any_storage, "teknik") == ([c] if inside else [])
    assert found(any_storage, "regionen kommun") == [a]
    assert found(any_storage, "skolor regionen") == []  # all words must match
    assert found(any_storage, "åmål") == []
    assert any_storage.count_items(ItemFilter(text="kompetens")) == 1


def test_ranking_puts_the_best_match_first_then_the_latest_deadline(any_storage: Storage):
    poll_into(
        any_storage,
        SRC,
        [
            raw("s", "Nyhet om regionens arbete", "Ett seminarium om klimatanpassning i vår."),
            raw(
                "t",
                "Klimatanpassning i kommunerna",
                "Utlysning för kommuner.",
                deadlines=("2027-01-10",),
            ),
            raw(
                "u",
                "Klimatanpassning i kommunerna",
                "Utlysning för kommuner.",
                deadlines=("2027-05-10",),
            ),
        ],
    )
    ranked = any_storage.list_items(ItemFilter(text="klimatanpassning", order="relevance"))
    # In the title beats in the summary; equal matches: the latest deadline first.
    assert [i.sources[0].key for i in ranked] == ["u", "t", "s"]
    # The other orders stay as they were.
    by_deadline = any_storage.list_items(ItemFilter(text="klimatanpassning", order="deadline"))
    assert [i.sources[0].key for i in by_deadline] == ["t", "u", "s"]
    # Relevance without a search is newest first.
    assert len(any_storage.list_items(ItemFilter(order="relevance"))) == 3


def test_filters_combined_with_a_search(any_storage: Storage):
    poll_into(
        any_storage,
        SRC,
        [
            raw(
                "o",
                "Utlysning: digitalisering",
                status="open",
                programme="ESF+",
                deadlines=("2027-02-01",),
            ),
            raw("c", "Utlysning: digitaliseringen av skolan", status="closed", programme="ERUF"),
            raw("n", "Nyhet om annat", status="open", programme="ESF+"),
        ],
    )
    assert found(any_storage, "digitalisering", status="open") == ["Utlysning: digitalisering"]
    assert found(any_storage, "digitalisering", programme="eruf") == [
        "Utlysning: digitaliseringen av skolan"
    ]
    assert found(any_storage, "utlysning", deadline_from=T0, order="relevance") == [
        "Utlysning: digitalisering"
    ]
    assert any_storage.count_items(ItemFilter(text="digitalisering", status="open")) == 1
    assert found(any_storage, "digitalisering", kind="consultation") == []


def test_the_index_follows_an_update(any_storage: Storage):
    poll_into(any_storage, SRC, [raw("x", "Digitalisering i skolan", "Om skolor.")])
    assert found(any_storage, "digitalisering") == ["Digitalisering i skolan"]
    later = T0 + timedelta(hours=1)
    poll_into(any_storage, SRC, [raw("x", "Klimatanpassning i skolan", "Om skolor.")], now=later)
    assert found(any_storage, "klimatanpassning") == ["Klimatanpassning i skolan"]
    assert found(any_storage, "digitalisering") == []  # the old words are gone
    assert any_storage.count_items(ItemFilter(text="digitalisering")) == 0


def test_the_index_follows_a_takeover(any_storage: Storage):
    """A national news item naming a call, then the call itself: one record, found by the
    call's words."""
    ident = "HORIZON-CL2-2027-TRANSFORMATIONS-01"
    poll_into(
        any_storage,
        SRC,
        [raw("n", f"Ny utlysning i Horisont Europa: {ident}", "Kommuner kan söka.")],
    )
    poll_into(
        any_storage,
        OTHER,
        [
            RawItem(
                key=ident,
                title="Social innovation for inclusive cities",
                link=f"https://ft.example/{ident}",
                identifier=ident,
                kind="call",
                deadlines=("2027-02-10",),
            )
        ],
        now=T0 + timedelta(hours=1),
    )
    assert any_storage.count_items() == 1
    assert found(any_storage, "inclusive cities") == ["Social innovation for inclusive cities"]
    assert found(any_storage, ident.lower()) == ["Social innovation for inclusive cities"]


def test_the_index_follows_deletions(any_storage: Storage):
    poll_into(any_storage, SRC, [raw("d", "Kompetensförsörjning", "")])
    with any_storage.engine.begin() as conn:
        conn.execute(text("DELETE FROM items"))
        if any_storage.dialect == "sqlite":
            # The FTS5 index itself, not only the join with items, forgets the item.
            hits = conn.execute(
                text("SELECT count(*) FROM items_fts WHERE items_fts MATCH '\"kompetens\"'")
            ).scalar_one()
            assert hits == 0
    assert found(any_storage, "kompetens") == []


def test_search_text_with_quotes_and_wildcards_is_taken_literally(any_storage: Storage):
    poll_into(any_storage, SRC, [raw("q", 'Programmet "Kreativa Europa" 100% digitalt', "")])
    assert found(any_storage, '"kreativa') == ['Programmet "Kreativa Europa" 100% digitalt']
    assert found(any_storage, "100%") == ['Programmet "Kreativa Europa" 100% digitalt']
    assert found(any_storage, "europa OR x") == []  # not FTS5 or tsquery syntax
    assert found(any_storage, "!(europa") == ['Programmet "Kreativa Europa" 100% digitalt']
    # By relevance (the web's order with a search) too, with no word to rank by at all.
    for q in ("%", "100%", "–"):
        hits = found(any_storage, q, order="relevance")
        assert hits == (['Programmet "Kreativa Europa" 100% digitalt'] if q != "–" else []), q


def test_a_search_by_relevance_ranks_the_newest_matches(
    any_storage: Storage, monkeypatch: pytest.MonkeyPatch
):
    # Both databases rank the newest matches (the highest ids), at most RANKED_CANDIDATES
    # of them, so the same search gives the same page; older matches follow, newest first.
    monkeypatch.setattr(items_module, "RANKED_CANDIDATES", 2)
    poll_into(
        any_storage,
        SRC,
        [
            raw("s", "Nyhet om regionens arbete", "Om klimatanpassning."),
            raw("t", "Klimatanpassning i kommunerna", deadlines=("2027-01-10",)),
            raw("u", "Klimatanpassning i regionen", deadlines=("2027-05-10",)),
            raw("v", "Seminarium", "Om klimatanpassning.", deadlines=("2027-09-01",)),
        ],
    )
    f = ItemFilter(text="klimatanpassning", order="relevance", limit=2)
    keys = [i.sources[0].key for i in any_storage.list_items(f)]
    assert keys == ["u", "v"]  # "t", older than both, ranks above "v" but is not ranked

    # Every match has one place whatever the page's size: paging on shows each match once.
    def page(offset: int, limit: int) -> list[str]:
        return [
            i.sources[0].key for i in any_storage.list_items(replace(f, offset=offset, limit=limit))
        ]

    assert [k for n in range(5) for k in page(n, 1)] == ["u", "v", "t", "s"]
    assert page(1, 2) == ["v", "t"]  # a page across the bound: ranked, then newest
    assert page(2, 5) == ["t", "s"]
    assert any_storage.count_items(f) == 4
    # The bound counts the matches that pass the filters: newer matches of another source
    # do not take the places of this source's.
    poll_into(
        any_storage,
        OTHER,
        [
            raw("x", "Klimatanpassning: ny utlysning", deadlines=("2027-02-01",)),
            raw("y", "Klimatanpassning och vatten", deadlines=("2027-03-01",)),
        ],
        now=T0 + timedelta(hours=1),
    )
    assert {i.sources[0].key for i in any_storage.list_items(f)} == {"x", "y"}
    ours = replace(f, source=SRC.id)
    assert [i.sources[0].key for i in any_storage.list_items(ours)] == ["u", "v"]
    # list_counted counts from the ranking (the ranked matches, then only the older ones
    # the count needs): each page and count is what list_items and a count of every match
    # give (a first page that is not full is its own count), below, at and past the bound,
    # with and without a filter. ("regionen" matches exactly as many as the bound.)
    for text_ in ("klimatanpassning", "regionen", "vatten", "seminarium", "ingenting"):
        for source in (None, SRC.id):
            every = any_storage.count_items(ItemFilter(text=text_, source=source))
            for offset in (0, 1, 2, 3, 5):
                for limit in (1, 2, 4):
                    g = replace(f, text=text_, source=source, offset=offset, limit=limit)
                    for past in (1, 2, 5, 1000):
                        shown, total, more = any_storage.list_counted(g, past)
                        listed = any_storage.list_items(g)
                        assert [i.id for i in shown] == [i.id for i in listed]
                        cap = offset + past
                        if offset == 0 and len(listed) < limit:
                            counted = (len(listed), False)
                        else:
                            counted = (min(every, cap), every > cap)
                        assert (total, more) == counted, (g, past)


def test_a_search_by_date_gives_the_same_page_whichever_index_leads(any_storage: Storage):
    # Words matching most items: SQLite walks the date index, probing each item in the
    # matches; matching few: it sorts the matches. Either way the same items in the same
    # order (the deadline, then the newest id), and counts stop where asked.
    poll_into(
        any_storage,
        SRC,
        [
            raw(f"u{i}", f"Utlysning {i}", deadlines=(f"2027-0{1 + i % 3}-1{i % 5}",))
            for i in range(12)
        ]
        + [raw("n", "Nyhet om seminarium", deadlines=("2027-01-05",))],
    )
    by_deadline = ItemFilter(text="utlysning", order="deadline", limit=5)
    if any_storage.dialect == "sqlite":
        with any_storage.engine.connect() as conn:
            assert any_storage._walk_order(conn, by_deadline)
            assert not any_storage._walk_order(conn, ItemFilter(text="seminarium", limit=5))
    every = [i.title for i in any_storage.list_items(ItemFilter(text="utlysning", limit=100))]
    expected = sorted(
        (i for i in any_storage.list_items(ItemFilter(limit=100)) if i.title in every),
        key=lambda i: (i.deadline, -i.id),
    )
    assert [i.title for i in any_storage.list_items(by_deadline)] == [i.title for i in expected[:5]]
    assert [
        i.title for i in any_storage.list_items(ItemFilter(text="utlysning", order="newest"))
    ] == [i.title for i in sorted(expected, key=lambda i: -i.id)]
    assert found(any_storage, "seminarium", order="deadline") == ["Nyhet om seminarium"]
    assert any_storage.count_items(ItemFilter(text="utlysning")) == 12
    assert any_storage.count_items(ItemFilter(text="utlysning"), limit=5) == 5
    assert any_storage.count_items(ItemFilter(text="utlysning"), limit=50) == 12
    assert any_storage.count_items(ItemFilter(), limit=3) == 3


FEBRUARY = datetime(2027, 2, 1, tzinfo=UTC)


def test_a_search_gives_the_same_page_whichever_step_finds_it(
    any_storage: Storage, monkeypatch: pytest.MonkeyPatch
):
    # PostgreSQL reads a search in steps (``_searched_in_steps``):
    # the first items of the order, when they hold the page; else the matches through the
    # search indexes, when few; else the query as one. Windows of 3 items and the bound on
    # "few" moved make each step answer in turn: every page is the same whichever did (on
    # SQLite, which has no steps, the same pages too).
    poll_into(
        any_storage, SRC, [raw("old", "Vätgasdalar i Västsverige", deadlines=("2027-06-01",))]
    )
    poll_into(
        any_storage,
        OTHER,
        [
            raw(
                f"u{i}",
                f"Utlysning {i}",
                deadlines=(f"2027-0{1 + i % 4}-1{i % 3}",) if i % 5 else (),
            )
            for i in range(10)
        ]
        + [raw("n", "Nyhet om vätgas", deadlines=("2027-02-01",))],
        now=T0 + timedelta(hours=1),
    )
    steps: list[str | None] = []  # the steps each search ran, in order
    in_steps = Storage._searched_in_steps

    def spy(self: Storage, conn: Any, f: ItemFilter, order: str, query: Any, *a: Any) -> Any:
        def run(step: str | None) -> Any:
            steps.append(step)
            return query(step)

        return in_steps(self, conn, f, order, run, *a)

    monkeypatch.setattr(Storage, "_searched_in_steps", spy)

    def pages() -> list[list[str]]:
        out = []
        for text_ in ("utlysning", "vätgas", "västsverige"):
            for order in ("relevance", "newest", "deadline"):
                # Filters that bound the order's own column: the window begins there.
                for source, bound in ((None, None), (OTHER.id, None), (None, FEBRUARY)):
                    for offset in (0, 2):
                        f = ItemFilter(
                            text=text_,
                            order=order,
                            source=source,
                            offset=offset,
                            limit=3,
                            deadline_from=bound if order == "deadline" else None,
                            since=bound and T0 + timedelta(minutes=30)
                            if order == "newest"
                            else None,
                        )
                        out.append([i.sources[0].key for i in any_storage.list_items(f)])
        return out

    answers = {}
    for label, windows, few in (
        ("window", dict.fromkeys(("id", "newest", "deadline"), 100), 5_000),
        ("indexed", dict.fromkeys(("id", "newest", "deadline"), 3), 10**6),
        ("one query", dict.fromkeys(("id", "newest", "deadline"), 3), -1),
    ):
        monkeypatch.setattr(items_module, "SEARCH_WINDOWS", windows)
        monkeypatch.setattr(items_module, "FEW_MATCHES", few)
        steps.clear()
        answers[label] = pages()
        if any_storage.dialect != "sqlite":  # each search began with the window
            assert steps.count("window") == len(answers[label]) == 54
            last = {"window": "window", "indexed": "indexed", "one query": None}[label]
            assert set(steps) == {"window", last}
    assert answers["indexed"] == answers["window"] == answers["one query"]
    # By deadline: the earliest first, none last, then the newest.
    every = any_storage.list_items(ItemFilter(text="utlysning", limit=100))
    expected = sorted(every, key=lambda i: (i.deadline is None, i.deadline or T0, -i.id))
    got = any_storage.list_items(ItemFilter(text="utlysning", order="deadline", limit=100))
    assert [i.id for i in got] == [i.id for i in expected]
    every = any_storage.list_items(ItemFilter(text="vätgas", order="newest", limit=100))
    assert [i.sources[0].key for i in every] == ["n", "old"]  # the later poll's first


def test_postgresql_sessions_run_without_jit(any_storage: Storage):
    # Compiling a search's plan cost more than running it (``base.make_engine``); the
    # URL's own options (here the test's search_path) still hold.
    if any_storage.dialect == "sqlite":
        pytest.skip("SQLite has no JIT")
    with any_storage.engine.connect() as conn:
        assert conn.execute(text("SHOW jit")).scalar_one() == "off"
        assert conn.execute(text("SHOW search_path")).scalar_one().startswith("t_")


def test_lists_can_leave_the_evidence_out(any_storage: Storage):
    (item_id,) = poll_into(any_storage, SRC, [raw("a", "Utlysning om kompetens")]).new_ids
    evidence = (Evidence("title", "kompetens"),)
    tagged = Classification(
        (Tag("area", "kompetens", "skills", evidence), Tag("theme", "utbildning", "edu")),
        relevant=True,
    )
    any_storage.set_tags(item_id, tagged, T0)
    full = any_storage.list_items(ItemFilter(text="kompetens"))[0]
    lean = any_storage.list_items(ItemFilter(text="kompetens"), with_evidence=False)[0]
    assert full.tags and any(t.evidence for t in full.tags)
    assert [(t.kind, t.tag, t.rule_id) for t in lean.tags] == [
        (t.kind, t.tag, t.rule_id) for t in full.tags
    ]
    assert all(t.evidence == () for t in lean.tags)
    assert lean.sources == full.sources and lean.title == full.title


def test_every_stored_item_is_in_the_search_index(any_storage: Storage) -> None:
    """On SQLite new items enter the full-text index with their write (migration 0013
    dropped the per-row trigger): every item a poll stores, new or linked, is found."""
    its = [
        RawItem(key=f"k{n}", title=f"Vätgasutlysning {n}", link=f"https://x/{n}") for n in range(40)
    ]
    poll_into(any_storage, SRC, its)
    found = any_storage.list_items(ItemFilter(text="vätgasutlysning", limit=100))
    assert len(found) == 40
    if any_storage.dialect == "sqlite":
        with any_storage.engine.connect() as conn:
            indexed = conn.execute(text("SELECT count(*) FROM items_fts_docsize")).scalar()
        assert indexed == any_storage.count_items(ItemFilter(relevant=None, include_held=True))
