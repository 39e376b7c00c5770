"""The admin's rule editor: the built-in rule files (read-only) and the editable ones.

A save first shows the back-test (which stored items gain or lose which tags): only a text
that was back-tested as it stands can be saved (the form carries a token of the tested
text and version). The workflow itself (targets, candidate rule set, back-test, save,
reload and re-tag) is ``watcher.editing.RulesWorkspace``, which ``watcher rules`` uses too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from rules.backtest import summarise
from rules.loader import DEFAULTS_DIR, RuleSetError
from watcher.classify import rule_paths
from watcher.config_edit import ABSENT, FileWriteError, TextFile
from watcher.editing import RulesWorkspace
from watcher.exceptions import EditConflict
from watcher.web.admin.access import admin_router, form_data, redirect, require_admin, session_of
from watcher.web.admin.entries import write_failed_message
from watcher.web.render import app_of, gettext_for, render

router = admin_router()

BACKTEST_SHOWN = 100  # changed items listed on the page (the summary counts them all)

NEW_RULES_TEXT = """\
# Local classification rules, loaded after the built-in ones (rules/defaults/).
# A rule with the id of a built-in rule replaces it. Format: docs/rules.md.
#
# [[rule]]
# id = "local-example"
# area = "kompetens"
# terms.sv = ["webbinarium", "utbildningsdag"]
"""


def _target(workspace: RulesWorkspace, name: str | None) -> Path:
    """The editable rule file named ``name``; 404 for any other path."""
    try:
        return workspace.target(name or "")
    except KeyError:
        raise HTTPException(404) from None


@router.get("/rules", response_class=HTMLResponse)
def rules_overview(request: Request, user: str = Depends(require_admin)) -> HTMLResponse:
    app = app_of(request)
    classifier = app.classifier
    targets = [(p, p.exists()) for p in RulesWorkspace(app, user).targets()]
    listed = bool(rule_paths(app.config))  # else the one target is a file to create and list
    defaults = sorted(DEFAULTS_DIR.glob("*.toml")) if app.config.rules.use_defaults else []
    return render(
        request,
        "admin/rules.html",
        {
            "targets": targets,
            "listed": listed,
            "defaults": defaults,
            "error": classifier.error,
            "version": classifier.version,
            "count": len(classifier.store.rules.rules),
        },
    )


@router.get("/rules/default", response_class=HTMLResponse)
def rules_default(request: Request) -> HTMLResponse:
    name = request.query_params.get("name", "")
    files = {p.name: p for p in DEFAULTS_DIR.glob("*.toml")}
    if name not in files:
        raise HTTPException(404)
    return render(
        request,
        "admin/rules_view.html",
        {"name": name, "text": files[name].read_text(encoding="utf-8")},
    )


@router.get("/rules/edit", response_class=HTMLResponse)
def rules_edit(request: Request, user: str = Depends(require_admin)) -> HTMLResponse:
    path = _target(RulesWorkspace(app_of(request), user), request.query_params.get("file"))
    tf = TextFile.read(path)
    return render(
        request,
        "admin/rules_edit.html",
        _rules_context(
            path, tf.text if tf.exists else NEW_RULES_TEXT, tf.version, exists=tf.exists
        ),
    )


def _rules_context(
    path: Path, text: str, version: str, *, exists: bool, **extra: Any
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "file": str(path),
        "text": text,
        "version": version,
        "exists": exists,
        "errors": [],
        "diffs": None,
        "summary": None,
        "tested": "",
        "conflict": None,
        "checked": 0,
        "changed_total": 0,
    }
    ctx.update(extra)
    return ctx


def _text_token(text: str, version: str) -> str:
    """Names a text on a file version: the save form carries the token of the text that
    was back-tested, and a save of any other text shows the back-test again."""
    return hashlib.sha256(f"{version}\0{text}".encode()).hexdigest()[:24]


@router.post("/rules/edit", response_class=HTMLResponse)
async def rules_submit(request: Request, user: str = Depends(require_admin)) -> Response:
    """Check and back-test (``action=check``), then save (``action=save``) a rule file.
    A save whose text was not back-tested as it stands shows the back-test first."""
    t = gettext_for(request)
    workspace = RulesWorkspace(app_of(request), user)
    form = await form_data(request)
    path = _target(workspace, str(form.get("file", "")))
    text = str(form.get("text", "")).replace("\r\n", "\n")
    version = str(form.get("version", ""))
    exists = version != ABSENT
    action = form.get("action", "check")
    try:
        new_rules = await run_in_threadpool(workspace.candidate, path, text)
    except RuleSetError as e:
        if action == "save":
            await run_in_threadpool(workspace.refuse, path, e)
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(path, text, version, exists=exists, errors=e.errors),
            status_code=422,
        )
    token = _text_token(text, version)
    if action != "save" or form.get("tested") != token:
        result = await run_in_threadpool(workspace.backtest, new_rules)
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(
                path,
                text,
                version,
                exists=exists,
                diffs=result.diffs[:BACKTEST_SHOWN],
                summary=summarise(result.diffs),
                tested=token,
                checked=result.checked,
                changed_total=len(result.diffs),
            ),
        )
    try:
        saved = await run_in_threadpool(workspace.save, path, text, version)
    except FileWriteError as e:  # the file is as it was; the text stays on the page
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(path, text, version, exists=exists, conflict=write_failed_message(t, e)),
            status_code=500,
        )
    except EditConflict as e:
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(
                path,
                text,
                e.actual,
                exists=e.actual != ABSENT,
                conflict=t(
                    "Regelfilen har ändrats sedan du öppnade den. Inget sparades. Din text finns kvar nedan; provkör igen för att spara över den nya versionen."
                ),
            ),
            status_code=409,
        )
    session = session_of(request)
    if saved.error is not None:  # saved, but not in force (another rule file broke meanwhile)
        session.flash(t("Kunde inte spara: {error}", error=str(saved.error)), "error")
    if saved.retag is not None:
        session.flash(
            t(
                "Reglerna sparades. {changed} av {items} poster fick ändrade taggar.",
                changed=saved.retag.changed,
                items=saved.retag.items,
            )
        )
    return redirect("/admin/rules")
