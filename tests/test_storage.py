"""Storage on SQLite and PostgreSQL: applying intents, history, tags, locks, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from tests.builders import CALL, OTHER, SRC, items, poll_into
from tests.conftest import T0, _storage_on
from watcher.exceptions import StorageError
from watcher.pipeline.merge import item_values
from watcher.pipeline.normalise import normalise
from watcher.pipeline.track import candidate_keys, decide
from watcher.storage import ItemFilter, Storage
from watcher.storage.schema import items as items_table
from watcher.types import (
    Classification,
    Evidence,
    PollResult,
    PollStatus,
    RawItem,
    SourceError,
    StoredSlice,
    Tag,
)


def test_apply_new_then_unchanged_then_updated(any_storage: Storage):
    out = poll_into(any_storage, SRC, [CALL])
    assert len(out.new_ids) == 1
    out2 = poll_into(any_storage, SRC, [CALL], now=T0 + timedelta(hours=1))
    assert out2.new_ids == () and out2.updated_ids == ()
    moved = RawItem(
        **{**CALL.__dict__, "deadlines": ("2027-04-20",), "budget": "60 miljoner kronor"}
    )
    out3 = poll_into(any_storage, SRC, [moved], now=T0 + timedelta(hours=2))
    assert out3.updated_ids == out.new_ids
    item = any_storage.get_item(out.new_ids[0])
    assert item is not None
    assert item.budget == "60 miljoner kronor"
    assert item.changed_at == T0 + timedelta(hours=2)
    assert item.last_seen == T0 + timedelta(hours=2)
    history = any_storage.item_history(item.id)
    assert [h.kind for h in history] == ["new", "updated"]
    fields = {c["field"]: (c["old"], c["new"]) for c in history[1].changes}
    assert fields["budget"] == ("50 miljoner kronor", "60 miljoner kronor")
    assert set(fields) == {"budget", "deadlines"}


def test_same_call_from_two_sources_is_one_item_with_both_links(any_storage: Storage):
    ft_call = RawItem(
        key="HORIZON-CL2-2027-TRANSFORMATIONS-01",
        title="Social innovation for inclusive cities",
        link="https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/topic-details/HORIZON-CL2-2027-TRANSFORMATIONS-01",
        identifier="HORIZON-CL2-2027-TRANSFORMATIONS-01",
        kind="call",
        deadlines=("2027-02-10T17:00:00+01:00",),
    )
    national = RawItem(
        key="https://vinnova.example/nyhet/1",
        title="Ny utlysning i Horisont Europa: HORIZON-CL2-2027-TRANSFORMATIONS-01",
        link="https://vinnova.example/nyhet/1",
        summary="Kommuner kan söka för sociala innovationer.",
    )
    first = poll_into(any_storage, OTHER, [ft_call])
    second = poll_into(any_storage, SRC, [national])
    assert second.new_ids == () and second.merged_ids == first.new_ids
    assert any_storage.count_items() == 1
    item = any_storage.get_item(first.new_ids[0])
    assert item is not None
    assert sorted(s.source_id for s in item.sources) == ["esf", "ft"]
    assert any(h.kind == "merged" for h in any_storage.item_history(item.id))
    # A re-poll of the national page is "unchanged", never a new duplicate.
    again = poll_into(any_storage, SRC, [national], now=T0 + timedelta(hours=1))
    assert again.new_ids == () and again.merged_ids == ()


def test_close_title_and_same_deadline_is_the_same_call(any_storage: Storage):
    a = RawItem(
        key="a",
        title="ESF+ call: Active inclusion of young people 2027",
        deadlines=("2027-05-01",),
        link="https://a/1",
    )
    b = RawItem(
        key="b",
        title="Active inclusion of young people 2027 (ESF+ call)",
        deadlines=("2027-05-01",),
        link="https://b/1",
    )
    c = RawItem(
        key="c",
        title="Active inclusion of young people 2028",
        deadlines=("2027-05-01",),
        link="https://b/2",
    )
    poll_into(any_storage, OTHER, [a])
    out = poll_into(any_storage, SRC, [b, c])
    assert len(out.merged_ids) == 1 and len(out.new_ids) == 1  # 2028 is another call


def test_tags_replace_and_record_history(any_storage: Storage):
    out = poll_into(any_storage, SRC, [CALL])
    item_id = out.new_ids[0]
    first = Classification(
        (
            Tag("area", "fonder-program", "call-kind", (Evidence("kind", "call"),)),
            Tag(
                "theme",
                "arbetsmarknad",
                "arbetsmarknad-terms",
                (Evidence("title", "kompetensförsörjning"),),
            ),
        ),
        relevant=True,
    )
    assert any_storage.set_tags(item_id, first, T0, "v1") == (
        ["area:fonder-program", "theme:arbetsmarknad"],
        [],
    )
    second = Classification((Tag("area", "fonder-program", "call-kind"),), relevant=True)
    assert any_storage.set_tags(item_id, second, T0 + timedelta(hours=1), "v2") == (
        [],
        ["theme:arbetsmarknad"],
    )
    item = any_storage.get_item(item_id)
    assert item is not None and [t.tag for t in item.tags] == ["fonder-program"]
    history = any_storage.tag_history(item_id)
    assert [h["rules_version"] for h in history] == ["v1", "v2"]
    assert any_storage.list_items(ItemFilter(area="fonder-program"))[0].id == item_id
    assert any_storage.list_items(ItemFilter(theme="arbetsmarknad")) == []


def test_filters_and_search(any_storage: Storage):
    poll_into(
        any_storage,
        SRC,
        [
            CALL,
            RawItem(
                key="n1",
                title="Nyhet om 100% budget_ökning",
                link="https://esf.example/n1",
                summary="Inget om EU",
            ),
        ],
    )
    assert [i.title for i in any_storage.list_items(ItemFilter(text="kompetens"))] == [CALL.title]
    # LIKE wildcards in the search text are taken literally.
    assert [
        i.key
        for i in [s for it in any_storage.list_items(ItemFilter(text="100%")) for s in it.sources]
    ] == ["n1"]
    assert any_storage.list_items(ItemFilter(text="_ökning")) != []
    assert any_storage.count_items(ItemFilter(status="open")) == 1
    ordered = any_storage.list_items(ItemFilter(order="deadline"))
    assert ordered[0].title == CALL.title  # items with a deadline first


def test_source_health_records(any_storage: Storage):
    err = SourceError("timeout", "no answer in 30 s")
    fails = any_storage.record_failure(
        "x", err, PollResult("x", PollStatus.ERROR, error=err), T0, T0 + timedelta(minutes=1)
    )
    assert fails == 1
    fails = any_storage.record_failure(
        "x", err, PollResult("x", PollStatus.ERROR, error=err), T0, T0 + timedelta(minutes=2)
    )
    st = any_storage.source_state("x")
    assert (fails, st.consecutive_failures, st.last_error_code) == (2, 2, "timeout")
    assert st.next_attempt_at == T0 + timedelta(minutes=2)
    assert [p["status"] for p in any_storage.poll_history("x")] == ["error", "error"]


def test_source_troubles_are_the_states_problems_for_few_sources_or_many(any_storage: Storage):
    """``source_troubles`` (what the admin alerts read after a cycle) says what the whole
    state says of failures, last error and warning, whether it names the sources (few) or
    reads every row and keeps theirs (many)."""
    err = SourceError("timeout", "no answer in 30 s")
    for sid in ("x", "y"):
        any_storage.record_failure(sid, err, PollResult(sid, PollStatus.ERROR, error=err), T0, T0)
    any_storage.record_not_modified("y", PollResult("y", PollStatus.NOT_MODIFIED), T0, ("e", None))
    many = [f"other-{i}" for i in range(600)]  # more than a read names
    for ids in (["x", "y", "never-polled"], ["x", "y", "never-polled", *many]):
        troubles = any_storage.source_troubles(ids)
        assert set(troubles) == {"x", "y"}
        for sid, trouble in troubles.items():
            state = any_storage.source_state(sid)
            assert (
                trouble.consecutive_failures,
                trouble.last_error_code,
                trouble.last_error_message,
                trouble.warning,
            ) == (
                state.consecutive_failures,
                state.last_error_code,
                state.last_error_message,
                state.warning,
            )
        assert troubles["x"].consecutive_failures == 1
        assert troubles["x"].last_error_code == "timeout"
        assert troubles["y"].consecutive_failures == 0
    assert any_storage.source_troubles([]) == {}


def test_known_slices_read_as_sqlalchemy_reads_them(any_storage: Storage):
    """On SQLite ``known_slices`` runs its statement on the driver itself (a poll asks for
    every source it parses): the slices are what SQLAlchemy's statement reads."""
    from watcher.storage.sources import _KNOWN_SLICES

    moved = RawItem(key="c2", title="Nyhet utan datum", link="https://esf.example/c2")
    poll_into(any_storage, SRC, [CALL, moved])
    slices = any_storage.known_slices(SRC.id)
    assert set(slices) == {"c1", "c2"}
    with any_storage.engine.connect() as conn:
        found = conn.execute(_KNOWN_SLICES, {"source_id": SRC.id}).all()
    assert slices == {
        r.key: StoredSlice(r.item_id, SRC.id, r.key, r.content_hash, r.values or {}) for r in found
    }
    assert slices["c1"].values["deadlines"]
    assert any_storage.known_slices("never-polled") == {}


