"""Layout checks: does a source's answer look like its usual answer? Pure.

A site that changes its markup rarely fails outright: the CSS selectors or the feed fields
simply find nothing, or lose a field they always had. ``check_layout`` compares a poll's
items with the source's remembered field profile and says so, as a warning on the source's
health (never as an error: the items found are still stored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from watcher.types import Item, SourceState

# Fields whose sudden disappearance from a source's items suggests a changed layout.
PROFILE_FIELDS = ("link", "summary", "published", "opening", "deadlines", "status")


@dataclass(frozen=True)
class LayoutCheck:
    warnings: tuple[str, ...]
    profile: Mapping[str, float]


def field_profile(items: Sequence[Item]) -> dict[str, float]:
    if not items:
        return {}
    n = len(items)
    return {f: round(sum(1 for it in items if getattr(it, f)) / n, 3) for f in PROFILE_FIELDS}


def check_layout(
    state: SourceState,
    items: Sequence[Item],
    adapter_kind: str,
    *,
    filtered: bool = False,
    skipped: int = 0,
) -> LayoutCheck:
    """Warn when a source suddenly yields nothing, or loses fields it always had. Pure.

    ``filtered``: the source drops entries by keywords or regions, so an empty result may
    be honest; ``skipped``: entries the adapter knowingly left out (stored closed calls)."""
    warnings: list[str] = []
    profile = field_profile(items)
    if not items:
        if skipped:
            pass
        elif state.last_parsed and not filtered:
            warnings.append(
                f"layout changed? the source gave no items (last time {state.last_parsed})"
            )
        elif not state.last_parsed and (adapter_kind == "html" or not filtered):
            warnings.append(
                "layout changed? no items found"
                + (" — check the CSS selectors" if adapter_kind == "html" else "")
            )
        # Keep the old profile so the next good poll compares against it.
        return LayoutCheck(tuple(warnings), dict(state.field_profile))
    if len(items) >= 3 and state.field_profile:
        lost = [
            f
            for f, share in state.field_profile.items()
            if share >= 0.8 and profile.get(f, 0.0) == 0.0
        ]
        if lost:
            warnings.append("layout changed? items no longer have " + ", ".join(sorted(lost)))
    return LayoutCheck(tuple(warnings), profile)
