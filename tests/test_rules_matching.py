"""Swedish-aware term matching: prefixes, compounds, acronyms, phrases, weights."""

from __future__ import annotations

import pytest

from rules.matching import Matcher, Mode, TermSyntaxError, parse_term


def found(term: str, text: str) -> str | None:
    """The matched text of ``term`` in ``text``, or None."""
    pattern, _ = parse_term(term)
    hits = Matcher([pattern]).find(text)
    return hits[0].matched if hits else None


@pytest.mark.parametrize(
    ("term", "text", "matched"),
    [
        (
            "kompetensförsörjning",
            "Nya kompetensförsörjningsprojekt i regionen",
            "kompetensförsörjningsprojekt",
        ),
        ("kompetensförsörjning", "Kompetensförsörjningen brister", "Kompetensförsörjningen"),
        ("arbetsmarknad", "arbetsmarknadsinsatser för unga", "arbetsmarknadsinsatser"),
        ("*fond", "Europeiska socialfonden och regionalfonden", "socialfonden"),
        ("*arbetsmarknad", "den regionala ungdomsarbetsmarknaden", "ungdomsarbetsmarknaden"),
        ("EU-projekt", "Tre nya EU-projektet startar", "EU-projektet"),
        ("EU-projekt", "ett EU projekt", "EU projekt"),
        ("ESF", "ESF-rådet utlyser", "ESF"),
        ("ESF", "ESF:s nya program", "ESF"),
        ("ESF+", "inom ESF+ 2021–2027", "ESF+"),
        ("SME", "support for SMEs", "SMEs"),
        ("LIFE", "The LIFE programme", "LIFE"),
        ("CoR", "the CoR plenary", "CoR"),
        ("call for proposals", "Calls for proposals are open", "Calls for proposals"),
        ("call for proposals", "call - for proposals", "call - for proposals"),
        ("future of =Europe", "the future of Europe", "future of Europe"),
        ("2028–2034", "budget 2028-2034", "2028-2034"),
        ("=kurs", "en kurs i projektledning", "kurs"),
        ("eu", "EU och kommunerna", "EU"),
        ("Göteborgs Stad", "GÖTEBORGS STAD informerar", "GÖTEBORGS STAD"),
    ],
)
def test_matches(term: str, text: str, matched: str) -> None:
    assert found(term, text) == matched


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("LIFE", "quality of life and lifelong learning"),
        ("CERV", "Award Ceremony"),
        ("AMIF", "amifications"),
        ("ESF", "ESFJ"),
        ("ESF+", "ESF alone"),
        ("=kurs", "kursen och kursiv stil"),
        ("kompetensförsörjning", "personalkompetensförsörjning"),
        ("eu", "europe"),
        ("call for proposals", "the call. For proposals see below"),
        ("call for proposals", "call, for proposals"),
        ("future of =Europe", "the future of European integration"),
        ("*fond", "ett fint foto"),
    ],
)
def test_does_not_match(term: str, text: str) -> None:
    assert found(term, text) is None


def test_weights_and_modes() -> None:
    p, w = parse_term("call for evidence^-2")
    assert w == -2.0
    assert [s.text for s in p.words] == ["call", "for", "evidence"]
    assert [s.mode for s in p.words] == [Mode.PREFIX, Mode.EXACT, Mode.PREFIX]
    p, w = parse_term("webinar^0.5")
    assert w == 0.5 and p.source == "webinar"
    p, _ = parse_term("ESF")
    assert p.words[0].case == "ESF" and p.words[0].mode is Mode.EXACT


@pytest.mark.parametrize(
    "term", ["", "   ", "^2", "foo^x", "foo^0", "arbets[mk]arknad", "a|b", "=", "*", "foo$"]
)
def test_bad_terms_are_refused(term: str) -> None:
    with pytest.raises(TermSyntaxError):
        parse_term(term)


def test_all_overlapping_terms_are_reported() -> None:
    terms = ["arbetsmarknad", "arbetsmarknadspolitik", "*politik", "=arbetsmarknadspolitiken"]
    patterns = [parse_term(t)[0] for t in terms]
    hits = Matcher(patterns).find("Om arbetsmarknadspolitiken i Sverige")
    assert sorted(hits) == [0, 1, 2, 3]
    assert {h.matched for h in hits.values()} == {"arbetsmarknadspolitiken"}


def test_first_occurrence_and_word_index() -> None:
    p, _ = parse_term("utlysning")
    hit = Matcher([p]).find("Info. Utlysningen öppnar; utlysningen stänger")[0]
    assert (hit.matched, hit.word, hit.words) == ("Utlysningen", 1, 1)
    p, _ = parse_term("call for proposals")
    hit = Matcher([p]).find("New: Calls for proposals 2026")[0]
    assert (hit.matched, hit.word, hit.words) == ("Calls for proposals", 1, 3)


def test_characters_that_change_length_when_lowercased() -> None:
    patterns = [parse_term("klimat")[0], parse_term("call for proposals")[0]]
    text = "İstanbul: klimatet och call for proposals"  # "İ".lower() is two code points
    hits = Matcher(patterns).find(text)
    assert hits[0].matched == "klimatet"
    assert hits[1].matched == "call for proposals"


def test_empty_matcher_and_text() -> None:
    assert Matcher([]).find("anything at all") == {}
    assert Matcher([parse_term("klimat")[0]]).find("") == {}


def test_word_cache_is_bounded_and_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import rules.matching as matching

    patterns = [parse_term(t)[0] for t in ("klimat", "*fond", "ESF", "call for proposals")]
    text = "ESF och socialfonden: call for proposals om klimatet"
    expected = Matcher(patterns).find(text)
    monkeypatch.setattr(matching, "_CACHE_SIZE", 3)
    m = Matcher(patterns)
    for _ in range(3):
        assert m.find(text) == expected
        assert len(m._cache) <= 3