def test_scheduler_lock_has_one_holder(any_storage: Storage):
    ttl = timedelta(seconds=90)
    assert any_storage.acquire_lock("scheduler", "a", ttl, T0)
    assert not any_storage.acquire_lock("scheduler", "b", ttl, T0 + timedelta(seconds=30))
    assert any_storage.acquire_lock("scheduler", "a", ttl, T0 + timedelta(seconds=60))  # renew
    assert not any_storage.acquire_lock("scheduler", "b", ttl, T0 + timedelta(seconds=120))
    # a's lease expires unrenewed: b takes over
    assert any_storage.acquire_lock("scheduler", "b", ttl, T0 + timedelta(seconds=151))
    assert any_storage.lock_holder("scheduler", T0 + timedelta(seconds=152)) == "b"
    any_storage.release_lock("scheduler", "b")
    assert any_storage.lock_holder("scheduler", T0 + timedelta(seconds=153)) is None


def test_meta_and_audit(any_storage: Storage):
    any_storage.set_meta("k", "1")
    any_storage.set_meta("k", "2")
    assert any_storage.get_meta("k") == "2"
    any_storage.audit("admin", "source.edit", "esf", {"url": ["a", "b"]}, T0)
    [entry] = any_storage.audit_entries()
    assert (entry["actor"], entry["action"], entry["details"]) == (
        "admin",
        "source.edit",
        {"url": ["a", "b"]},
    )


