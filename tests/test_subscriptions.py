"""Self-service subscriptions: the storage room on both databases, the pure parts, and
(further down) the whole flow over HTTP with a real SMTP server on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select

from watcher.storage import Storage
from watcher.storage.schema import deliveries, digests, metadata, optouts
from watcher.storage.subscriptions import PENDING_TTL, Choice, confirm_hash

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NETWORK = Choice("network", network_id="gr-eu")
TOPICS = Choice("topics", areas=("kompetens",), themes=("utbildning",))


# -- storage ------------------------------------------------------------------------------


def test_a_choice_is_pending_until_confirmed(any_storage: Storage) -> None:
    sub = any_storage.add_subscription("Anna@Kommun.se", NETWORK, confirm_hash("s3cret"), T0)
    person = any_storage.subscriber("anna@kommun.se")
    assert person is not None and person.address == "anna@kommun.se"
    assert [s.status for s in person.subscriptions] == ["pending"]
    assert any_storage.network_subscribers() == {}
    assert any_storage.pending_subscription(sub, confirm_hash("wrong"), T0) is None
    assert any_storage.confirm_subscription(sub, confirm_hash("wrong"), T0) is None
    assert any_storage.pending_subscription(sub, confirm_hash("s3cret"), T0) == (
        "anna@kommun.se",
        NETWORK,
    )
    assert any_storage.confirm_subscription(sub, confirm_hash("s3cret"), T0) == "anna@kommun.se"
    assert any_storage.network_subscribers() == {"gr-eu": ("anna@kommun.se",)}
    # A link works once.
    assert any_storage.confirm_subscription(sub, confirm_hash("s3cret"), T0) is None


def test_a_stale_link_confirms_nothing_and_is_cleared(any_storage: Storage) -> None:
    sub = any_storage.add_subscription("a@kommun.se", NETWORK, confirm_hash("x"), T0)
    late = T0 + PENDING_TTL + timedelta(minutes=1)
    assert any_storage.confirm_subscription(sub, confirm_hash("x"), late) is None
    any_storage.add_subscription("b@kommun.se", TOPICS, confirm_hash("y"), late)
    assert any_storage.subscriber("a@kommun.se") is None  # nothing left of a


def test_confirming_twice_the_same_choice_keeps_one(any_storage: Storage) -> None:
    a = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("1"), T0)
    b = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("2"), T0)
    any_storage.confirm_subscription(a, confirm_hash("1"), T0)
    any_storage.confirm_subscription(b, confirm_hash("2"), T0)
    person = any_storage.subscriber("a@kommun.se")
    assert person is not None and [s.id for s in person.active] == [b]
    assert person.personal_id.startswith("p-")


def test_change_frequency_and_end(any_storage: Storage) -> None:
    a = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("1"), T0)
    n = any_storage.add_subscription("a@kommun.se", NETWORK, confirm_hash("2"), T0)
    any_storage.confirm_subscription(a, confirm_hash("1"), T0)
    any_storage.confirm_subscription(n, confirm_hash("2"), T0)
    assert any_storage.set_frequency("a@kommun.se", "daily")
    changed = Choice("topics", areas=("partners",))
    assert any_storage.change_subscription("a@kommun.se", a, changed)
    assert not any_storage.change_subscription("b@kommun.se", a, changed)
    person = any_storage.subscriber("a@kommun.se")
    assert person is not None and person.frequency == "daily"
    assert person.personal[0].choice.areas == ("partners",)
    assert any_storage.end_subscriptions("a@kommun.se", [n]) == 1
    assert any_storage.network_subscribers() == {}
    assert any_storage.end_subscriptions("a@kommun.se") == 1
    assert any_storage.subscriber("a@kommun.se") is None  # nobody kept without a choice


def test_deleting_a_person_removes_everything_of_theirs(any_storage: Storage) -> None:
    a = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("1"), T0)
    any_storage.confirm_subscription(a, confirm_hash("1"), T0)
    person = any_storage.subscriber("a@kommun.se")
    assert person is not None
    with any_storage.begin() as conn:
        own = conn.execute(
            insert(digests)
            .values(network_id=person.personal_id, window_end=T0, created_at=T0, status="done")
            .returning(digests.c.id)
        ).scalar_one()
        other = conn.execute(
            insert(digests)
            .values(network_id="gr-eu", window_end=T0, created_at=T0, status="done")
            .returning(digests.c.id)
        ).scalar_one()
        for digest_id, addr, mid in (
            (own, "a@kommun.se", "<1@x>"),
            (other, "A@kommun.se", "<2@x>"),
            (other, "b@kommun.se", "<3@x>"),
        ):
            conn.execute(
                insert(deliveries).values(
                    digest_id=digest_id, address=addr, message_id=mid, status="sent"
                )
            )
        conn.execute(insert(optouts).values(network_id="gr-eu", address="a@kommun.se", at=T0))
    assert any_storage.delete_subscriber("A@kommun.se")
    assert not any_storage.delete_subscriber("a@kommun.se")
    with any_storage.engine.connect() as conn:
        assert conn.execute(select(deliveries.c.address)).scalars().all() == ["b@kommun.se"]
        assert conn.execute(select(digests.c.network_id)).scalars().all() == ["gr-eu"]
        assert conn.execute(select(optouts)).all() == []
    assert any_storage.subscribers() == []


def test_the_tables_are_what_the_migration_makes(migrated_storage: Storage) -> None:
    with migrated_storage.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)

    def mine(diff: Any) -> bool:
        return any("subscri" in repr(x) for x in (diff if isinstance(diff, list) else [diff]))

    assert [d for d in diffs if mine(d)] == []


# -- the whole flow over HTTP, with a real SMTP server on loopback ----------------------------

import re  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from notifications.delivery import run_digests, run_personal_digests  # noqa: E402
from notifications.subscriptions import matches_choice  # noqa: E402
from tests.digest_builders import RunningSmtp, SmtpSink, start_smtp  # noqa: E402
from tests.web_builders import (  # noqa: E402
    BASE_CONFIG,
    PASSWORD,
    LiveServer,
    csrf_of,
    login,
    raw,
    seed,
)
from watcher.app import App  # noqa: E402

ADDRESS = "ny.medlem@kommun.se"


@pytest.fixture
def smtp() -> Iterator[RunningSmtp]:
    g = start_smtp(SmtpSink())
    try:
        yield next(g)
    finally:
        g.close()


@pytest.fixture
def sub_app(make_app: Any, smtp: RunningSmtp, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("WATCHER_SECRET_KEY", raising=False)
    app: App = make_app(
        {
            **BASE_CONFIG,
            "email": {"backend": "smtp", "smtp": dict(smtp.settings())},
            "subscriptions": {"allowed_domains": ["kommun.se"]},
        }
    )
    return app


@pytest.fixture
def web(sub_app: App) -> Iterator[httpx.Client]:
    with (
        LiveServer(sub_app) as live,
        httpx.Client(base_url=live.url, follow_redirects=False, timeout=20) as c,
    ):
        yield c


def mails_to(smtp: RunningSmtp, address: str) -> list[Any]:
    return [a.message for a in smtp.sink.accepted if address in [r.lower() for r in a.rcpt_tos]]


def body_of(message: Any) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content())


def link(text: str, kind: str) -> str:
    m = re.search(rf"https?://[^\s\"<>]*(/prenumerera/{kind}/[^\s\"<>]+)", text)
    assert m, text
    return m.group(1)


def signup(web: httpx.Client, **form: Any) -> httpx.Response:
    return web.post("/prenumerera", data={"email": ADDRESS, **form})


def confirm_last(web: httpx.Client, smtp: RunningSmtp) -> str:
    """Follow the newest confirmation link: the page only reads, its button confirms.
    Returns the preferences page's path."""
    confirmation = mails_to(smtp, ADDRESS)[-1]
    assert "Bekräfta" in confirmation["Subject"]
    path = link(body_of(confirmation), "bekrafta")
    page = web.get(path)
    assert page.status_code == 200 and 'method="post"' in page.text
    done = web.post(path)
    assert done.status_code == 303
    return str(done.headers["location"]).split("?")[0]


