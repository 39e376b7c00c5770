"""Digest benchmark: build and render the digests of 30 networks × 100 members over 2,000
stored items (target ≤ 2 s), then the whole exactly-once run (record, claim, send to a
transport that keeps nothing, mark sent) for the same networks.

The store is SQLite in a temporary folder: 1,850 items seen a month ago (each network has
had a digest since: its first, which lists every current call up to the caps per area;
its time and size are printed too), 150 new this week, 100 notable updates; six areas,
five themes, and networks that follow different slices of them.

    python bench/digest.py [--networks 30] [--members 100] [--items 2000] [--seeded DIR]

``--seeded DIR`` keeps the seeded database in DIR (made on the first run, copied for each
later one): seeding 100,000 items takes minutes, the timed part seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifications.delivery import run_digests
from notifications.digest import build_digests
from notifications.email import MessageFactory, Outgoing, Sender, list_id, message_id
from notifications.render import render_digests
from notifications.unsubscribe import Unsubscriber
from watcher.app import App
from watcher.config import AREAS, THEMES, validate_data
from watcher.storage.deliveries import DeliveryStore
from watcher.types import (
    Classification,
    Evidence,
    FieldChange,
    Item,
    Kind,
    NewItem,
    PollResult,
    PollStatus,
    Status,
    Tag,
    Updated,
)

NOW = datetime(2026, 11, 9, 7, 0, tzinfo=UTC)


class NullTransport:
    """Accepts every message and keeps nothing (the benchmark measures our side)."""

    def __init__(self) -> None:
        self.count = 0

    def send(self, message: Outgoing, sender: str, recipient: str) -> None:
        message.as_bytes()
        self.count += 1

    def close(self) -> None:
        return None


def make_item(n: int, rnd: random.Random) -> Item:
    deadline = NOW + timedelta(days=rnd.randint(-20, 120), hours=rnd.randint(0, 12))
    status = rnd.choice((Status.OPEN, Status.OPEN, Status.FORTHCOMING, Status.CLOSED))
    return Item(
        source_id=f"s{n % 12}",
        key=f"k{n}",
        title=f"Utlysning {n}: kompetensförsörjning och omställning i Västsverige",
        link=f"https://example.se/utlysning/{n}",
        summary="ESF+ stödjer projekt som främjar kompetensförsörjning. " * 6,
        language="sv",
        kind=Kind.CALL,
        status=status,
        programme=rnd.choice(("ESF+", "ERUF", "Interreg ÖKS", "Horizon Europe", None)),
        identifier=None,
        published=None,
        opening=deadline - timedelta(days=60),
        deadlines=(deadline,),
        budget=None,
        budget_amount=None,
        currency=None,
        regions=(),
        topics=(),
        content_hash=f"h{n}",
    )


def seed(app: App, n_items: int, rnd: random.Random, last_digest: Callable[[], None]) -> None:
    """The month before (seen by last week's digests: ``last_digest`` records them), then
    this week: 150 new items and 100 notable updates of older items."""
    storage = app.storage
    items = [make_item(n, rnd) for n in range(n_items)]
    old, new = items[: n_items - 150], items[n_items - 150 :]
    ids: list[int] = []
    by_id: dict[int, Item] = {}

    def store(batch: list[Item], at: datetime, baseline: bool) -> list[int]:
        stored: list[int] = []
        for src in sorted({i.source_id for i in batch}):
            mine = [i for i in batch if i.source_id == src]
            out = storage.apply(
                src,
                [NewItem(i, baseline=baseline) for i in mine],
                PollResult(src, PollStatus.OK, new=len(mine)),
                at,
            )
            stored.extend(out.new_ids)
            by_id.update(zip(out.new_ids, mine, strict=True))
        return stored

    def tag(stored: list[int], at: datetime) -> None:
        results = {}
        for item_id in stored:
            areas = rnd.sample(AREAS, rnd.randint(1, 2))
            themes = rnd.sample(THEMES, rnd.randint(1, 2))
            tags = tuple(
                Tag(kind, t, f"{t}-regel", (Evidence("title", "kompetens"),))
                for kind, values in (("area", areas), ("theme", themes))
                for t in values
            )
            results[item_id] = Classification(tags, True)
        storage.set_tags_many(results, at)

    ids = store(old, NOW - timedelta(days=30), True)
    tag(ids, NOW - timedelta(days=30))
    last_digest()
    fresh = store(new, NOW - timedelta(days=2), False)
    tag(fresh, NOW - timedelta(days=2))
    # 100 notable updates (moved deadlines) of older items, this week.
    for item_id in ids[:100]:
        it = by_id[item_id]
        moved = Item(**{**it.__dict__, "deadlines": (it.deadlines[0] + timedelta(days=7),)})
        change = FieldChange(
            "deadlines", [it.deadlines[0].isoformat()], [moved.deadlines[0].isoformat()]
        )
        storage.apply(
            it.source_id,
            [Updated(moved, item_id, (change,))],
            PollResult(it.source_id, PollStatus.OK, updated=1),
            NOW - timedelta(days=1),
        )


def networks(n: int, members: int, rnd: random.Random) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        out.append(
            {
                "id": f"net{i:02d}",
                "name": f"EU-nätverk {i}",
                "areas": ["all"] if i % 5 == 0 else rnd.sample(AREAS, 3),
                "themes": ["all"] if i % 3 == 0 else rnd.sample(THEMES, 2),
                "members": [f"medlem{m}@kommun{i}.se" for m in range(members)],
                "schedule": "mon 08:00",
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=30)
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--seeded", type=Path, default=None, help="keep the seeded database here")
    args = ap.parse_args()
    rnd = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "watcher": {"database_url": f"sqlite:///{tmp}/bench.db"},
            "email": {
                "outbox": f"{tmp}/outbox",
                "sender": "EU-bevakning <eu@goteborgsregionen.se>",
            },
            "networks": networks(args.networks, args.members, rnd),
        }
        clock = {"now": NOW}
        kept = None
        if args.seeded is not None:
            kept = args.seeded / f"bench-{args.networks}-{args.members}-{args.items}.db"
            if kept.exists():
                shutil.copy(kept, f"{tmp}/bench.db")
        app = App(validate_data(data, f"{tmp}/config.toml"), clock=lambda: clock["now"])
        app.storage.ensure_schema()

        firsts: dict[str, float] = {}

        def last_digest() -> None:
            """Last week's digests, recorded as a run records them (what they looked at
            included), so this week's are ordinary ones: only what came since is read.
            They are each network's first: every current call, capped per area."""
            clock["now"] = NOW - timedelta(days=7)
            t = time.perf_counter()
            outcomes = run_digests(app, transport=NullTransport())
            firsts["run"] = time.perf_counter() - t
            firsts["new"] = max(o.new for o in outcomes)
            records = DeliveryStore(app.storage).digests(limit=len(outcomes))
            firsts["payload"] = max(len(json.dumps(r.payload)) for r in records)
            firsts["shown"] = max(len(r.item_ids) for r in records)
            clock["now"] = NOW

        if kept is None or not kept.exists():
            seed(app, args.items, rnd, last_digest)
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                app.storage.close()
                shutil.copy(f"{tmp}/bench.db", kept)
        ids = [n.id for n in app.config.networks]

        t0 = time.perf_counter()
        digests = build_digests(app, ids, NOW)
        t1 = time.perf_counter()
        rendered = render_digests(digests)
        t2 = time.perf_counter()
        sender = Sender.parse(app.config.email.sender)
        unsub = Unsubscriber.for_app(app)
        messages = 0
        for d, r in zip(digests, rendered, strict=True):
            net = app.config.network(d.network_id)
            factory = MessageFactory(
                sender=sender,
                subject=r.subject,
                list_id=list_id(net.id, net.name, sender.domain),
                date=NOW,
                template=r.template,
            )
            for member in net.members:
                msg = factory.build(
                    to=member,
                    message_id=message_id(net.id, d.window_end, member, sender.domain),
                    unsubscribe_url=unsub.url(net.id, member),
                )
                msg.as_bytes()
                messages += 1
        t3 = time.perf_counter()

        transport = NullTransport()
        t4 = time.perf_counter()
        outcomes = run_digests(app, transport=transport)
        t5 = time.perf_counter()
        app.close()

    new = [len(d.new) for d in digests]
    upd = [len(d.updated) for d in digests]
    size = sum(len(r.html) for r in rendered) / len(rendered)
    print(
        f"{args.networks} networks × {args.members} members over {args.items} items "
        f"(new per digest {min(new)}–{max(new)}, updated {min(upd)}–{max(upd)}, "
        f"HTML ≈ {size / 1024:.0f} KB)"
    )
    if firsts:
        print(
            f"first digests (seeding):      {firsts['run']:6.2f} s  (up to {firsts['new']:.0f} "
            f"current calls, {firsts['shown']:.0f} shown; largest payload "
            f"{firsts['payload'] / 1024:.0f} KB)"
        )
    print(f"build (load + select):        {t1 - t0:6.2f} s")
    print(f"render (30 × HTML + text):    {t2 - t1:6.2f} s")
    print(f"{messages} member messages:     {t3 - t2:6.2f} s  (link, MIME, bytes)")
    print(f"build + render, total:        {t3 - t0:6.2f} s  (target ≤ 2 s)")
    sent = sum(o.sent for o in outcomes)
    print(
        f"exactly-once run:             {t5 - t4:6.2f} s  ({sent} sent to a null transport; "
        f"record, claim, mark sent in SQLite)"
    )


if __name__ == "__main__":
    main()