# Every public method turns a database failure into StorageError (never a raw SQLAlchemy error).
BROKEN_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("source_state", ("x",)),
    ("source_states", ()),
    ("source_troubles", (["x"],)),
    ("known_slices", ("x",)),
    ("known_statuses", ("x",)),
    ("duplicate_candidates", ("x", ["ID-1"], [("2027-01-01", None)])),
    ("list_items", (ItemFilter(),)),
    ("count_items", (ItemFilter(),)),
    ("get_item", (1,)),
    ("get_items", ([1],)),
    ("item_history", (1,)),
    ("tag_history", (1,)),
    ("get_meta", ("k",)),
    ("set_meta", ("k", "v")),
    ("audit_entries", ()),
    ("audit", ("a", "b", "c", {}, T0)),
    ("acquire_lock", ("s", "h", timedelta(seconds=5), T0)),
    ("held_counts", ()),
    ("recent_item_counts", (T0,)),
    ("poll_history", ("x",)),
    ("set_tags_many", ({1: Classification((), relevant=True)}, T0)),
    ("release_held", ()),
    ("all_item_ids", ()),
    ("refresh_statuses", (T0,)),
]


@pytest.mark.parametrize(("method", "args"), BROKEN_CALLS, ids=[m for m, _ in BROKEN_CALLS])
def test_database_errors_come_out_as_storage_error(
    any_storage: Storage, method: str, args: tuple[Any, ...]
):
    with any_storage.engine.begin() as conn:
        for table in (
            "tags",
            "tag_changes",
            "item_changes",
            "item_sources",
            "items",
            "sources_state",
            "poll_log",
            "meta",
            "audit_log",
            "locks",
        ):
            conn.execute(
                text(
                    f"DROP TABLE {table} CASCADE"
                    if any_storage.dialect == "postgresql"
                    else f"DROP TABLE {table}"
                )
            )
    with pytest.raises(StorageError):
        getattr(any_storage, method)(*args)


