"""The engine: scores, field scopes, conditions, evidence, relevance, source defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules import PlainItem, RuleSet, classify, load_rules, rules_from_text
from rules.engine import explain
from watcher.types import Evidence, Item, Kind, Status

RULES = """
[[rule]]
id = "klimat"
theme = "samhallsbyggnad"
terms = ["klimat", "energi"]
min_score = 2

[[rule]]
id = "utlysning"
area = "fonder-program"
terms = ["utlysning", "call for proposals"]
exclude = ["partnersök"]

[[rule]]
id = "horizon-call"
areas = ["fonder-program", "forhandsinfo"]
when = { programmes = ["Horizon Europe", "HORIZON"], statuses = ["forthcoming"] }

[[rule]]
id = "consultation"
area = "paverkan"
when = { kinds = ["consultation"] }
unless = { sources = ["noisy-source"] }

[[rule]]
id = "gr"
area = "natverkssamverkan"
terms = ["EU-hösten"]
requires = ["GR", "Göteborgs Stad"]

[[rule]]
id = "esf-title-only"
theme = "arbetsmarknad"
terms = ["ESF"]
fields = { title = 1 }

[[relevance]]
id = "defence"
terms = ["defence"]
exclude = ["civil defence"]
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return rules_from_text(RULES)


def test_title_counts_more_than_summary(rules: RuleSet) -> None:
    # min_score 2: one term in the title is enough, one in the summary is not.
    assert classify(PlainItem("Klimatanpassning"), rules).ids("theme") == {"samhallsbyggnad"}
    assert classify(PlainItem("Nyheter", "om klimatet"), rules).ids("theme") == frozenset()
    # Two different terms in the summary reach it too.
    assert classify(PlainItem("Nyheter", "klimat och energi"), rules).ids("theme") == {
        "samhallsbyggnad"
    }
    # The same term twice is still one term.
    assert classify(PlainItem("Nyheter", "klimat, klimat"), rules).ids("theme") == frozenset()


def test_tags_carry_rule_and_evidence(rules: RuleSet) -> None:
    result = classify(PlainItem("Ny utlysning", "Klimatsmarta lösningar och energi"), rules)
    assert result.relevant
    by_tag = {t.tag: t for t in result.tags}
    assert by_tag["fonder-program"].rule_id == "utlysning"
    assert by_tag["fonder-program"].evidence == (Evidence("title", "utlysning"),)
    assert by_tag["samhallsbyggnad"].evidence == (
        Evidence("summary", "Klimatsmarta"),
        Evidence("summary", "energi"),
    )
    assert by_tag["samhallsbyggnad"].score == 2.0
    assert by_tag["fonder-program"].why() == "utlysning (title: «utlysning»)"


def test_exclude_stops_a_rule(rules: RuleSet) -> None:
    assert classify(PlainItem("Utlysning", "Partnersök inför utlysningen"), rules).tags == ()


def test_requires_needs_one_of_its_terms(rules: RuleSet) -> None:
    assert classify(PlainItem("EU-hösten 2026"), rules).tags == ()
    tag = classify(PlainItem("EU-hösten 2026", "GR bjuder in"), rules).tags[0]
    assert tag.tag == "natverkssamverkan"
    assert Evidence("summary", "GR") in tag.evidence


def test_field_scope(rules: RuleSet) -> None:
    assert classify(PlainItem("ESF i Västsverige"), rules).ids("theme") == {"arbetsmarknad"}
    assert classify(PlainItem("Nyhet", "ESF i Västsverige"), rules).relevant is False


def test_conditions_on_programme_status_kind_and_source(rules: RuleSet) -> None:
    item = PlainItem("HORIZON-CL5-2027-01", programme="HORIZON", status="forthcoming")
    result = classify(item, rules)
    assert result.ids("area") == {"fonder-program", "forhandsinfo"}
    assert result.tags[0].evidence == (
        Evidence("status", "forthcoming"),
        Evidence("programme", "HORIZON"),
    )
    open_call = PlainItem("HORIZON-CL5-2027-01", programme="Horizon Europe", status="open")
    assert classify(open_call, rules).tags == ()

    consultation = PlainItem("Revision of a directive", kind="consultation", source_id="hys")
    assert classify(consultation, rules).tags[0].evidence == (Evidence("kind", "consultation"),)
    noisy = PlainItem("Revision of a directive", kind="consultation", source_id="noisy-source")
    assert classify(noisy, rules).relevant is False


def test_relevance_rule_removes_every_tag_and_says_why(rules: RuleSet) -> None:
    result = classify(PlainItem("Utlysning: defence research"), rules, source_areas=["partners"])
    assert result.relevant is False
    assert result.tags == ()
    assert result.reason == "defence (title: «defence»)"
    civil = classify(PlainItem("Utlysning: civil defence"), rules)
    assert civil.relevant and civil.ids("area") == {"fonder-program"}


