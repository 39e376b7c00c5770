"""Corrections: an admin's one-click corrections of an item's tags (``rules.corrections``).

A correction is kept per item and label (a later one of the same label replaces it), and
every write of the item's tags applies it (``TagsRoom._write_tags``). Making or undoing one
is one transaction: the correction, the item's effective tags (the rules' result passed in,
with all its corrections applied) with their change row, and the audit entry.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from rules.corrections import RELEVANCE, Correction
from watcher.storage import base
from watcher.storage.schema import audit_log, corrections
from watcher.storage.tags import TagsRoom, correction_of
from watcher.types import Classification


class CorrectionsRoom(TagsRoom):
    """The admins' corrections: make, undo, list."""

    @base.translate_errors
    def correct(
        self,
        item_id: int,
        correction: Correction,
        rules_result: Classification,
        rules_version: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Record ``correction`` of the item (replacing one of the same label) and write the
        item's tags: ``rules_result`` with its corrections applied. Audited as
        ``item.correct``. Returns the tags added and removed."""
        tag = "" if correction.kind == RELEVANCE else correction.tag
        with self.begin() as conn:
            conn.execute(
                delete(corrections).where(
                    corrections.c.item_id == item_id,
                    corrections.c.kind == correction.kind,
                    corrections.c.tag == tag,
                )
            )
            conn.execute(
                insert(corrections).values(
                    item_id=item_id,
                    kind=correction.kind,
                    tag=tag,
                    present=correction.present,
                    username=correction.user,
                    at=correction.at,
                )
            )
            self._audit_in(
                conn, correction.user, "item.correct", item_id, correction, correction.at
            )
            return self._write_tags(conn, {item_id: rules_result}, correction.at, rules_version)[
                item_id
            ]

    @base.translate_errors
    def uncorrect(
        self,
        item_id: int,
        kind: str,
        tag: str,
        user: str,
        now: datetime,
        rules_result: Classification,
        rules_version: str | None = None,
    ) -> bool:
        """Undo the item's correction of one label: the rules decide it again. Audited as
        ``item.uncorrect``; False (and nothing written) when there was none."""
        tag = "" if kind == RELEVANCE else tag
        with self.begin() as conn:
            found = (
                conn.execute(
                    select(corrections).where(
                        corrections.c.item_id == item_id,
                        corrections.c.kind == kind,
                        corrections.c.tag == tag,
                    )
                )
                .mappings()
                .first()
            )
            if found is None:
                return False
            conn.execute(delete(corrections).where(corrections.c.id == found["id"]))
            undone = correction_of(found)
            self._audit_in(conn, user, "item.uncorrect", item_id, undone, now)
            self._write_tags(conn, {item_id: rules_result}, now, rules_version)
            return True

    @base.translate_errors
    def corrections_of(self, item_id: int) -> list[Correction]:
        """One item's corrections, oldest first."""
        with self.engine.connect() as conn:
            return [
                correction_of(r)
                for r in conn.execute(
                    select(corrections)
                    .where(corrections.c.item_id == item_id)
                    .order_by(corrections.c.id)
                ).mappings()
            ]

    @base.translate_errors
    def all_corrections(self) -> dict[int, list[Correction]]:
        """Every correction, by item id (items in the order of their first correction)."""
        out: dict[int, list[Correction]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(corrections).order_by(corrections.c.id)).mappings():
                out.setdefault(r["item_id"], []).append(correction_of(r))
        return out

    def _audit_in(
        self, conn: Any, user: str, action: str, item_id: int, c: Correction, now: datetime
    ) -> None:
        details = {"label": c.label, "present": c.present, "correction": c.describe()}
        conn.execute(
            insert(audit_log).values(
                at=now,
                actor=user,
                action=action,
                target=f"item:{item_id}",
                details=json.loads(json.dumps(details)),
            )
        )