def test_sign_up_confirm_receive_change_and_end(
    web: httpx.Client, sub_app: App, smtp: RunningSmtp, clock: Any
) -> None:
    seed(sub_app, "esf", [raw("k1", "Utlysning: kompetensförsörjning", deadlines=("2027-03-01",))])
    run_digests(sub_app, ["gr-eu"])  # the network's first digest, before anyone signs up
    assert "/prenumerera" in web.get("/subscribe").text

    form = web.get("/prenumerera")
    assert form.status_code == 200 and 'name="email"' in form.text
    r = signup(web, kind="network", network="gr-eu")
    assert r.status_code == 200 and "Kolla din e-post" in r.text
    # Nothing is active before the link is followed.
    assert sub_app.storage.network_subscribers() == {}
    clock.advance(days=1)
    seed(
        sub_app, "esf", [raw("k2", "Utlysning: hållbar stadsutveckling", deadlines=("2027-04-01",))]
    )
    run_digests(sub_app, ["gr-eu"])
    assert len(mails_to(smtp, ADDRESS)) == 1  # only the confirmation

    # Following the link's page alone confirms nothing (a link scanner GETs it).
    path = link(body_of(mails_to(smtp, ADDRESS)[0]), "bekrafta")
    assert web.get(path).status_code == 200
    assert sub_app.storage.network_subscribers() == {}
    prefs = confirm_last(web, smtp)
    assert sub_app.storage.network_subscribers() == {"gr-eu": (ADDRESS,)}
    assert web.post(path).status_code == 400  # used

    clock.advance(days=1)
    seed(
        sub_app,
        "esf",
        [raw("k3", "Utlysning: digital kompetens i skolan", deadlines=("2027-05-01",))],
    )
    [outcome] = run_digests(sub_app, ["gr-eu"])
    assert outcome.sent == 2  # anna (configured) and the subscriber
    [digest] = mails_to(smtp, ADDRESS)[1:]
    assert "digital kompetens" in body_of(digest)
    from_digest = web.get(link(body_of(digest), "installningar"))
    assert from_digest.status_code == 200 and ADDRESS in from_digest.text
    assert "/prenumerera/installningar/" in digest["List-Unsubscribe"]
    # Exactly once: a second run finds nothing new.
    run_digests(sub_app, ["gr-eu"])
    assert len(mails_to(smtp, ADDRESS)) == 2

    # A saved search: the person's own digest, weekly by default, daily when changed.
    r = signup(web, kind="search", query="robotar")
    assert r.status_code == 200
    confirm_last(web, smtp)
    page = web.get(prefs)
    assert page.status_code == 200 and "robotar" in page.text and "En gång i veckan" in page.text
    assert web.post(prefs, data={"action": "frequency", "frequency": "daily"}).status_code == 303
    person = sub_app.storage.subscriber(ADDRESS)
    assert person is not None and person.frequency == "daily"
    run_personal_digests(sub_app, "daily")  # the first: what is current and matches
    clock.advance(days=1)
    seed(
        sub_app,
        "nyheter",
        [raw("n1", "Partnersökning: robotar i äldreomsorgen", link="https://news.example/1")],
    )
    seed(sub_app, "esf", [raw("k4", "Utlysning: kultur och fritid", deadlines=("2027-06-01",))])
    outcomes = run_personal_digests(sub_app, "daily")
    assert [o.sent for o in outcomes] == [1]
    own = mails_to(smtp, ADDRESS)[-1]
    assert "robotar i äldreomsorgen" in body_of(own) and "kultur och fritid" not in body_of(own)
    assert link(body_of(own), "installningar").startswith("/prenumerera/installningar/")
    assert run_personal_digests(sub_app, "weekly") == []

    # Change the choice: the search's words.
    search = next(s for s in person.active if s.choice.kind == "search")
    r = web.post(
        prefs, data={"action": "change", "subscription": str(search.id), "query": "kultur"}
    )
    assert r.status_code == 303
    person = sub_app.storage.subscriber(ADDRESS)
    assert person is not None and [s.choice.query for s in person.personal] == ["kultur"]

    # End everything: no more digests of either kind.
    assert web.post(prefs, data={"action": "end_all"}).status_code == 303
    assert sub_app.storage.subscriber(ADDRESS) is None
    assert "Du har ingen prenumeration" in web.get(prefs).text
    count = len(mails_to(smtp, ADDRESS))
    clock.advance(days=1)
    seed(sub_app, "esf", [raw("k5", "Utlysning: kultur i skolan", deadlines=("2027-07-01",))])
    run_digests(sub_app, ["gr-eu"])
    run_personal_digests(sub_app)
    assert len(mails_to(smtp, ADDRESS)) == count