def test_untagged_is_not_relevant_unless_settings_say_otherwise(rules: RuleSet) -> None:
    assert classify(PlainItem("Kommissionen byter logotyp"), rules).reason == "no rule matched"
    lenient = rules_from_text(RULES + "\n[settings]\nuntagged_not_relevant = false\n")
    assert classify(PlainItem("Kommissionen byter logotyp"), lenient).relevant is True


def test_source_defaults(rules: RuleSet) -> None:
    item = PlainItem("Nyhet från ESF-rådet", "Klimat", source_id="esf-vast")
    result = classify(item, rules, source_areas=["fonder-program"], source_themes=["arbetsmarknad"])
    assert result.relevant
    default = next(t for t in result.tags if t.tag == "fonder-program")
    assert default.rule_id == "source-default:esf-vast"
    assert default.evidence == (Evidence("source", "esf-vast"),)
    # A rule that gives the same tag wins over the source default: it has real evidence.
    title_esf = next(t for t in result.tags if t.tag == "arbetsmarknad")
    assert title_esf.rule_id == "esf-title-only"
    # Tags come in taxonomy order: areas first.
    assert [t.kind for t in result.tags] == ["area", "theme"]


def test_negative_weight_and_overlap() -> None:
    rs = rules_from_text(
        """
[[rule]]
id = "training"
area = "kompetens"
terms = ["=training", "vocational training^-1", "webinar^2"]
"""
    )
    assert classify(PlainItem("Training for EU coordinators"), rs).ids("area") == {"kompetens"}
    assert classify(PlainItem("Vocational training for migrants"), rs).tags == ()
    tag = classify(PlainItem("Webinar on vocational training"), rs).tags[0]
    assert tag.score == 2 * 2 - 2  # webinar^2 in the title, penalty in the title


def test_item_type_satisfies_the_protocol() -> None:
    rs = load_rules()
    item = Item(
        source_id="ft-portal",
        key="LIFE-2026-CIRC",
        title="LIFE call for proposals: circular economy and quality of life",
        link="https://example.org",
        summary="Projects on waste prevention. Call budget EUR 20 million.",
        language="en",
        kind=Kind.CALL,
        status=Status.OPEN,
        programme="LIFE",
        identifier=None,
        published=datetime(2026, 1, 1, tzinfo=UTC),
        opening=None,
        deadlines=(),
        budget=None,
        budget_amount=None,
        currency=None,
        regions=(),
        topics=(),
        content_hash="x",
    )
    result = classify(item, rs)
    assert {"fonder-program"} <= result.ids("area")
    assert "samhallsbyggnad" in result.ids("theme")


def test_compiled_rules_are_cached_on_the_rule_set(rules: RuleSet) -> None:
    classify(PlainItem("Utlysning"), rules)
    first = rules.cache["compiled"]
    classify(PlainItem("Utlysning"), rules)
    assert rules.cache["compiled"] is first


def test_explain_lists_rules_that_almost_fired(rules: RuleSet) -> None:
    out = dict((r.id, score) for r, score in explain(PlainItem("Nyhet", "om klimat"), rules))
    assert out == {"klimat": None}
    out = dict((r.id, score) for r, score in explain(PlainItem("Klimat"), rules))
    assert out == {"klimat": 2.0}


def test_rule_lookup_and_overview(rules: RuleSet) -> None:
    assert rules.rule("defence").id == "defence"
    with pytest.raises(KeyError):
        rules.rule("no-such-rule")
    overview = rules.targets()
    assert [r.id for r in overview["area:fonder-program"]] == ["utlysning", "horizon-call"]
    assert [r.id for r in overview["area:forhandsinfo"]] == ["horizon-call"]


def test_a_keep_rule_holds_an_item_that_a_relevance_rule_would_drop() -> None:
    text = (
        RULES
        + """
[[rule]]
id = "eligible-call"
area = "fonder-program"
keep = true
terms = ["Västsverige"]
requires = ["utlysning"]
"""
    )
    keeping = rules_from_text(text)
    item = PlainItem("Utlysning i Västsverige", "Om beredskap, även defence.")
    result = classify(item, keeping)
    assert result.relevant is True
    assert "fonder-program" in result.ids("area")
    # without the keep rule's terms the relevance rule still drops the item
    dropped = classify(PlainItem("Utlysning: defence research"), keeping)
    assert dropped.relevant is False and dropped.reason == "defence (title: «defence»)"
    # the same rule without keep tags, but does not hold the item
    plain = rules_from_text(text.replace("keep = true\n", ""))
    assert classify(item, plain).relevant is False
