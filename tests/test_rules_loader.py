"""Rule files: loading, validation errors with file/line/rule, overrides, the RuleStore."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rules import PlainItem, RuleSetError, RuleStore, check_rules, classify, load_rules
from rules.loader import DEFAULTS_DIR, rule_files, rules_from_text
from watcher.exceptions import RuleError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "rules.md"

GOOD = """\
[[rule]]
id = "klimat"
theme = "samhallsbyggnad"
terms.sv = ["klimat"]

[[rule]]
id = "webb"
area = "kompetens"
terms = ["webbinarium"]
"""


def write(path: Path, text: str, *, mtime: int | None = None) -> Path:
    path.write_text(text, encoding="utf-8")
    if mtime is not None:  # set explicitly: tests never depend on the clock's resolution
        os.utime(path, ns=(mtime, mtime))
    return path


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_defaults_load_and_cover_every_area_and_theme() -> None:
    rs = load_rules()
    targets = {str(t) for r in rs.rules for t in r.targets}
    for a in ("fonder-program", "paverkan", "kompetens", "partners", "forhandsinfo",
              "natverkssamverkan"):  # fmt: skip
        assert f"area:{a}" in targets
    for t in ("arbetsmarknad", "utbildning", "social-valfard", "samhallsbyggnad",
              "naringsliv-innovation"):  # fmt: skip
        assert f"theme:{t}" in targets
    assert rs.relevance and rs.settings.untagged_not_relevant
    assert check_rules([]) == []
    assert [Path(f).parent for f in rs.files] == [DEFAULTS_DIR] * len(rs.files)


def test_user_file_is_loaded_after_the_defaults(tmp_path: Path) -> None:
    f = write(tmp_path / "extra.toml", GOOD)
    assert rule_files([tmp_path])[-1] == f
    rs = load_rules([tmp_path])
    assert rs.rules[-1].id == "webb"
    assert rs.rule("klimat").origin.path == str(f)
    assert rs.rule("klimat").origin.line == 2


def test_rules_without_defaults(tmp_path: Path) -> None:
    rs = load_rules([write(tmp_path / "a.toml", GOOD)], defaults=False)
    assert [r.id for r in rs.rules] == ["klimat", "webb"]
    assert rs.relevance == ()


def test_a_later_rule_with_the_same_id_replaces_and_enabled_false_removes(tmp_path: Path) -> None:
    base = rules_from_text(GOOD)
    assert classify(PlainItem("Webbinarium om klimat"), base).ids("area") == {"kompetens"}
    override = (
        GOOD
        + """
[[relevance]]
id = "never-kompetens"
terms = ["nothing-like-this"]
"""
    )
    write(tmp_path / "a.toml", GOOD)
    write(
        tmp_path / "b.toml",
        """
[[rule]]
id = "klimat"
theme = "samhallsbyggnad"
terms = ["klimatanpassning"]

[[rule]]
id = "webb"
area = "kompetens"
enabled = false
terms = ["webbinarium"]
""",
    )
    rs = load_rules([tmp_path], defaults=False)
    assert [r.id for r in rs.rules] == ["klimat"]
    assert classify(PlainItem("Webbinarium om klimat"), rs).relevant is False
    assert classify(PlainItem("Klimatanpassning i städer"), rs).ids("theme") == {"samhallsbyggnad"}
    assert rules_from_text(override).relevance[0].id == "never-kompetens"


def test_a_local_file_can_hold_only_a_penalty_for_an_earlier_rule(tmp_path: Path) -> None:
    """Issue 15.8: a local rule file could not add a penalty (or a word) to a rule loaded
    before it without copying the whole rule; ``[[extend]]`` adds terms to it."""
    write(tmp_path / "a.toml", GOOD)
    write(
        tmp_path / "b.toml",
        """
