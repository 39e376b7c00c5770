"""Tags: an item's tags with the rule and evidence that gave them, and their history.

Every write of tags (a poll, a merge, a re-tag, a correction) goes through ``_write_tags``,
which applies the items' corrections (``rules.corrections``) to the rules' result: the
stored tags are the effective ones, so every surface shows them and a correction survives
every re-tag."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, RowMapping

from rules.corrections import Correction, apply_corrections
from watcher.storage import base, rows
from watcher.storage.core import StorageCore
from watcher.storage.schema import corrections, items, tag_changes, tags
from watcher.types import Classification


class TagsRoom(StorageCore):
    @base.translate_errors
    def set_tags(
        self,
        item_id: int,
        result: Classification,
        now: datetime,
        rules_version: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Replace an item's tags; record what was added and removed. Returns (added, removed)."""
        return self.set_tags_many({item_id: result}, now, rules_version)[item_id]

    @base.translate_errors
    def set_tags_many(
        self,
        results: Mapping[int, Classification],
        now: datetime,
        rules_version: str | None = None,
    ) -> dict[int, tuple[list[str], list[str]]]:
        """Replace the tags of many items in one transaction, recording every change
        (``tag_changes``). Returns, per item, the tags added and removed."""
        with self.begin() as conn:
            return self._write_tags(conn, results, now, rules_version)

    def _write_tags(
        self,
        conn: Connection,
        results: Mapping[int, Classification],
        now: datetime,
        rules_version: str | None,
        fresh: frozenset[int] = frozenset(),
    ) -> dict[int, tuple[list[str], list[str]]]:
        """Replace tags and record changes; ``fresh`` items are known to have no tags yet,
        and were stored with their relevance."""
        out: dict[int, tuple[list[str], list[str]]] = {}
        ids = list(results)
        old: dict[int, set[str]] = {i: set() for i in ids}
        existing = [i for i in ids if i not in fresh]
        corrected = _corrections_in(conn, existing)
        if corrected:  # the corrections win over the rules
            results = {
                i: apply_corrections(r, corrected[i]) if i in corrected else r
                for i, r in results.items()
            }
        for chunk in rows.chunks(existing, 500):
            for r in conn.execute(
                select(tags.c.item_id, tags.c.kind, tags.c.tag).where(tags.c.item_id.in_(chunk))
            ).all():
                old[r.item_id].add(f"{r.kind}:{r.tag}")
        tag_rows: list[dict[str, Any]] = []
        change_rows: list[dict[str, Any]] = []
        relevant: dict[bool, list[int]] = {True: [], False: []}
        for item_id, result in results.items():
            seen: set[tuple[str, str]] = set()
            for t in result.tags:
                if (t.kind, t.tag) in seen:
                    continue
                seen.add((t.kind, t.tag))
                tag_rows.append(
                    {
                        "item_id": item_id,
                        "kind": t.kind,
                        "tag": t.tag,
                        "rule_id": t.rule_id,
                        "evidence": [{"field": e.field, "matched": e.matched} for e in t.evidence],
                        "score": t.score,
                    }
                )
            new = {f"{k}:{tag}" for k, tag in seen}
            added, removed = sorted(new - old[item_id]), sorted(old[item_id] - new)
            out[item_id] = (added, removed)
            if added or removed:
                change_rows.append(
                    {
                        "item_id": item_id,
                        "at": now,
                        "added": added,
                        "removed": removed,
                        "rules_version": rules_version,
                    }
                )
            if item_id not in fresh:  # new items were stored with their relevance
                relevant[result.relevant].append(item_id)
        for chunk in rows.chunks(existing, 500):
            conn.execute(delete(tags).where(tags.c.item_id.in_(chunk)))
        base.insert_rows(conn, tags, tag_rows)
        base.insert_rows(conn, tag_changes, change_rows)
        for flag, flagged in relevant.items():
            for chunk in rows.chunks(flagged, 500):
                conn.execute(update(items).where(items.c.id.in_(chunk)).values(relevant=flag))
        return out

    @base.translate_errors
    def tag_history(self, item_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            found_rows = (
                conn.execute(
                    select(tag_changes)
                    .where(tag_changes.c.item_id == item_id)
                    .order_by(tag_changes.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in found_rows]


def _corrections_in(conn: Connection, ids: list[int]) -> dict[int, list[Correction]]:
    """The corrections of these items, by item (items without any are left out)."""
    out: dict[int, list[Correction]] = {}
    for chunk in rows.chunks(ids, 500):
        for r in conn.execute(
            select(corrections).where(corrections.c.item_id.in_(chunk)).order_by(corrections.c.id)
        ).mappings():
            out.setdefault(r["item_id"], []).append(correction_of(r))
    return out


def correction_of(r: Mapping[str, Any] | RowMapping) -> Correction:
    return Correction(r["kind"], r["tag"], bool(r["present"]), r["username"], r["at"])