def test_bad_database_url_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError):
        Storage("postgresql://nobody@127.0.0.1:1/none").ping()


def test_duplicate_index_follows_updates_links_and_deletions(any_storage: Storage):
    """This process's writes are in the index at once; others' at the next refresh."""
    ft = RawItem(
        key="T-1",
        title="Call one",
        identifier="HORIZON-AB-2027-01",
        deadlines=("2027-05-01",),
        link="https://ft/1",
    )
    first = poll_into(any_storage, OTHER, [ft])
    _, day = candidate_keys([normalise(ft, OTHER, T0)])
    assert [c.item_id for c in any_storage.duplicate_candidates("esf", [], day)] == list(
        first.new_ids
    )
    # The deadline moves: the index follows it.
    moved = RawItem(**{**ft.__dict__, "deadlines": ("2027-06-01",)})
    poll_into(any_storage, OTHER, [moved], now=T0 + timedelta(hours=1))
    assert any_storage.duplicate_candidates("esf", [], day) == []
    assert [
        c.item_id for c in any_storage.duplicate_candidates("esf", ["horizon-ab-2027-01"], [])
    ] == list(first.new_ids)
    # The source that already has it never gets it as a candidate.
    assert any_storage.duplicate_candidates("ft", ["HORIZON-AB-2027-01"], []) == []
    # A deleted item disappears from the index (another process's change: read at the next
    # refresh, which this test makes immediate).
    any_storage.candidates.refresh_interval = 0
    with any_storage.engine.begin() as conn:
        conn.execute(text("DELETE FROM items"))
    assert any_storage.duplicate_candidates("esf", ["HORIZON-AB-2027-01"], []) == []


def test_duplicate_index_keys_shared_by_several_items_and_keys_that_move(
    any_storage: Storage,
):
    """The index keeps one id per key until a second item shares it (most keys name one
    item): two calls on one deadline day with the same numbers are both found, and each
    still is after the other moves away, and found only under its new day."""
    a = RawItem(key="a", title="Utlysning 7", deadlines=("2027-05-01",), link="https://x/a")
    b = RawItem(key="b", title="Utlysning 7", deadlines=("2027-05-01",), link="https://x/b")
    ids = list(poll_into(any_storage, OTHER, [a, b]).new_ids)  # one source: two items
    assert len(ids) == 2, ids
    _, may = candidate_keys([normalise(a, OTHER, T0)])
    found = any_storage.duplicate_candidates("third", [], may)
    assert sorted(c.item_id for c in found) == sorted(ids)
    moved = RawItem(**{**b.__dict__, "deadlines": ("2027-06-01",)})
    poll_into(any_storage, OTHER, [a, moved], now=T0 + timedelta(hours=1))
    assert [c.item_id for c in any_storage.duplicate_candidates("third", [], may)] == ids[:1]
    _, june = candidate_keys([normalise(moved, OTHER, T0)])
    assert [c.item_id for c in any_storage.duplicate_candidates("third", [], june)] == ids[1:]


