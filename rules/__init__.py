"""Classification rules: the engine and the default rule files.

Rules are data (TOML files, ``docs/rules.md``); the engine is pure code::

    rule files ──loader──▶ RuleSet (model) ──engine.classify(item)──▶ Classification
                                         ├──evaluate(labelled rows)──▶ Report (P/R/F1)
                                         └──backtest(items, old, new)──▶ TagDiff…

``rules.matching`` holds the Swedish-aware term matching (prefixes, compounds, acronyms,
phrases) the engine compiles every rule set into.
"""

from rules.backtest import TagDiff, backtest
from rules.engine import ClassifiableItem, PlainItem, classify
from rules.evaluate import LabelledItem, Report, evaluate, load_labelled
from rules.loader import RuleSetError, RuleStore, check_rules, load_rules, rules_from_text
from rules.model import RelevanceRule, Rule, RuleSet

__all__ = [
    "ClassifiableItem",
    "LabelledItem",
    "PlainItem",
    "RelevanceRule",
    "Report",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "RuleStore",
    "TagDiff",
    "backtest",
    "check_rules",
    "classify",
    "evaluate",
    "load_labelled",
    "load_rules",
    "rules_from_text",
]
