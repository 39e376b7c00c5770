"""The network teaches the tagger: one-click corrections of an item's tags, and what they say.

- ``GET /admin/items/{id}``: the item page as an admin sees it (the admin's session
  cookie is scoped to ``/admin``, so the public ``/items/{id}`` never knows an admin).
- ``POST /admin/items/{id}/correct``: that page's buttons (remove a tag, add an area or
  theme, mark relevant or not relevant, undo a correction). The correction is recorded and
  audited, and the item's effective tags are written at once (``watcher.classify.correct``).
- ``GET /admin/rules/corrections``: which rules the corrections contradict most and which
  words the corrected items share: suggestions for the rule files, never applied.
- ``GET /admin/rules/corrections.jsonl``: the corrections as labelled JSONL, the format of
  the shared labelled sets (``watcher rules evaluate --data`` reads it).

Every route needs a login, every POST the CSRF token and this service's origin
(``access.admin_router``). No GET writes.
"""

from __future__ import annotations

import json

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from rules.corrections import RELEVANCE, Correction, contradictions, shared_terms
from rules.learned import words
from watcher.classify import correct, corrected_items, corrections_labelled, uncorrect
from watcher.config import AREAS, THEMES
from watcher.web.admin.access import admin_router, form_data, redirect, require_admin, session_of
from watcher.web.public import item_context
from watcher.web.render import app_of, gettext_for, render

router = admin_router()

ACTIONS = ("add", "remove", "relevant", "not_relevant", "undo")


@router.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: str) -> HTMLResponse:
    """The item page as an admin sees it: with one-click corrections and suggestions."""
    return render(request, "item.html", item_context(request, item_id, admin=True))


@router.post("/items/{item_id}/correct")
async def correct_item(
    request: Request, item_id: int, user: str = Depends(require_admin)
) -> Response:
    """One click on the item page: record the correction and go back to the item."""
    app = app_of(request)
    form = await form_data(request)
    action = str(form.get("action", ""))
    kind = str(form.get("kind", ""))
    tag = str(form.get("tag", ""))
    if action not in ACTIONS:
        raise HTTPException(400)
    if action in ("relevant", "not_relevant"):
        kind, tag = RELEVANCE, ""
    elif action == "undo" and kind == RELEVANCE:
        tag = ""
    elif (kind, tag) not in [("area", a) for a in AREAS] + [("theme", t) for t in THEMES]:
        raise HTTPException(400)
    now = app.now()
    if action == "undo":
        done = await run_in_threadpool(
            uncorrect, app.storage, app.classifier, item_id, kind, tag, user, now
        )
    else:
        present = action in ("add", "relevant")
        done = await run_in_threadpool(
            correct,
            app.storage,
            app.classifier,
            item_id,
            Correction(kind, tag, present, user, now),
        )
    if not done and action != "undo":
        raise HTTPException(404)
    t = gettext_for(request)
    session_of(request).flash(t("Rättelsen sparades.") if done else t("Ingen rättelse att ångra."))
    return redirect(f"/admin/items/{item_id}#rattelser")


@router.get("/rules/corrections", response_class=HTMLResponse)
def corrections_page(request: Request) -> HTMLResponse:
    """What the corrections say about the rules in force."""
    app = app_of(request)
    rules = app.classifier.store.rules
    pairs = corrected_items(app.storage)
    results = [app.classifier(item, None) for item, _cs in pairs]  # the rules alone
    rules_for = {label: [r.id for r in rs] for label, rs in rules.targets().items()}
    return render(
        request,
        "admin/corrections.html",
        {
            "pairs": pairs,
            "contradictions": contradictions(pairs, results, rules_for)[:30],
            "shared": shared_terms(pairs, words),
            "version": app.classifier.version,
        },
    )


@router.get("/rules/corrections.jsonl")
def corrections_download(request: Request) -> Response:
    """Every corrected item as a labelled JSONL row."""
    rows = corrections_labelled(app_of(request).storage)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return Response(
        body,
        media_type="application/x-ndjson; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="corrections.jsonl"'},
    )
