"""``watcher rules …``: check, back-test, evaluate and re-tag.

The back-test and the re-tag are the admin's own (``watcher.editing.RulesWorkspace``), and
the configured rule files the classifier's (``watcher.classify.rule_paths``), so the
command line and the rule editor cannot disagree about either.

As everywhere in the CLI, a command imports what it needs when it runs: ``watcher --help``
and ``rules check`` do not load the database layer (``watcher.editing`` brings it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rules.loader import check_rules, load_rules, rule_files
from watcher import config as config_mod
from watcher.classify import rule_paths
from watcher.cli import Ctx, console, err_console, handle_errors, parse_since, print_json

# The actor of the changes the command line records in the audit log.
CLI_ACTOR = "cli"


@click.group()
def rules() -> None:
    """Classification rules: check, back-test, evaluate, re-tag, corrections."""


def _config_rule_paths(ctx: Ctx) -> tuple[list[Path], bool]:
    """The configured rule paths and whether the built-in rules come first, from
    config.toml's structure alone (``check`` and ``evaluate`` need no database, nor valid
    adapter options)."""
    cfg = config_mod.load(ctx.config_path)
    return rule_paths(cfg), cfg.rules.use_defaults


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.pass_obj
@handle_errors
def rules_check(ctx: Ctx, paths: tuple[Path, ...]) -> None:
    """Validate rule files (the configured ones, or PATHS); exit 1 on any error."""
    if paths:
        # Checked after the built-in rules, as the service loads them: a file may extend or
        # replace a built-in rule.
        files, defaults = list(paths), True
        names = [str(p) for p in rule_files(files, defaults=False)]
    else:
        files, defaults = _config_rule_paths(ctx)
        names = [str(p) for p in rule_files(files, defaults=defaults)]
    errors = check_rules(files, defaults=defaults)
    if errors:
        err_console.print(f"[bold red]{len(errors)} problem(s)[/] in the rule files:")
        for e in errors:
            err_console.print(f"  • {e}", markup=False, highlight=False)
        sys.exit(1)
    console.print(f"[green]OK[/] {len(names)} rule file(s): " + ", ".join(names), highlight=False)


@rules.command("test")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, path_type=Path),
    help="Changed rule files (a file or a folder) to use instead of the configured [rules] paths, after the built-in rules.",
)
@click.option("--since", help="Only items first seen on or after this date.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per changed item.")
@click.option("--limit", default=200, show_default=True, help="Items to list in the text report.")
@click.pass_obj
@handle_errors
def rules_test(
    ctx: Ctx, rules_path: Path | None, since: str | None, as_json: bool, limit: int
) -> None:
    """Back-test: which stored items would gain or lose which tags. Nothing is saved."""
    from rules.backtest import format_backtest
    from watcher.editing import RulesWorkspace

    app = ctx.app
    paths, defaults = rule_paths(app.config), app.config.rules.use_defaults
    # The changed files take the place of the configured ones, after the built-in rules
    # (a rule with the same id replaces a built-in one), as the service would load them.
    new = load_rules([rules_path] if rules_path is not None else paths, defaults=defaults)
    result = RulesWorkspace(app, CLI_ACTOR).backtest(new, since=parse_since(since))
    diffs = result.diffs
    if as_json:
        for d in diffs:
            print_json(
                {
                    "id": getattr(d.item, "id", None),
                    "title": d.item.title,
                    "gained": [f"{t.kind}:{t.tag}" for t in d.gained],
                    "lost": [f"{t.kind}:{t.tag}" for t in d.lost],
                    "relevant": [d.before.relevant, d.after.relevant],
                    "why": {f"{t.kind}:{t.tag}": t.why() for t in d.gained},
                }
            )
        return
    console.print(f"Back-test over {result.checked} stored items:", highlight=False)
    console.print(format_backtest(diffs, limit=limit), markup=False, highlight=False)


@rules.command("evaluate")
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labelled JSONL (title, summary, areas, themes, relevant …).",
)
@click.option(
    "--corrections",
    "use_corrections",
    is_flag=True,
    help="Score against the admins' corrections in the database (as labels).",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, path_type=Path),
    help="Rule set to evaluate.",
)
@click.option(
    "--model",
    "with_model",
    is_flag=True,
    help="Also rules with the learned model, cross-validated over the data (nested: each "
    "fold's threshold chosen on its training folds).",
)
@click.option("--folds", default=5, show_default=True, help="Folds of the cross-validation.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--mistakes", is_flag=True, help="List the items the rules got wrong.")
@click.pass_obj
@handle_errors
def rules_evaluate(
    ctx: Ctx,
    data_path: Path | None,
    use_corrections: bool,
    rules_path: Path | None,
    with_model: bool,
    folds: int,
    as_json: bool,
    mistakes: bool,
) -> None:
    """Precision, recall and F1 per area and theme, macro-F1, relevance accuracy: of the
    rules alone, and with --model of the rules with the learned model (cross-validated)."""
    from rules.evaluate import LabelledItem, load_labelled

    if (data_path is None) == (not use_corrections):
        raise click.UsageError("give one of --data FILE or --corrections")
    if use_corrections:
        from watcher.classify import corrections_labelled

        rows = [LabelledItem.from_dict(d) for d in corrections_labelled(ctx.app.storage)]
        paths, defaults = rule_paths(ctx.app.config), ctx.app.config.rules.use_defaults
    else:
        assert data_path is not None
        rows = load_labelled(data_path)
        paths, defaults = _config_rule_paths(ctx)
    ruleset = load_rules([rules_path] if rules_path is not None else paths, defaults=defaults)
    _report(ruleset, rows, with_model, folds, as_json, mistakes)


def _report(
    ruleset: Any, rows: list[Any], with_model: bool, k: int, as_json: bool, mistakes: bool
) -> None:
    from rules.engine import classify
    from rules.evaluate import score
    from rules.learned import cross_validate

    results = [classify(r, ruleset) for r in rows]
    alone = score(rows, results)
    if not with_model:
        if as_json:
            print_json(alone.as_json())
        else:
            console.print(alone.as_text(mistakes=mistakes), markup=False, highlight=False)
        return
    if len(rows) < 2 * k:
        raise click.UsageError(f"cross-validation over {k} folds needs at least {2 * k} items")

    def macro(rs: Any, cs: Any) -> float:
        rep = score(rs, cs)
        return (rep.areas.macro_f1 + rep.themes.macro_f1) / 2

    cv = cross_validate(rows, results, macro, k=k)
    combined = score(rows, cv.with_model)
    thresholds = [None if t == float("inf") else t for t in cv.thresholds]
    if as_json:
        print_json(
            {
                "rules": alone.as_json(),
                "rules_with_model": {
                    **combined.as_json(),
                    "cross_validated": {"folds": k, "thresholds": thresholds},
                },
            }
        )
        return
    console.print("Rules alone:", highlight=False)
    console.print(alone.as_text(mistakes=mistakes), markup=False, highlight=False)
    console.print("")
    shown = ", ".join("none" if t is None else f"{t:g}" for t in thresholds)
    console.print(
        f"Rules with the model (cross-validated, {k} folds; thresholds chosen per fold: {shown}):",
        highlight=False,
    )
    console.print(combined.as_text(mistakes=mistakes), markup=False, highlight=False)
    d_areas = combined.areas.macro_f1 - alone.areas.macro_f1
    d_themes = combined.themes.macro_f1 - alone.themes.macro_f1
    console.print(
        f"Change with the model: areas {d_areas:+.3f}, themes {d_themes:+.3f}, relevance "
        f"{combined.relevance_accuracy - alone.relevance_accuracy:+.3f}",
        highlight=False,
    )


@rules.command("corrections")
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the corrected items as labelled JSONL (the shared sets' format); - for stdout.",
)
@click.pass_obj
@handle_errors
def rules_corrections(ctx: Ctx, export_path: Path | None) -> None:
    """The admins' corrections: list them, or export them as labelled JSONL."""
    import json

    from watcher.classify import corrected_items, corrections_labelled

    app = ctx.app
    if export_path is not None:
        rows = corrections_labelled(app.storage)
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if str(export_path) == "-":
            sys.stdout.write(body)
        else:
            export_path.write_text(body, encoding="utf-8")
            err_console.print(f"{len(rows)} corrected item(s) written to {export_path}")
        return
    pairs = corrected_items(app.storage)
    for item, cs in pairs:
        said = "; ".join(f"{c.describe()} ({c.user}, {c.at:%Y-%m-%d %H:%M})" for c in cs)
        console.print(f"{item.id} {item.title[:70]}: {said}", markup=False, highlight=False)
    console.print(f"{len(pairs)} corrected item(s)", highlight=False)


@rules.command("retag")
@click.option("--since", help="Only items first seen on or after this date.")
@click.pass_obj
@handle_errors
def rules_retag(ctx: Ctx, since: str | None) -> None:
    """Re-tag stored items with the rules in force, recording each change."""
    from watcher.editing import RulesWorkspace

    app = ctx.app
    classifier = app.classifier
    if classifier.error is not None:
        err_console.print(
            f"[yellow]warning:[/] rule files have errors; using the last good rules: {classifier.error}"
        )
    report = RulesWorkspace(app, CLI_ACTOR).retag(since=parse_since(since))
    console.print(
        f"{report.items} items checked, {report.changed} changed (+{report.added} −{report.removed} tags)"
    )