[[extend]]
id = "webb"
terms = ["webbinarium om klimat^-2"]
exclude = ["inställt"]
""",
    )
    rs = load_rules([tmp_path], defaults=False)
    assert classify(PlainItem("Webbinarium om EU-projekt"), rs).ids("area") == {"kompetens"}
    assert "kompetens" not in classify(PlainItem("Webbinarium om klimat"), rs).ids("area")
    assert "kompetens" not in classify(PlainItem("Webbinarium inställt"), rs).ids("area")
    assert rs.rule("webb").origin.path.endswith("a.toml")  # still the rule it was


def test_extending_a_rule_that_is_not_loaded_before_is_an_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "b.toml", '\n[[extend]]\nid = "nothing"\nterms = ["x^-1"]\n')
    [error] = check_rules([bad], defaults=False)
    assert error.line == 3 and error.rule == "nothing" and "names no rule loaded" in str(error)
    empty = write(tmp_path / "c.toml", '[[extend]]\nid = "webb"\n')
    [error] = check_rules([empty], defaults=True)
    assert "adds nothing" in str(error)


def test_version_is_a_hash_of_the_contents(tmp_path: Path) -> None:
    a = load_rules([write(tmp_path / "a.toml", GOOD)], defaults=False)
    b = load_rules([write(tmp_path / "a.toml", GOOD)], defaults=False)
    c = load_rules([write(tmp_path / "a.toml", GOOD + "\n# a comment\n")], defaults=False)
    assert a.version == b.version != c.version
    assert re.fullmatch(r"[0-9a-f]{16}", a.version)


BAD_CASES = [
    ("unknown-area", 'area = "kompetens"', 'area = "kompetns"', "unknown area 'kompetns'", "area ="),
    ("bad-term", 'terms = ["webbinarium"]', 'terms = ["webb[inarium"]', "a term cannot have", "webb[inarium"),
    ("unknown-key", 'terms = ["webbinarium"]', 'terms = ["webbinarium"]\nterm = ["x"]', "unknown key 'term'", "term = "),
    ("bad-kind", 'terms = ["webbinarium"]', 'terms = ["webbinarium"]\nwhen = { kinds = ["cal"] }', "unknown kind(s) cal", "when ="),
    ("no-terms", 'terms = ["webbinarium"]', "", "needs terms or conditions", 'id = "webb"'),
    ("bad-field", 'terms = ["webbinarium"]', 'terms = ["webbinarium"]\nfields = { titel = 2 }', "unknown field 'titel'", "fields ="),
    ("negative-only", 'terms = ["webbinarium"]', 'terms = ["webbinarium^-1"]', "can never fire", "terms ="),
    ("bad-min-score", 'terms = ["webbinarium"]', 'terms = ["webbinarium"]\nmin_score = 0', "min_score must be", "min_score"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "message", "line_has"),
    [c[1:] for c in BAD_CASES],
    ids=[c[0] for c in BAD_CASES],
)
def test_errors_name_file_line_and_rule(
    tmp_path: Path, old: str, new: str, message: str, line_has: str
) -> None:
    head, _, tail = GOOD.partition('id = "webb"')
    text = head + 'id = "webb"' + tail.replace(old, new)
    path = write(tmp_path / "bad.toml", text)
    errors = check_rules([path], defaults=False)
    assert len(errors) == 1, errors
    e = errors[0]
    assert isinstance(e, RuleError)
    assert e.path == str(path)
    assert e.rule == "webb"
    assert message in str(e)
    assert e.line == line_of(text, line_has)
    assert f"{path}:{e.line} (rule webb)" in str(e)
    with pytest.raises(RuleSetError) as info:
        load_rules([path], defaults=False)
    assert info.value.errors[0].line == e.line


def test_toml_syntax_error_names_line_and_rule(tmp_path: Path) -> None:
    text = GOOD.replace('area = "kompetens"', "area = kompetens")
    path = write(tmp_path / "bad.toml", text)
    [e] = check_rules([path], defaults=False)
    assert "TOML syntax" in str(e)
    assert e.line == line_of(text, "area = kompetens")
    assert e.rule == "webb"
    # An error only found at the end of the file points at its last line.
    text = GOOD.replace('terms = ["webbinarium"]', 'terms = ["webbinarium"')
    [e] = check_rules([write(tmp_path / "bad.toml", text)], defaults=False)
    assert e.line == len(text.splitlines())


def test_duplicate_id_and_missing_id(tmp_path: Path) -> None:
    text = GOOD + '\n[[rule]]\nid = "klimat"\ntheme = "samhallsbyggnad"\nterms = ["miljö"]\n'
    text += '\n[[rule]]\narea = "kompetens"\nterms = ["kurs"]\n'
    path = write(tmp_path / "dup.toml", text)
    errors = check_rules([path], defaults=False)
    assert len(errors) == 2
    dup, missing = errors
    assert "duplicate rule id (first at line 2)" in str(dup)
    assert dup.rule == "klimat" and dup.line == 12
    assert "needs an id" in str(missing) and missing.line == 16


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('theme = "samhallsbyggnad"', 'theme = "klimat"').replace(
        'area = "kompetens"', 'area = "kurs"'
    )
    path = write(tmp_path / "two.toml", text)
    with pytest.raises(RuleSetError) as info:
        load_rules([path], defaults=False)
    assert [e.rule for e in info.value.errors] == ["klimat", "webb"]
    assert "2 problems" in str(info.value)


def test_missing_file_and_unknown_top_level_key(tmp_path: Path) -> None:
    errors = check_rules([tmp_path / "nope.toml"], defaults=False)
    assert len(errors) == 1 and "no such rule file" in str(errors[0])
    path = write(tmp_path / "top.toml", "rules = 1\n" + GOOD)
    [e] = check_rules([path], defaults=False)
    assert "unknown top-level key 'rules'" in str(e) and e.line == 1


def test_settings_are_validated_and_merged(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "[settings]\nmin_score = 2\nuntagged_not_relevant = false\n")
    rs = load_rules([path])
    assert rs.settings.min_score == 2.0 and rs.settings.untagged_not_relevant is False
    bad = write(tmp_path / "s.toml", "[settings]\nfields = { body = 1 }\n")
    [e] = check_rules([bad], defaults=False)
    assert "unknown field 'body'" in str(e) and e.line == 2


# -- the store -------------------------------------------------------------------------


def test_store_keeps_the_last_good_rules_when_a_file_goes_bad(tmp_path: Path) -> None:
    path = write(tmp_path / "local.toml", GOOD, mtime=1_000_000_000_000_000_000)
    store = RuleStore([tmp_path], defaults=False)
    assert store.error is None
    good_version = store.version
    assert store.reload_if_changed() is False  # nothing changed

    write(
        path,
        GOOD.replace('area = "kompetens"', 'area = "kompetns"'),
        mtime=1_000_000_001_000_000_000,
    )
    assert store.reload_if_changed() is False
    assert store.version == good_version
    assert store.error is not None and store.error.errors[0].rule == "webb"
    assert "kompetns" in str(store.error)
    # The last good rules still classify.
    assert classify(PlainItem("Webbinarium"), store.rules).ids("area") == {"kompetens"}
    assert store.reload_if_changed() is False  # still bad, unchanged: no new attempt

    write(path, GOOD.replace("webbinarium", "workshop"), mtime=1_000_000_002_000_000_000)
    assert store.reload_if_changed() is True
    assert store.error is None and store.version != good_version
    assert classify(PlainItem("Workshop"), store.rules).ids("area") == {"kompetens"}


def test_store_notices_added_and_removed_files(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", GOOD, mtime=1_000_000_000_000_000_000)
    store = RuleStore([tmp_path], defaults=False)
    extra = write(
        tmp_path / "b.toml",
        '[[rule]]\nid = "kurs"\narea = "kompetens"\nterms = ["=kurs"]\n',
        mtime=1_000_000_000_000_000_000,
    )
    assert store.reload_if_changed() is True
    assert {r.id for r in store.rules.rules} == {"klimat", "webb", "kurs"}
    extra.unlink()
    assert store.reload_if_changed() is True
    assert {r.id for r in store.rules.rules} == {"klimat", "webb"}


def test_store_starting_with_a_bad_file_falls_back_to_the_defaults(tmp_path: Path) -> None:
    write(tmp_path / "bad.toml", "[[rule]]\nid = 'x'\n")
    store = RuleStore([tmp_path])
    assert store.error is not None and store.error.errors[0].rule == "x"
    assert store.rules.version == load_rules().version


# -- the documentation -------------------------------------------------------------------


def _doc_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)


def test_docs_have_toml_examples() -> None:
    assert len(_doc_examples()) >= 5


@pytest.mark.parametrize("n", range(len(_doc_examples())))
def test_every_toml_example_in_the_docs_parses_and_validates(n: int) -> None:
    text = _doc_examples()[n]
    errors = check_rules_text(text)
    assert errors == []
    rules_from_text(text, name=f"docs/rules.md example {n + 1}", defaults=True)


def check_rules_text(text: str) -> list[RuleError]:
    try:
        rules_from_text(text, defaults=True)
    except RuleSetError as e:
        return e.errors
    return []


def test_error_in_a_sub_table_points_at_its_key(tmp_path: Path) -> None:
    text = (
        GOOD + '\n[[rule]]\nid = "calls"\narea = "fonder-program"\n\n[rule.when]\nkinds = ["cal"]\n'
    )
    path = write(tmp_path / "sub.toml", text)
    [e] = check_rules([path], defaults=False)
    assert e.rule == "calls" and e.line == line_of(text, 'kinds = ["cal"]')


def test_error_in_a_language_list_points_at_the_term(tmp_path: Path) -> None:
    text = GOOD.replace('terms.sv = ["klimat"]', 'terms.sv = [\n  "klimat",\n  "miljö{",\n]')
    path = write(tmp_path / "lang.toml", text)
    [e] = check_rules([path], defaults=False)
    assert e.rule == "klimat" and e.line == line_of(text, '"miljö{"')
    assert "terms.sv: «miljö{»" in str(e)


def test_python_example_in_the_docs_gives_what_it_says() -> None:
    text = DOCS.read_text(encoding="utf-8")
    expected = re.search(r"\[t\.why\(\) for t in result\.tags\]\n# (\[.*\])", text)
    assert expected is not None
    result = classify(PlainItem("Utlysning: ESF+ kompetensförsörjning"), load_rules())
    assert repr([t.why() for t in result.tags]) == expected.group(1)


def test_keep_is_a_flag_of_tagging_rules_only(tmp_path: Path) -> None:
    ok = write(
        tmp_path / "ok.toml", GOOD.replace('area = "kompetens"', 'area = "kompetens"\nkeep = true')
    )
    rules = load_rules([ok], defaults=False)
    assert [r.id for r in rules.rules if r.keep] == ["webb"]
    bad = write(
        tmp_path / "bad.toml",
        GOOD.replace('area = "kompetens"', 'area = "kompetens"\nkeep = "yes"'),
    )
    assert "keep must be true or false" in str(check_rules([bad], defaults=False)[0])
    rel = write(tmp_path / "rel.toml", '[[relevance]]\nid = "x"\nterms = ["a"]\nkeep = true\n')
    assert "unknown key 'keep'" in str(check_rules([rel], defaults=False)[0])