def test_duplicate_index_keeps_a_titles_numbers_in_order_and_shares_nothing_wrongly(
    any_storage: Storage,
):
    """A title's numbers, kept in the index as one key, come back as the candidate's
    numbers in their order; a title with other numbers on the same day is not a
    candidate, one without numbers is; items of one source on one day each keep their own
    sources when another source links one of them."""
    two = RawItem(
        key="2", title="Steg 2 av utlysning 2027", deadlines=("2027-05-01",), link="https://x/2"
    )
    three = RawItem(
        key="3", title="Steg 3 av utlysning 2027", deadlines=("2027-05-01",), link="https://x/3"
    )
    plain = RawItem(
        key="p", title="Utlysning om skolor", deadlines=("2027-05-01",), link="https://x/p"
    )
    ids = dict(zip("23p", poll_into(any_storage, OTHER, [two, three, plain]).new_ids, strict=True))
    _, may = candidate_keys([normalise(two, OTHER, T0)])
    found = {c.item_id: c for c in any_storage.duplicate_candidates("third", [], may)}
    assert sorted(found) == sorted([ids["2"], ids["p"]])
    assert found[ids["2"]].numbers == ("2", "2027") and found[ids["p"]].numbers == ()
    again = RawItem(
        key="again", title="Steg 2 av utlysning 2027", deadlines=("2027-05-01",), link="https://x/2"
    )
    poll_into(any_storage, SRC, [again])  # the same call from a second source: merged
    by_id = {c.item_id: c for c in any_storage.duplicate_candidates("third", [], may)}
    assert by_id[ids["2"]].source_ids == {OTHER.id, SRC.id}
    assert by_id[ids["p"]].source_ids == {OTHER.id}


def test_duplicate_index_entries_share_their_tuples_and_drop_those_left_behind() -> None:
    """The index shares one tuple per set of deadline days or sources among its entries
    (most items have one source and one day), whichever order the sources linked in,
    and does not keep the tuples no entry holds any more: here 200 items whose deadlines
    move 25 times, each time to a day of their own, as 25 sources link them."""
    from datetime import date

    from watcher.storage.candidates import CandidateCache

    cache = CandidateCache()
    for n in range(200):
        cache.note("s1", [(n, None, f"Utlysning {n}", ["2027-01-01"])])
    cache.note("s2", [], linked=[0])
    cache.note("s3", [], linked=[0, 1])
    cache.note("s2", [], linked=[1])
    entries = cache._entries  # what the entries hold is the point here
    assert entries[5].days is entries[6].days and entries[5].sources is entries[6].sources
    assert entries[0].sources is entries[1].sources
    assert entries[0].sources == ("s1", "s2", "s3")
    made = 0
    for r in range(25):
        days = [(date(2028, 1, 1) + timedelta(days=r * 200 + n)).isoformat() for n in range(200)]
        cache.note(f"s{r}", [(n, None, f"Utlysning {n}", [days[n]]) for n in range(200)])
        made += 200
    assert entries[7].sources == tuple(sorted(f"s{r}" for r in range(25)))
    assert entries[7].days == ((date(2028, 1, 1) + timedelta(days=24 * 200 + 7)).isoformat(),)
    live = {e.days for e in entries.values()} | {e.sources for e in entries.values()}
    assert len(live) == 201  # each item's day, and the 25 sources every item has now
    assert made > 4 * 1024 and len(cache._tuples) <= 1024  # dropped, sweep after sweep


def test_search_is_unicode_case_insensitive(any_storage: Storage):
    poll_into(
        any_storage, SRC, [RawItem(key="x", title="ÄLDREOMSORG i Öckerö", link="https://x/1")]
    )
    assert [i.title for i in any_storage.list_items(ItemFilter(text="äldreomsorg öckerö"))] == [
        "ÄLDREOMSORG i Öckerö"
    ]
    assert any_storage.list_items(ItemFilter(text="åmål")) == []


