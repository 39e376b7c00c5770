"""The tracker's pure decision (``track.decide``) and the layout check, value in and value out:
no database, no network."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tests.web_builders import item as plain_item
from watcher.pipeline.layout import check_layout
from watcher.pipeline.track import CandidateIndex, candidate_keys, decide, find_duplicate
from watcher.text import identifier_tokens
from watcher.types import (
    DupCandidate,
    Incomplete,
    Item,
    Linked,
    NewItem,
    SourceState,
    Status,
    StoredSlice,
    Unchanged,
    Updated,
    tracked_values,
)

DEADLINE = datetime(2027, 3, 16, 22, 59, 59, tzinfo=UTC)


def item(key: str, title: str, source: str = "esf", **kw: Any) -> Item:
    """An item of ``source`` whose hash follows its tracked values (unless given)."""
    kw.setdefault("link", f"https://{source}.example/{key}")
    out = plain_item(key, title, source, **kw)
    hashed = kw.get("content_hash") or repr(sorted(tracked_values(out).items()))
    return replace(out, content_hash=hashed)


def stored(it: Item, item_id: int, key: str | None = None) -> StoredSlice:
    return StoredSlice(item_id, it.source_id, key or it.key, it.content_hash, tracked_values(it))


def candidate(item_id: int, title: str, source: str = "ft", **kw: Any) -> DupCandidate:
    """A stored item of another source, as the duplicate index gives it: an item without
    an identifier is found by the identifiers its title names."""
    identifier = kw.get("identifier")
    return DupCandidate(
        item_id,
        frozenset({source}),
        identifier,
        title,
        frozenset(kw.get("days", ())),
        named=frozenset() if identifier else frozenset(identifier_tokens(title)),
    )


# -- one source's own items ------------------------------------------------------------------


def test_a_new_key_is_a_new_item() -> None:
    [intent] = decide([item("a", "Utlysning")], {})
    assert intent == NewItem(intent.item)


def test_the_same_entry_again_is_unchanged() -> None:
    it = item("a", "Utlysning")
    assert decide([it], {"a": stored(it, 7)}) == [Unchanged(it, 7)]


def test_a_changed_entry_is_updated_with_its_field_changes() -> None:
    old = item("a", "Utlysning", deadlines=(DEADLINE,))
    new = item("a", "Utlysning (förlängd)", deadlines=(datetime(2027, 4, 1, tzinfo=UTC),))
    [intent] = decide([new], {"a": stored(old, 7)})
    assert isinstance(intent, Updated) and intent.item_id == 7
    assert [c.field for c in intent.changes] == ["title", "deadlines"]
    assert intent.changes[0].old == "Utlysning"


def test_a_new_hash_without_a_tracked_change_is_unchanged() -> None:
    old = item("a", "Utlysning", content_hash="old")
    new = item("a", "Utlysning", content_hash="new")
    assert decide([new], {"a": stored(old, 7)}) == [Unchanged(new, 7)]


def test_guid_churn_is_matched_by_link_and_title() -> None:
    old = item("guid-1", "Utlysning", link="https://esf.example/u")
    new = item("guid-2", "Utlysning", link="https://esf.example/u")
    [intent] = decide([new], {"guid-1": stored(old, 7)})
    assert intent == Unchanged(new, 7, stored_key="guid-1")


def test_a_repeated_key_gives_one_intent() -> None:
    a, b = item("a", "Första"), item("a", "Andra")
    [intent] = decide([a, b], {})
    assert intent.item is a


# -- other sources' calls -------------------------------------------------------------------


def test_the_same_identifier_from_another_source_is_linked() -> None:
    it = item("x", "Skills call", identifier="ESF-2027-KOMP-01")
    [intent] = decide([it], {}, [candidate(3, "Kompetens", identifier="ESF-2027-KOMP-01")])
    assert intent == Linked(it, 3, "same identifier ESF-2027-KOMP-01")


def test_two_identifiers_are_two_calls_whatever_the_titles() -> None:
    it = item("x", "Kompetens i Västsverige", identifier="ESF-2027-KOMP-02", deadlines=(DEADLINE,))
    cand = candidate(
        3, "Kompetens i Västsverige", identifier="ESF-2027-KOMP-01", days=["2027-03-16"]
    )
    assert decide([it], {}, [cand]) == [NewItem(it)]


def test_a_close_title_and_the_same_deadline_day_is_the_same_call() -> None:
    it = item("x", "Utlysning kompetensförsörjning i Västsverige 2027", deadlines=(DEADLINE,))
    cand = candidate(3, "Kompetensförsörjning i Västsverige 2027", days=["2027-03-16"])
    [intent] = decide([it], {}, [cand])
    assert isinstance(intent, Linked) and intent.item_id == 3
    assert intent.reason.startswith("close title")


def test_different_numbers_are_different_calls() -> None:
    it = item("x", "Kompetensförsörjning, utlysning 3", deadlines=(DEADLINE,))
    cand = candidate(3, "Kompetensförsörjning, utlysning 5", days=["2027-03-16"])
    assert decide([it], {}, [cand]) == [NewItem(it)]


def test_a_call_takes_over_a_news_item_that_named_it() -> None:
    it = item("c", "Clean energy transition", source="ft", identifier="HORIZON-CL5-2027-01-D3-02")
    news = candidate(3, "Nu öppnar HORIZON-CL5-2027-01-D3-02", source="nyheter")
    [intent] = decide([it], {}, [news])
    assert isinstance(intent, Linked) and intent.takes_over and intent.item_id == 3


def test_a_source_links_one_entry_per_stored_call() -> None:
    a = item("a", "Kompetens", identifier="ESF-2027-KOMP-01")
    b = item("b", "Kompetens igen", identifier="ESF-2027-KOMP-01")
    cand = candidate(3, "Kompetens", identifier="ESF-2027-KOMP-01")
    first, second = decide([a, b], {}, [cand])
    assert isinstance(first, Linked) and second == NewItem(b)


def test_candidates_of_the_same_source_are_never_matched() -> None:
    it = item("x", "Kompetens", identifier="ESF-2027-KOMP-01")
    cand = candidate(3, "Kompetens", source="esf", identifier="ESF-2027-KOMP-01")
    assert decide([it], {}, [cand]) == [NewItem(it)]


def test_candidate_keys_name_identifiers_in_the_text_and_deadlines() -> None:
    it = item(
        "x", "Om HORIZON-CL5-2027-01-D3-02", identifier="ESF-2027-KOMP-01", deadlines=(DEADLINE,)
    )
    identifiers, keys = candidate_keys([it])
    assert identifiers == ["ESF-2027-KOMP-01", "HORIZON-CL5-2027-01-D3-02"]
    # the numbers of the title as normalised (the identifier's parts among them)
    assert keys == [(DEADLINE.astimezone(UTC).date().isoformat(), "2027 01 02")]


def test_a_title_with_numbers_is_looked_up_with_them() -> None:
    """A day on which hundreds of calls close is not read whole: a title with numbers only
    meets titles with the same numbers or none ("Call 3" is never "Call 5")."""
    it = item("x", "Utlysning 3 inom omgång 12", deadlines=(DEADLINE,))
    day = DEADLINE.astimezone(UTC).date().isoformat()
    assert candidate_keys([it])[1] == [(day, "3 12")]
    same = candidate(1, "Utlysning 3 inom omgång 12", days=(day,))
    other = candidate(2, "Utlysning 5 inom omgång 12", days=(day,))
    bare = candidate(3, "Utlysning inom omgången", days=(day,))
    index = CandidateIndex([same, other, bare])
    assert sorted(c.item_id for c in index.for_item(it)) == [1, 3]
    assert find_duplicate(it, index) == (same, "close title (100%) and the same deadline")


def test_the_same_numbers_in_another_order_are_another_call() -> None:
    """ "Utlysning 14 från källa 0" and "Utlysning 0 från källa 14" have the same words and
    the same deadline, and are two calls."""
    day = DEADLINE.astimezone(UTC).date().isoformat()
    it = item("x", "Utlysning 14 från källa 0", deadlines=(DEADLINE,))
    other = candidate(1, "Utlysning 0 från källa 14", days=(day,))
    assert find_duplicate(it, [other]) is None
    assert find_duplicate(it, CandidateIndex([other])) is None


def test_of_two_equal_candidates_the_earlier_stored_one_is_the_duplicate() -> None:
    """Two stored calls an item could equally be (the same title and deadline; or naming
    its identifier): the item is the earlier one, whatever order the candidates come in,
    so that the same data merges the same way in every process."""
    day = DEADLINE.astimezone(UTC).date().isoformat()
    it = item("x", "Utlysning om kompetens", deadlines=(DEADLINE,))
    first = candidate(4, "Utlysning om kompetens", days=(day,))
    second = candidate(9, "Utlysning om kompetens", source="other", days=(day,))
    for given in ([first, second], [second, first]):
        assert find_duplicate(it, given) == (first, "close title (100%) and the same deadline")
        assert find_duplicate(it, CandidateIndex(given))[0] is first  # type: ignore[index]
    named = item("y", "Utlysning om batterier", identifier="HORIZON-CL5-2027-D3-01")
    a = candidate(3, "Om HORIZON-CL5-2027-D3-01")
    b = candidate(7, "Nyhet: HORIZON-CL5-2027-D3-01", source="other")
    for given in ([a, b], [b, a]):
        found = find_duplicate(named, given)
        assert found == (a, "identifier HORIZON-CL5-2027-D3-01 named in the title")


# -- layout ----------------------------------------------------------------------------------


def test_a_source_that_suddenly_gives_nothing_warns() -> None:
    state = SourceState("esf", last_parsed=12, field_profile={"link": 1.0})
    check = check_layout(state, [], "rss")
    assert check.warnings == ("layout changed? the source gave no items (last time 12)",)
    assert check.profile == {"link": 1.0}  # the old profile is kept to compare with next time


def test_a_filtered_source_may_honestly_give_nothing() -> None:
    state = SourceState("esf", last_parsed=12)
    assert check_layout(state, [], "rss", filtered=True).warnings == ()
    assert check_layout(state, [], "rss", skipped=3).warnings == ()


def test_an_html_source_that_never_found_anything_points_at_the_selectors() -> None:
    [warning] = check_layout(SourceState("x"), [], "html").warnings
    assert "CSS selectors" in warning


def test_losing_a_field_every_item_had_warns() -> None:
    state = SourceState("esf", last_parsed=3, field_profile={"deadlines": 1.0, "link": 1.0})
    items = [item(str(n), f"Utlysning {n}") for n in range(3)]
    check = check_layout(state, items, "rss")
    assert check.warnings == ("layout changed? items no longer have deadlines",)
    assert check.profile["link"] == 1.0 and check.profile["deadlines"] == 0.0


def test_a_steady_source_gives_no_warning() -> None:
    state = SourceState("esf", last_parsed=3, field_profile={"link": 1.0})
    items = [item(str(n), f"Utlysning {n}") for n in range(3)]
    assert check_layout(state, items, "rss").warnings == ()


# -- items a source could not complete -------------------------------------------------------


def test_unknown_fields_are_what_the_source_said_last_not_a_removal() -> None:
    known = item("a", "Utlysning", status=Status.OPEN, deadlines=(DEADLINE,))
    failed = item(
        "a",
        "Utlysning",
        incomplete=Incomplete("detail page failed: http_503", ("status", "deadlines"), "http_503"),
    )
    [intent] = decide([failed], {"a": stored(known, 7)})
    assert isinstance(intent, Unchanged)
    assert intent.item.status == Status.OPEN and intent.item.deadlines == (DEADLINE,)
    assert intent.item.incomplete is not None and intent.item.incomplete.missing == ()


def test_a_record_stored_incomplete_is_rewritten_once_its_source_completes_it() -> None:
    failed = item("a", "Utlysning", incomplete=Incomplete("failed", ("deadlines",), "timeout"))
    slice_ = stored(failed, 7)
    slice_ = StoredSlice(7, "esf", "a", slice_.content_hash, {**slice_.values, "incomplete": True})
    complete = item("a", "Utlysning", deadlines=(DEADLINE,))
    [intent] = decide([complete], {"a": slice_})
    assert isinstance(intent, Updated) and [c.field for c in intent.changes] == ["deadlines"]
    same = item("a", "Utlysning")  # complete now, and it truly has no deadline
    [intent] = decide([same], {"a": slice_})
    assert isinstance(intent, Updated) and intent.changes == ()


# -- identifiers keep their case, and match in any case ---------------------------------------

MIXED = "HORIZON-MISS-2027-05-SOIL-01-two-stage"  # as the portal writes it


def test_an_identifier_is_stored_as_the_source_writes_it() -> None:
    from tests.builders import OTHER
    from watcher.pipeline.normalise import normalise
    from watcher.types import RawItem

    raw = RawItem(key=MIXED, title="Living labs", identifier=f" {MIXED} ")
    assert normalise(raw, OTHER, DEADLINE).identifier == MIXED


def test_a_mixed_case_identifier_matches_the_same_identifier_in_upper_case() -> None:
    it = item("x", "Living labs", source="ft", identifier=MIXED)
    cand = candidate(3, "Living labs", source="ft2", identifier=MIXED.upper())
    [intent] = decide([it], {}, [cand])
    assert intent == Linked(it, 3, f"same identifier {MIXED}")
    # and the other way round: the stored one in mixed case, the new one in upper case
    upper = item("y", "Living labs", source="ft2", identifier=MIXED.upper())
    [back] = decide([upper], {}, [candidate(4, "Living labs", identifier=MIXED)])
    assert isinstance(back, Linked) and back.item_id == 4


def test_a_mixed_case_identifier_matches_a_news_title_naming_it() -> None:
    # A call arriving after a news item that named it (in upper case): the call takes over.
    it = item("c", "Living labs", source="ft", identifier=MIXED)
    news = candidate(3, f"Nu öppnar {MIXED.upper()}", source="nyheter")
    [intent] = decide([it], {}, [news])
    assert isinstance(intent, Linked) and intent.takes_over and intent.item_id == 3
    # A news item arriving after the call, naming it in lower case.
    later = item("n", f"Webbinarium om {MIXED.lower()}", source="nyheter")
    [linked] = decide([later], {}, [candidate(4, "Living labs", identifier=MIXED)])
    assert isinstance(linked, Linked) and linked.item_id == 4
    assert linked.reason == f"identifier {MIXED} named in the text"


def test_candidate_keys_compare_identifiers_in_one_case() -> None:
    it = item("x", f"Om {MIXED}", identifier=MIXED)
    identifiers, _ = candidate_keys([it])
    assert identifiers == [MIXED.upper()]