def test_a_domain_not_allowed_is_refused_plainly(
    web: httpx.Client, sub_app: App, smtp: RunningSmtp
) -> None:
    r = web.post(
        "/prenumerera", data={"email": "a@gmail.com", "kind": "network", "network": "gr-eu"}
    )
    assert r.status_code == 400
    assert "gmail.com" in r.text and "kommun.se" in r.text
    assert sub_app.storage.subscribers() == [] and smtp.sink.accepted == []
    r = web.post(
        "/prenumerera", data={"email": "inte en adress", "kind": "network", "network": "gr-eu"}
    )
    assert r.status_code == 400


def test_the_answer_never_tells_who_subscribes_and_sign_up_is_limited(
    web: httpx.Client, sub_app: App, smtp: RunningSmtp
) -> None:
    first = signup(web, kind="network", network="gr-eu")
    confirm_last(web, smtp)
    again = signup(web, kind="network", network="gr-eu")
    assert first.status_code == again.status_code == 200
    assert first.text == again.text
    signup(web, kind="network", network="gr-eu")
    limited = signup(web, kind="network", network="gr-eu")
    assert limited.status_code == 429 and len(mails_to(smtp, ADDRESS)) == 3


def test_one_click_from_a_digest_ends_that_digest_only(
    web: httpx.Client, sub_app: App, smtp: RunningSmtp
) -> None:
    signup(web, kind="network", network="gr-eu")
    confirm_last(web, smtp)
    signup(web, kind="topics", areas="kompetens")
    confirm_last(web, smtp)
    from notifications.subscriptions import PreferenceLinks

    token = PreferenceLinks.for_app(sub_app).token(ADDRESS, "gr-eu")
    r = web.post(f"/prenumerera/installningar/{token}", content=b"List-Unsubscribe=One-Click")
    assert r.status_code == 200
    person = sub_app.storage.subscriber(ADDRESS)
    assert person is not None and [s.choice.kind for s in person.active] == ["topics"]