def test_migration_backfills_search_text(tmp_path):
    from alembic import command

    from watcher.storage import base

    storage = Storage(f"sqlite:///{tmp_path / 'old.db'}")
    with storage.engine.begin() as conn:
        command.upgrade(base.alembic_config(conn), "0001")
        conn.execute(
            text(
                "INSERT INTO items (uid, source_id, title, link, summary, language, kind, deadlines, "
                "regions, topics, content_hash, relevant, first_seen, last_seen, baseline, held, extra) "
                "VALUES ('s:1', 's', 'Utlysning FÖR Skolor', '', '', 'sv', 'call', '[]', '[]', '[]', 'h', 1, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 0, 0, '{}')"
            )
        )
    storage.upgrade()
    assert [i.title for i in storage.list_items(ItemFilter(text="för skolor"))] == [
        "Utlysning FÖR Skolor"
    ]
    storage.close()


def test_duplicate_index_sees_other_processes_writes_after_a_refresh(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    service, cli = Storage(url, candidate_refresh=0), Storage(url)
    service.upgrade()
    poll_into(
        cli,
        OTHER,
        [
            RawItem(
                key="T-9", title="Call nine", identifier="HORIZON-ZZ-2027-09", link="https://ft/9"
            )
        ],
    )
    assert [
        c.identifier for c in service.duplicate_candidates("esf", ["HORIZON-ZZ-2027-09"], [])
    ] == ["HORIZON-ZZ-2027-09"]
    service.close()
    cli.close()


HORIZON_CALL = RawItem(
    key="HORIZON-CL2-2027-TRANSFORMATIONS-01",
    title="Social innovation for inclusive cities",
    link="https://ec.europa.eu/x/HORIZON-CL2-2027-TRANSFORMATIONS-01",
    identifier="HORIZON-CL2-2027-TRANSFORMATIONS-01",
    kind="call",
    status="open",
    deadlines=("2027-02-10T17:00:00+01:00",),
    budget="EUR 10 000 000",
    programme="Horizon Europe",
)


def test_a_secondary_source_never_rewrites_the_call(any_storage: Storage):
    first = poll_into(any_storage, OTHER, [HORIZON_CALL])
    news = RawItem(
        key="https://vinnova.example/1",
        title="Ny utlysning: HORIZON-CL2-2027-TRANSFORMATIONS-01",
        link="https://vinnova.example/1",
        summary="Kommuner kan söka.",
    )
    poll_into(any_storage, SRC, [news])
    changed = RawItem(**{**news.__dict__, "summary": "Kommuner kan söka. Ny text."})
    out = poll_into(any_storage, SRC, [changed], now=T0 + timedelta(hours=1))
    assert out.updated_ids == first.new_ids
    item = any_storage.get_item(first.new_ids[0])
    assert item is not None
    assert (item.title, item.budget, item.status, item.identifier) == (
        "Social innovation for inclusive cities",
        "EUR 10 000 000",
        "open",
        "HORIZON-CL2-2027-TRANSFORMATIONS-01",
    )
    assert item.changed_at is None  # the news page's edit is history, not news
    assert [h.kind for h in any_storage.item_history(item.id)] == ["new", "merged", "updated"]


def test_two_entries_of_one_source_naming_one_call(any_storage: Storage):
    first = poll_into(any_storage, OTHER, [HORIZON_CALL])
    a = RawItem(
        key="n/1", title="Ny utlysning: HORIZON-CL2-2027-TRANSFORMATIONS-01", link="https://n/1"
    )
    b = RawItem(
        key="n/2", title="Webbinarium om HORIZON-CL2-2027-TRANSFORMATIONS-01", link="https://n/2"
    )
    out = poll_into(any_storage, SRC, [a, b])
    assert out.merged_ids == first.new_ids and len(out.new_ids) == 1  # one link per call
    b2 = RawItem(**{**b.__dict__, "summary": "Anmäl dig senast fredag."})
    a2 = RawItem(**{**a.__dict__, "summary": "Kommuner kan söka."})
    out = poll_into(any_storage, SRC, [a2, b2], now=T0 + timedelta(hours=1))  # no IntegrityError
    assert len(out.updated_ids) == 2
    keys = sorted(
        s.key
        for it in any_storage.list_items(ItemFilter(source="esf"))
        for s in it.sources
        if s.source_id == "esf"
    )
    assert keys == ["n/1", "n/2"]


@pytest.fixture
def pg_storage(tmp_path: Path) -> Iterator[Storage]:
    """PostgreSQL only: what this tests cannot happen with SQLite's single writer."""
    yield from _storage_on("postgresql", tmp_path, Storage.upgrade)


def test_the_duplicate_index_finds_an_item_whose_id_committed_late(pg_storage: Storage):
    """PostgreSQL hands out ids before commit: a transaction holding a lower id commits
    after the index has read a higher one. The index still finds its item."""
    storage = pg_storage
    storage.candidates.refresh_interval = 0  # read the database on every lookup
    late = items(SRC, RawItem(key="L", title="Late call", identifier="HORIZON-LATE-2027-01"))[0]
    conn = storage.engine.connect()
    tx = conn.begin()
    conn.execute(
        insert(items_table).values(
            uid="esf:L", source_id="esf", first_seen=T0, last_seen=T0, **item_values(late)
        )
    )
    early = RawItem(key="E", title="Early call", identifier="HORIZON-EARLY-2027-01")
    many = [RawItem(key=f"M{n}", title=f"Call {n}", link=f"https://m/{n}") for n in range(1200)]
    poll_into(storage, OTHER, [early, *many])  # higher ids, more than a thousand, committed first
    assert storage.duplicate_candidates("x", ["HORIZON-EARLY-2027-01"], [])
    tx.commit()
    conn.close()
    found = storage.duplicate_candidates("x", ["HORIZON-LATE-2027-01"], [])
    assert [c.identifier for c in found] == ["HORIZON-LATE-2027-01"]


# -- errors with names ---------------------------------------------------------------------


def test_a_database_locked_past_the_busy_timeout_is_db_busy_in_plain_words(tmp_path) -> None:
    """Issue 12.10: a locked database came out as ``storage_error`` with the driver's text
    (``(sqlite3.OperationalError) database is locked``)."""
    import sqlite3

    path = tmp_path / "busy.db"
    storage = Storage(f"sqlite:///{path}", busy_timeout=0.05)
    storage.upgrade()
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError) as caught:
            storage.set_meta("k", "v")
    finally:
        holder.rollback()
        holder.close()
        storage.close()
    assert caught.value.code == "db_busy"
    assert "sqlite3" not in str(caught.value) and "OperationalError" not in str(caught.value)
    assert "database is locked" in caught.value.detail  # the driver's words, for the log


