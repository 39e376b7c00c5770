"""The learned model: suggestions carry their evidence, tags only above a threshold chosen
by cross-validation, and no item is ever scored by a model trained on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from rules import learned
from rules.evaluate import LabelledItem, score
from rules.learned import add_model_tags, cross_validate, folds, suggestions, train
from tests.conftest import write_config
from tests.web_builders import raw, seed
from watcher.app import App
from watcher.cli import main
from watcher.types import Classification


def _row(i: int, title: str, areas: tuple[str, ...] = (), themes: tuple[str, ...] = ()) -> Any:
    return LabelledItem(
        title=title, id=str(i), areas=frozenset(areas), themes=frozenset(themes), relevant=True
    )


def small_set() -> list[Any]:
    """Twenty items, two kinds: trainings (kompetens) and partner searches (partners)."""
    rows = []
    for i in range(10):
        rows.append(
            _row(i, f"Frukostseminarium och utbildning om projektekonomi {i}", ("kompetens",))
        )
        rows.append(
            _row(100 + i, f"Partnersökning: partners sökes till matchmaking {i}", ("partners",))
        )
    return rows


def test_folds_never_score_an_item_on_its_own_model() -> None:
    parts = folds(23, 5)
    assert sorted(i for f in parts for i in f) == list(range(23))
    assert all(set(a).isdisjoint(b) for a in parts for b in parts if a is not b)

    seen: list[set[str]] = []
    original = learned.train

    def spy(rows: Any, threshold: float = learned.DEFAULT_THRESHOLD) -> learned.Model:
        seen.append({r.id for r in rows})
        return original(rows, threshold)

    rows = small_set()
    learned.train = spy  # type: ignore[assignment]
    try:
        untagged = [Classification((), False, "no rule matched") for _ in rows]

        def macro(rs: Any, cs: Any) -> float:
            rep = score(rs, cs)
            return (rep.areas.macro_f1 + rep.themes.macro_f1) / 2

        cv = cross_validate(rows, untagged, macro, k=5, inner_k=2)
    finally:
        learned.train = original  # type: ignore[assignment]
    # outer models: each trained without its fold; the fold's items were scored by it
    for fold, trained_on in zip(folds(len(rows), 5), seen[2::3], strict=True):
        assert trained_on.isdisjoint({rows[i].id for i in fold})
    # on this easy set the model learns both areas and the threshold lets it tag
    report = score(rows, cv.with_model)
    assert report.areas.macro_f1 > score(rows, cv.rules_alone).areas.macro_f1
    assert all(t != float("inf") for t in cv.thresholds)


def test_suggestions_and_model_tags_carry_evidence() -> None:
    model = train(small_set(), threshold=float("inf"))
    item = _row(999, "Välkommen till frukostseminarium om projektekonomi")
    none = Classification((), True)
    [best, *_] = suggestions(none, item, model)
    assert (best.kind, best.tag) == ("area", "kompetens")
    assert best.terms and any("projektekonomi" in t or "seminar" in t for t in best.terms)
    assert add_model_tags(none, item, model) == none  # no threshold: never a tag
    model.threshold = best.score
    [tag] = [t for t in add_model_tags(none, item, model).tags if t.tag == "kompetens"]
    assert tag.rule_id == "model" and tag.evidence and tag.evidence[0].field == "modell"
    # a relevance rule's exclusion stands
    dropped = Classification((), False, "procurement (title: «upphandling»)")
    assert add_model_tags(dropped, item, model) == dropped


def test_evaluate_reports_rules_alone_and_with_the_model(tmp_path: Path) -> None:
    data = tmp_path / "small.jsonl"
    data.write_text(
        "".join(
            json.dumps({"title": r.title, "areas": sorted(r.areas), "themes": [], "relevant": True})
            + "\n"
            for r in small_set()
        ),
        encoding="utf-8",
    )
    cfg = write_config(tmp_path / "config.toml", {"watcher": {"database_url": "sqlite://"}})
    res = CliRunner().invoke(
        main, ["--config", str(cfg), "rules", "evaluate", "--data", str(data), "--model", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {"rules", "rules_with_model"}
    assert out["rules_with_model"]["cross_validated"]["folds"] == 5
    assert out["rules_with_model"]["items"] == 20
    text = CliRunner().invoke(
        main, ["--config", str(cfg), "rules", "evaluate", "--data", str(data), "--model"]
    )
    assert "Rules alone:" in text.output and "cross-validated" in text.output


def test_the_admin_sees_suggestions_with_their_words(web_app: App, admin: httpx.Client) -> None:
    [item_id] = seed(
        web_app,
        "esf",
        [
            raw(
                "m",
                "Webbinarium: så skriver du en ansökan till Erasmus+ för skolor och vuxenutbildning",
            )
        ],
    )
    from watcher.classify import suggestions_for

    [item] = web_app.storage.get_items([item_id])
    proposed = suggestions_for(web_app.storage, item)
    assert all(p.terms for p in proposed)
    page = admin.get(f"/admin/items/{item_id}")
    assert page.status_code == 200
    for p in proposed:
        assert f"«{p.terms[0]}»" in page.text
    assert ("Förslag från modellen" in page.text) == bool(proposed)
    assert "Förslag" not in admin.get(f"/items/{item_id}").text