def test_the_admin_sees_exports_and_deletes_a_subscriber(
    web: httpx.Client, sub_app: App, smtp: RunningSmtp
) -> None:
    signup(web, kind="topics", areas="kompetens", themes="utbildning")
    confirm_last(web, smtp)
    assert login(web).status_code == 303
    page = web.get("/admin/subscribers")
    assert page.status_code == 200 and ADDRESS in page.text
    export = web.get("/admin/subscribers/export", params={"address": ADDRESS})
    assert export.status_code == 200
    data = export.json()
    assert data["address"] == ADDRESS
    assert data["subscriptions"][0]["areas"] == ["kompetens"]
    assert set(data) == {"address", "frequency", "created_at", "subscriptions"}
    r = web.post(
        "/admin/subscribers/delete",
        data={"address": ADDRESS, "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 303
    assert sub_app.storage.subscriber(ADDRESS) is None
    assert ADDRESS not in web.get("/admin/subscribers").text


def test_search_choice_needs_every_word() -> None:
    class It:
        title = "Utlysning: Robotar i äldreomsorgen"
        summary = "Partner sökes"
        programme = None
        kind = "call"
        tags = ()

    assert matches_choice(It(), Choice("search", query="robotar partner"))  # type: ignore[arg-type]
    assert not matches_choice(It(), Choice("search", query="robotar skola"))  # type: ignore[arg-type]
    assert not matches_choice(It(), Choice("search", query="robotar", areas=("kompetens",)))  # type: ignore[arg-type]