def test_a_database_from_a_newer_version_is_refused_with_what_to_do(tmp_path) -> None:
    """Issue 12.10: an unknown revision made ``watcher poll`` exit 1 with Alembic's
    traceback."""
    from click.testing import CliRunner

    from tests.conftest import write_config
    from watcher.cli import main

    db = tmp_path / "newer.db"
    storage = Storage(f"sqlite:///{db}")
    storage.upgrade()
    with storage.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    storage.close()
    cfg = write_config(tmp_path / "config.toml", {"watcher": {"database_url": f"sqlite:///{db}"}})
    res = CliRunner().invoke(main, ["--config", str(cfg), "poll"])
    assert res.exit_code == 2
    assert "revision '0999'" in res.output and "newer version" in res.output
    assert ("Traceback" not in res.output and res.exception is None) or isinstance(
        res.exception, SystemExit
    )


def test_poll_locks_are_taken_once_and_expire(any_storage: Storage) -> None:
    names = {"poll:a", "poll:b"}
    ttl = timedelta(minutes=15)
    assert any_storage.acquire_locks(names, "one", ttl, T0) == names
    assert any_storage.acquire_locks({"poll:b", "poll:c"}, "two", ttl, T0) == {"poll:c"}
    # A crashed holder's lock is taken over once it expired.
    later = T0 + ttl + timedelta(seconds=1)
    assert any_storage.acquire_locks({"poll:a"}, "two", ttl, later) == {"poll:a"}
    any_storage.release_locks(names, "one")  # "one" holds only b now
    assert any_storage.acquire_locks(names, "three", ttl, later) == {"poll:b"}


