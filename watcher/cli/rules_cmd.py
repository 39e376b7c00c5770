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

import click

from rules.loader import check_rules, load_rules, rule_files
from watcher import config as config_mod
from watcher.classify import rule_paths
from watcher.cli import Ctx, console, err_console, handle_errors, parse_since, print_json

# The actor of the changes the command line records in the audit log.
CLI_ACTOR = "cli"


@click.group()
def rules() -> None:
    """Classification rules: check, back-test, evaluate, re-tag."""


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
        files, defaults = list(paths), False
    else:
        files, defaults = _config_rule_paths(ctx)
    errors = check_rules(files, defaults=defaults)
    names = [str(p) for p in rule_files(files, defaults=defaults)]
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
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labelled JSONL (title, summary, areas, themes, relevant …).",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, path_type=Path),
    help="Rule set to evaluate.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--mistakes", is_flag=True, help="List the items the rules got wrong.")
@click.pass_obj
@handle_errors
def rules_evaluate(
    ctx: Ctx, data_path: Path, rules_path: Path | None, as_json: bool, mistakes: bool
) -> None:
    """Precision, recall and F1 per area and theme, macro-F1, relevance accuracy."""
    from rules.evaluate import evaluate_file

    paths, defaults = _config_rule_paths(ctx)
    ruleset = load_rules([rules_path] if rules_path is not None else paths, defaults=defaults)
    report = evaluate_file(data_path, ruleset)
    if as_json:
        print_json(report.as_json())
        return
    console.print(report.as_text(mistakes=mistakes), markup=False, highlight=False)


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
