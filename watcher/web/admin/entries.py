"""What the source and network rooms share: a form's entry checked, saved and deleted
through the editing service (``watcher.editing.ConfigEditor``), and its outcome as a page.

The service decides (validation, version check, writing, putting in force, audit); this
module turns its answers into pages: validation problems onto the form's fields (422), a
stale version into the form again with the admin's input kept and the saved entry beside
it (409), a failed write into the form again with the admin's input and the file
unchanged (500), a missing entry into 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from fastapi import HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from watcher.config import Config
from watcher.config_edit import ConfigFile, FileWriteError
from watcher.editing import ConfigEditor, EntryTable
from watcher.exceptions import ConfigError, ConfigProblem, EditConflict
from watcher.web.admin.access import redirect, session_of
from watcher.web.messages import localise
from watcher.web.render import Gettext, app_of, gettext_for, request_lang


class EntryForm(Protocol):
    """A source or network form, as far as saving it goes."""

    entry: dict[str, Any]
    errors: dict[str, list[str]]
    general: list[str]


def problems_for(
    problems: Sequence[ConfigProblem], prefix: str, lang: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Split problems into those of one entry (``prefix`` = ``sources[3]``), keyed by form
    field (``options.item`` → ``opt.item``), and the rest (shown at the top), in ``lang``."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for p in problems:
        message = localise(p.message, lang)
        if p.path == prefix or p.path.startswith(prefix + "."):
            rest = p.path[len(prefix) + 1 :]
            parts = rest.split(".")
            if not rest:
                general.append(message)
                continue
            if parts[0] == "options" and len(parts) > 1:
                name = "opt." + parts[1].split("[")[0]
            else:
                name = parts[0].split("[")[0]
            fields.setdefault(name, []).append(message)
        else:
            general.append(f"{p.path}: {message}" if p.path else message)
    return fields, general


def _show_problems(
    request: Request,
    editor: ConfigEditor,
    cf: ConfigFile,
    table: EntryTable,
    form: EntryForm,
    error: ConfigError,
) -> None:
    prefix = editor.key_path(cf, table, form.entry["id"])
    fields, general = problems_for(error.problems, prefix, request_lang(request))
    for k, msgs in fields.items():
        form.errors.setdefault(k, []).extend(msgs)
    form.general.extend(general)


def existing_entry(
    editor: ConfigEditor, cf: ConfigFile, table: EntryTable, entry_id: str | None
) -> dict[str, Any] | None:
    """The entry being edited (None for a new one); 404 when it is not in the file."""
    if entry_id is None:
        return None
    try:
        return editor.entry(cf, table, entry_id)
    except KeyError:
        raise HTTPException(404) from None


def check_entry(
    request: Request,
    editor: ConfigEditor,
    cf: ConfigFile,
    table: EntryTable,
    form: EntryForm,
    replace_id: str | None,
) -> Config | None:
    """The config the form's entry would give (validated as `watcher check-config` would),
    or None with its problems on the form's fields. Nothing is written."""
    try:
        return editor.check_entry(cf, table, form.entry, replace_id=replace_id)
    except ConfigError as e:
        _show_problems(request, editor, cf, table, form, e)
        return None


def refuse_form(
    editor: ConfigEditor, table: EntryTable, form: EntryForm, replace_id: str | None
) -> None:
    """Record in the audit log a save refused by the form's own checks (a field that does
    not parse, an id taken), each problem under its key (``options.item``)."""
    problems = [
        ConfigProblem(
            "options." + name.removeprefix("opt.") if name.startswith("opt.") else name, msg
        )
        for name, msgs in form.errors.items()
        for msg in msgs
    ]
    problems += [ConfigProblem("", msg) for msg in form.general]
    editor.refuse_entry(table, form.entry, replace_id=replace_id, problems=problems)


def conflict_message(t: Gettext) -> str:
    return t(
        "config.toml har ändrats sedan du öppnade formuläret (av någon annan eller i en "
        "textredigerare). Inget sparades. Dina uppgifter finns kvar nedan: jämför med det "
        "sparade och spara igen."
    )


async def save_entry(
    request: Request,
    editor: ConfigEditor,
    cf: ConfigFile,
    table: EntryTable,
    form: EntryForm,
    *,
    existing: Mapping[str, Any] | None,
    version: str,
    render: Callable[..., Response],
) -> Response | None:
    """Save the form's entry; None when saved. ``render(version=…, conflict=…, saved=…,
    status_code=…)`` draws the form again: with its problems (422), or, when config.toml
    is no longer at ``version``, with the admin's input kept, the new version, and the
    entry as saved now when it is known (409)."""
    replace_id = None if existing is None else str(existing["id"])
    try:
        await run_in_threadpool(
            editor.save_entry, cf, table, form.entry, replace_id=replace_id, version=version
        )
    except FileWriteError as e:
        # The file is as it was: the form again, with what the admin typed (500).
        return render(
            version=version,
            conflict=write_failed_message(gettext_for(request), e),
            status_code=500,
        )
    except ConfigError as e:
        _show_problems(request, editor, cf, table, form, e)
        return render(version=version, status_code=422)
    except EditConflict as e:
        # Stale before writing: ``existing`` is what the file holds now. Changed during
        # the write: what it holds now was not read.
        saved = existing if e.actual == cf.version else None
        return render(
            version=e.actual,
            conflict=conflict_message(gettext_for(request)),
            saved=saved,
            status_code=409,
        )
    return None


def write_failed_message(t: Gettext, error: FileWriteError) -> str:
    return t(
        "{file} kunde inte skrivas ({reason}). Inget sparades och filen är oförändrad. "
        "Dina uppgifter finns kvar nedan: spara igen när felet är åtgärdat.",
        file=error.path.name,
        reason=error.reason,
    )


async def delete_entry(
    request: Request, user: str, table: EntryTable, entry_id: str, done: str
) -> Response:
    """Remove a source or network from config.toml; back to its list with ``done`` (or
    the reason it could not be saved)."""
    editor = ConfigEditor(app_of(request), user)
    try:
        await run_in_threadpool(editor.delete_entry, table, entry_id)
    except KeyError:
        raise HTTPException(404) from None
    except (ConfigError, EditConflict) as e:
        t = gettext_for(request)
        session_of(request).flash(t("Kunde inte spara: {error}", error=str(e)), "error")
        return redirect(f"/admin/{table}")
    session_of(request).flash(done)
    return redirect(f"/admin/{table}")