def test_a_record_another_process_stored_first_is_skipped_not_doubled(any_storage: Storage):
    """Two polls of one source decided at once (another process got there first): the later
    write skips the records whose keys are taken, stores the rest, and fails nothing."""
    first = RawItem(key="k1", title="Utlysning ett", link="https://esf.example/k1")
    second = RawItem(key="k2", title="Utlysning två", link="https://esf.example/k2")
    its = items(SRC, first, second)
    intents = decide(its, {}, [])  # decided before the other write
    stored = poll_into(any_storage, SRC, [first])  # the other process
    result = PollResult(SRC.id, PollStatus.OK, parsed=2)
    outcome = any_storage.apply(SRC.id, intents, result, T0)
    assert len(stored.new_ids) == 1 and len(outcome.new_ids) == 1
    assert outcome.new_ids != stored.new_ids
    assert sorted(i.title for i in any_storage.list_items(ItemFilter())) == [
        "Utlysning ett",
        "Utlysning två",
    ]
    assert len(any_storage.item_history(stored.new_ids[0])) == 1  # one "new", not two


def test_reads_belong_on_the_event_loop_only_on_sqlite_in_wal_mode(
    any_storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reads_here``: on SQLite in WAL mode, where a read never waits for a writer, an
    event loop runs reads itself; on PostgreSQL, and on a SQLite file that is not in WAL
    mode (a reader there waits for a writer, up to the busy timeout), they go to a
    thread."""
    from watcher.storage import base

    assert any_storage.reads_here is (any_storage.dialect == "sqlite")
    # A file system where WAL cannot be used: the journal stays a rollback journal.
    monkeypatch.setattr(base, "_wal", lambda cur: cur.execute("PRAGMA journal_mode=DELETE"))
    plain = Storage(f"sqlite:///{tmp_path / 'no-wal.db'}")
    try:
        plain.upgrade()
        assert plain.reads_here is False
    finally:
        plain.close()


def test_a_plain_list_reads_few_rows_and_a_search_or_a_scan_does_not() -> None:
    """``ItemFilter.reads_few_rows``: the newest first, or by deadline from a day on, walk
    their index a page deep; a search, a filter that scans or joins, a date range over
    the newest, or a deep page read many rows (``Storage.reads_here`` sends those to a
    thread)."""
    few = [
        ItemFilter(relevant=True, limit=50),
        ItemFilter(relevant=None, include_held=False, limit=50, offset=1950),
        ItemFilter(relevant=True, order="deadline", deadline_from=T0, limit=50),
    ]
    many = [
        ItemFilter(text="kompetens"),
        ItemFilter(programme="ESF"),
        ItemFilter(kind="call"),
        ItemFilter(area="fonder-program"),
        ItemFilter(theme="arbetsmarknad"),
        ItemFilter(status="open"),
        ItemFilter(source="esf"),
        ItemFilter(since=T0),
        ItemFilter(deadline_from=T0, deadline_to=T0 + timedelta(days=30)),
        ItemFilter(order="deadline", deadline_from=T0, deadline_to=T0 + timedelta(days=30)),
        ItemFilter(order="relevance"),
        ItemFilter(limit=50, offset=10_000),
    ]
    assert [f.reads_few_rows for f in few] == [True] * len(few)
    assert [f.reads_few_rows for f in many] == [False] * len(many)
