"""Admin networks: add, edit (members, schedule, areas, themes), delete, the digest preview,
the delivery log."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.web_builders import config_text, csrf_of, post_form, raw, seed
from watcher.app import App


def network_form(**over: object) -> dict[str, object]:
    form: dict[str, object] = {
        "name": "GR:s EU-nätverk",
        "areas": ["fonder-program", "kompetens"],
        "themes": ["all"],
        "members": "anna@example.se\nbo@example.se",
        "schedule": "mon,thu 08:00",
        "language": "sv",
        "enabled": "1",
    }
    form.update(over)
    return form


def field_errors(html: str, name: str) -> list[str]:
    return re.findall(rf'<p class="error-message" id="e-f-{name}">(.*?)</p>', html, re.S)


def test_editing_a_network_saves_it_and_shows_the_digest_preview(
    web_app: App, admin: httpx.Client
) -> None:
    seed(web_app, "esf", [raw("a", "Utlysning om kompetensutveckling för lärare", status="open")])
    r = post_form(admin, "/admin/networks/gr-eu", "/admin/networks/gr-eu", network_form())
    assert r.status_code == 303 and r.headers["location"] == "/admin/networks/gr-eu/digest"
    net = web_app.config.network("gr-eu")
    assert net.members == ("anna@example.se", "bo@example.se")
    assert (net.areas, net.themes, net.schedule) == (
        ("fonder-program", "kompetens"),
        ("all",),
        "mon,thu 08:00",
    )
    saved = tomllib.loads(config_text(web_app))["networks"][0]
    assert "themes" not in saved  # "all" is the default: not written
    preview = admin.get(r.headers["location"])
    assert preview.status_code == 200
    assert "Nästa utskick till GR:s EU-nätverk" in preview.text
    assert "<strong>1</strong> nya" in preview.text
    assert "* Utlysning om kompetensutveckling för lärare" in preview.text  # the text part
    frame = admin.get("/admin/networks/gr-eu/digest.html")
    assert "Utlysning om kompetensutveckling för lärare" in frame.text
    assert "sandbox" in frame.headers["content-security-policy"]
    changes = web_app.storage.audit_entries()[0]["details"]["changes"]
    assert changes["members"] == {
        "old": ["anna@example.se"],
        "new": ["anna@example.se", "bo@example.se"],
    }


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        (
            {"members": "anna@example.se\nnot-an-address"},
            "members",
            "'not-an-address' är inte en enda e-postadress",
        ),
        ({"members": "anna@example.se\nAnna@example.se"}, "members", "står två gånger"),
        (
            {"members": "evil@example.se\r\nBcc: x@example.se"},
            "members",
            "är inte en enda e-postadress",
        ),
        ({"schedule": "whenever"}, "schedule", "ange 'daily HH:MM'"),
        ({"schedule": "mon 25:00"}, "schedule", "ange 'daily HH:MM'"),
        ({"name": " "}, "name", "Ange ett namn"),
    ],
    ids=["email", "duplicate", "header-injection", "schedule", "hour", "name"],
)
def test_a_bad_value_gets_an_error_on_its_field(
    web_app: App, admin: httpx.Client, override: dict[str, str], field: str, message: str
) -> None:
    before = config_text(web_app)
    r = post_form(admin, "/admin/networks/gr-eu", "/admin/networks/gr-eu", network_form(**override))
    assert r.status_code == 422
    errors = " ".join(field_errors(r.text, field)).replace("&#39;", "'")
    assert message in errors, errors
    assert config_text(web_app) == before
    refused = web_app.storage.audit_entries()[0]
    assert (refused["action"], refused["target"]) == ("network.edit_refused", "gr-eu")
    assert refused["details"]["reason"] == "invalid" and refused["details"]["problems"]


def test_adding_and_deleting_a_network(web_app: App, admin: httpx.Client) -> None:
    r = post_form(
        admin,
        "/admin/networks/new",
        "/admin/networks/new",
        network_form(
            id="stad", name="Göteborgs Stads EU-nätverk", themes=["utbildning"], language="en"
        ),
    )
    assert r.status_code == 303
    net = web_app.config.network("stad")
    assert (net.themes, net.language) == (("utbildning",), "en")
    r = post_form(admin, "/admin/networks/new", "/admin/networks/new", network_form(id="stad"))
    assert r.status_code == 422 and "Det finns redan ett nätverk med id stad" in r.text
    confirm = admin.get("/admin/networks/stad/delete")
    r = admin.post("/admin/networks/stad/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert r.status_code == 303
    assert [n.id for n in web_app.config.networks] == ["gr-eu"]
    assert [e["action"] for e in web_app.storage.audit_entries()][:3] == [
        "network.delete",
        "network.add_refused",  # the id was taken
        "network.add",
    ]


def test_the_delivery_log_shows_sent_deliveries_and_opt_outs(
    web_app: App, admin: httpx.Client
) -> None:
    from notifications.delivery import run_digests
    from watcher.storage.deliveries import DeliveryStore

    seed(web_app, "esf", [raw("a", "Utlysning om arbetsmarknad", status="open")])
    run_digests(web_app, ["gr-eu"])  # the file backend: written to the outbox, marked sent
    DeliveryStore(web_app.storage).add_optout("gr-eu", "bo@example.se", web_app.now())
    page = admin.get("/admin/deliveries")
    assert page.status_code == 200
    row = page.text.split("anna@example.se")[1].split("</tr>")[0]
    assert "skickat" in row
    assert "bo@example.se" in page.text  # the opt-out list
    failed = admin.get("/admin/deliveries", params={"status": "failed"})
    assert "anna@example.se" not in failed.text


def test_the_network_list(web_app: App, admin: httpx.Client) -> None:
    page = admin.get("/admin/networks").text
    assert "GR:s EU-nätverk" in page and 'href="/admin/networks/gr-eu/digest"' in page
    assert admin.get("/admin/networks/nope").status_code == 404
    assert admin.get("/admin/networks/nope/digest").status_code == 404


def test_the_admin_sees_and_steers_each_networks_digest(web_app: App, admin: httpx.Client) -> None:
    """Issue 15.3: per network the next digest time, the last one sent, and "Skicka nu",
    which sends through the exactly-once run (a second press sends nothing new)."""
    seed(web_app, "esf", [raw("a", "Utlysning om arbetsmarknad", status="open")])
    page = admin.get("/admin/networks").text
    row = page.split("GR:s EU-nätverk")[1].split("</tr>")[0]
    assert "Senast skickat" in row and "aldrig" in row
    token = csrf_of(page)
    r = admin.post("/admin/networks/gr-eu/send", data={"csrf_token": token})
    assert r.status_code == 303
    page = admin.get("/admin/networks").text
    assert "Utskick till gr-eu: 1 skickade, 0 misslyckade" in page
    row = page.split("GR:s EU-nätverk")[1].split("</tr>")[0]
    assert "aldrig" not in row.split("Senast skickat")[1]
    outbox = Path(web_app.config.email.outbox)
    assert len(list(outbox.rglob("*.eml"))) == 1
    admin.post("/admin/networks/gr-eu/send", data={"csrf_token": token})
    assert "Inget utskick till gr-eu" in admin.get("/admin/networks").text
    assert len(list(outbox.rglob("*.eml"))) == 1  # nothing new: nothing sent again
    assert web_app.storage.audit_entries()[0]["action"] == "network.send_now"
