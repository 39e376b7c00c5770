"""Latency of the item list, search and item page with N stored items, from a load client on
loopback.

    python bench/web.py [--items 10000] [--database URL] [--keep DIR] [--requests 400]
                        [--concurrency 4] [--processes 1] [--only NAME] [--json]

Builds an installation (config.toml, and a SQLite database in the same folder unless
``--database`` names another, e.g. an empty PostgreSQL database or schema), stores up to
``BASE`` (10,000) synthetic items through the real normalise → store → classify path, and
reaches ``--items`` by copying those rows in bulk inside the database (``INSERT … SELECT``:
each copy is a new item, with its own uid, links, history and tags; the texts repeat, so a
search finds the same share of items at every size). Then it starts ``watcher run
--no-scheduler`` in its own process on 127.0.0.1 and sends each scenario's requests from
``--concurrency`` concurrent clients (after a warm-up). Prints the median and
95th-percentile latency and the throughput of each scenario. ``--processes N`` starts N
server processes on one database (docs/deploy.md) and sends each request to the next one in
turn, as a proxy's round robin does.

``--keep DIR`` builds in DIR and keeps it; a second run with the same DIR (and database)
measures again without building (the server upgrades the schema first if it is behind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import tomlkit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.procstat import cpu_seconds  # noqa: E402
from watcher.app import App  # noqa: E402
from watcher.config import validate_data  # noqa: E402
from watcher.pipeline.normalise import normalise  # noqa: E402
from watcher.types import NewItem, PollResult, PollStatus, RawItem  # noqa: E402

BASE = 10_000  # items stored through the real path; the rest are copies made in the database

SCENARIOS = {
    "list, newest first": "/",
    "list, page 40": "/?page=40",
    "list, by deadline": "/?sort=deadline",
    "search 'kompetensförsörjning'": "/?q=kompetensf%C3%B6rs%C3%B6rjning",
    "search + area + sort": "/?q=utlysning&area=fonder-program&sort=deadline",
    "search, newest first": "/?q=utlysning&sort=newest",
    "search, few matches": "/?q=9904",  # one item in 10,000 (a title's number)
    "search, no match": "/?q=v%C3%A4tgasdal",
    "search by deadline, no match": "/?q=v%C3%A4tgasdal&sort=deadline",
    "api search, 50 items": "/api/items?q=innovation&limit=50",
    "item page": "/items/{item_id}",
    "deadline timeline, 12 weeks": "/deadlines",
}

SUBJECTS = [
    "kompetensförsörjning inom vård och omsorg",
    "hållbar stadsutveckling och klimatanpassning",
    "digitalisering i skolan",
    "social innovation för unga utanför arbetsmarknaden",
    "energieffektivisering i kommunala fastigheter",
    "cirkulär ekonomi i regionen",
    "integration av nyanlända",
    "smart specialisering och innovation",
    "vuxenutbildning och livslångt lärande",
    "Interreg-samarbete över gränsen",
    "civil protection and disaster resilience",
    "green transition of SMEs",
    "school education and youth exchanges",
    "urban mobility and public transport",
    "health and social care in ageing societies",
]
KINDS = ["Utlysning", "Call for proposals", "Samråd", "Nyhet", "Webbinarium", "Partnersökning"]
PROGRAMMES = ["ESF+", "ERUF", "Interreg ÖKS", "Horizon Europe", "Erasmus+", "LIFE", "CERV", None]
WORDS = [
    "projekt",
    "kommuner",
    "region",
    "samverkan",
    "stöd",
    "ansökan",
    "finansiering",
    "partner",
    "EU",
    "medel",
    "arbete",
    "utveckling",
    "program",
    "insatser",
    "målgrupp",
    "budget",
    "villkor",
    "information",
    "möte",
    "seminarium",
    "project",
    "funding",
    "partners",
    "cooperation",
    "applicants",
    "eligible",
    "activities",
    "results",
    "impact",
]


def synthetic(n: int, seed: int = 7) -> list[RawItem]:
    rnd = random.Random(seed)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    out = []
    for i in range(n):
        subject = rnd.choice(SUBJECTS)
        kind = rnd.choice(KINDS)
        deadline = start + timedelta(days=rnd.randint(-200, 400))
        summary = f"{kind} om {subject}. " + " ".join(rnd.choice(WORDS) for _ in range(45))
        out.append(
            RawItem(
                key=f"item-{i}",
                title=f"{kind}: {subject} ({i})",
                link=f"https://example.org/items/{i}",
                summary=summary,
                status=rnd.choice(["open", "forthcoming", "closed"]),
                programme=rnd.choice(PROGRAMMES),
                deadlines=(deadline.date().isoformat(),),
                published=(deadline - timedelta(days=60)).date().isoformat(),
            )
        )
    return out


def build(folder: Path, n: int, database: str | None = None) -> Path:
    """A config and a database with ``n`` items, stored and tagged as a poll would."""
    sources = [
        {"id": f"src{k}", "name": f"Källa {k}", "kind": "rss", "url": f"https://s{k}.example/feed"}
        for k in range(5)
    ]
    data = {
        "watcher": {"database_url": database or f"sqlite:///{folder / 'watcher.db'}"},
        "email": {"outbox": str(folder / "outbox")},
        "sources": sources,
        "networks": [{"id": "gr", "name": "GR", "members": ["a@example.se"]}],
    }
    path = folder / "config.toml"
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    app = App(validate_data(data, str(path)), clock=lambda: now)
    app.storage.ensure_schema()
    classifier = app.classifier
    assert classifier is not None
    base_n = min(n, BASE)
    raws = synthetic(base_n)
    per = -(-base_n // len(sources))
    for k, src_data in enumerate(sources):
        src = app.config.source(src_data["id"])
        chunk = raws[k * per : (k + 1) * per]
        items = [normalise(r, src, now, app.config.tz) for r in chunk]
        for at in range(0, len(items), 1000):
            part = items[at : at + 1000]
            outcome = app.storage.apply(
                src.id,
                [NewItem(it) for it in part],
                PollResult(src.id, PollStatus.OK, new=len(part), parsed=len(part)),
                now,
            )
            stored = app.storage.get_items(list(outcome.new_ids))
            app.storage.set_tags_many({it.id: classifier(it, src) for it in stored}, now)
    if n > base_n:
        replicate(app, base_n, n)
    app.close()
    return path


def replicate(app: App, base_n: int, n: int) -> None:
    """Copies of the first ``base_n`` items (ids 1…base_n) until there are ``n``: copy k
    of item i gets id i + k·base_n, its own uid and link keys, and the item's tags and
    history. Plain SQL on both databases: one ``INSERT … SELECT`` per table, over every
    copy number at once (a recursive CTE, the same on both), then ``ANALYZE``.

    On PostgreSQL the two GIN indexes (the tsvector's and the trigrams') are dropped for
    the copies and made again after (their definitions as the database has them): one
    index build over a million rows takes minutes less than a million inserts into it."""
    import sqlalchemy as sa

    from watcher.storage.schema import item_changes, item_sources, items, tags

    def cols(table: sa.Table, skip: tuple[str, ...] = ()) -> list[str]:
        return [c.name for c in table.columns if c.name not in skip]

    def q(name: str) -> str:
        return f'"{name}"'

    ic, lc, cc, tc = (
        ", ".join(map(q, c))
        for c in (
            cols(items, ("id", "uid")),
            cols(item_sources, ("id", "item_id", "key")),
            cols(item_changes, ("id", "item_id")),
            cols(tags, ("item_id",)),
        )
    )
    copies = -(-n // base_n)  # with the originals; the last copy may be partial
    engine = app.storage.engine
    pg = engine.dialect.name == "postgresql"
    cte = "WITH RECURSIVE g(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM g WHERE k < :top) "
    sfx = "'#' || CAST(g.k AS VARCHAR(12))"
    where = "{id} + g.k * :base <= :n AND {id} <= :base ORDER BY g.k, {id}"
    statements = [
        f"INSERT INTO items (id, uid, {ic}) {cte}SELECT id + g.k * :base, uid || {sfx}, {ic} "
        "FROM items, g WHERE " + where.format(id="id"),
        f"INSERT INTO item_sources (item_id, key, {lc}) {cte}SELECT item_id + g.k * :base, "
        f"key || {sfx}, {lc} FROM item_sources, g WHERE " + where.format(id="item_id"),
        f"INSERT INTO item_changes (item_id, {cc}) {cte}SELECT item_id + g.k * :base, {cc} "
        "FROM item_changes, g WHERE " + where.format(id="item_id"),
        f"INSERT INTO tags (item_id, {tc}) {cte}SELECT item_id + g.k * :base, {tc} "
        "FROM tags, g WHERE " + where.format(id="item_id"),
    ]
    params = {"top": copies - 1, "base": base_n, "n": n}
    with engine.begin() as conn:
        gin: list[tuple[str, str]] = []
        if pg:
            conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
            gin = [
                (r[0], r[1])
                for r in conn.execute(
                    sa.text(
                        "SELECT indexname, indexdef FROM pg_indexes "
                        "WHERE tablename = 'items' AND indexdef LIKE '%USING gin%'"
                    )
                )
            ]
            for name, _ in gin:
                conn.execute(sa.text(f'DROP INDEX "{name}"'))
        for sql in statements:
            conn.execute(sa.text(sql), params)
        # The copies into SQLite's full-text index, as storage puts a poll's new items there
        # (PostgreSQL's index is a generated column).
        copies = conn.execute(sa.text("SELECT id FROM items WHERE id > :base"), params)
        app.storage._index_for_search(conn, [r[0] for r in copies])
        for _, definition in gin:
            conn.execute(sa.text(definition))
        if pg:
            for table in ("items", "item_sources", "item_changes"):
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


def stored(config: Path) -> int:
    """How many items the installation holds."""
    from watcher.config import load
    from watcher.storage import ItemFilter

    app = App(load(str(config)))
    try:
        return app.storage.count_items(ItemFilter(relevant=None, include_held=True))
    finally:
        app.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    code = "from watcher.cli import main; main()"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "--config",
            str(config),
            "run",
            "--no-scheduler",
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # waiting for the server to start; not part of any measurement
    proc.terminate()
    raise RuntimeError("the server did not start")


def servers_cpu(pids: list[int]) -> float:
    """The CPU the server processes have used so far (user + system, /proc)."""
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


async def run_scenario(
    bases: list[str], path: str, requests: int, concurrency: int, pids: list[int]
) -> dict[str, float]:
    """``requests`` GETs of ``path`` from ``concurrency`` clients; with several servers
    (``bases``) each request goes to the next one in turn, as a proxy's round robin. Also
    the servers' CPU per request (``pids``; not a database server's): on a loaded or
    noisy host latency varies from run to run far more than the work a request costs."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [httpx.AsyncClient(base_url=b, limits=limits, timeout=30) for b in bases]
    try:
        for client in clients:
            for _ in range(10):  # warm-up
                (await client.get(path)).raise_for_status()
        queue = list(range(requests))

        async def worker() -> None:
            while queue:
                n = queue.pop()
                client = clients[n % len(clients)]
                t0 = time.perf_counter()
                r = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()

        cpu = servers_cpu(pids)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = servers_cpu(pids) - cpu
    finally:
        for client in clients:
            await client.aclose()
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "req_per_s": len(latencies) / elapsed,
        "server_cpu_ms": cpu * 1000 / len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--database", help="database URL (default: SQLite in the folder)")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="`watcher run` processes serving the web (docs/deploy.md), requests spread "
        "over them in turn as a proxy would",
    )
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        config = folder / "config.toml"
        if not config.exists():
            config = build(folder, args.items, args.database)
        built = time.perf_counter() - t0
        url = tomlkit.parse(config.read_text("utf-8"))["watcher"]["database_url"]  # type: ignore[index]
        db = "PostgreSQL" if str(url).startswith("postgresql") else "SQLite"
        ports = [free_port() for _ in range(args.processes)]
        procs = [start_server(config, port) for port in ports]
        try:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            first = httpx.get(f"{bases[0]}/api/items?limit=1&include_irrelevant=true").json()
            item_id = first["items"][0]["id"] if first["items"] else 1
            total = stored(config)  # the API's total stops counting at 1,000 past the page
            results = {
                name: asyncio.run(
                    run_scenario(
                        bases,
                        path.format(item_id=item_id),
                        args.requests,
                        args.concurrency,
                        [proc.pid for proc in procs],
                    )
                )
                for name, path in SCENARIOS.items()
                if not args.only or args.only in name
            }
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(20)
    if args.json:
        out = {"items": total, "concurrency": args.concurrency, "processes": args.processes}
        print(json.dumps({**out, "results": results}))
        return
    print(
        f"{total} items on {db}, stored and tagged in {built:.1f} s; {args.requests} requests "
        f"per scenario from {args.concurrency} concurrent clients on loopback, "
        f"{args.processes} server process(es)"
    )
    print(
        f"{'scenario':34} {'median ms':>10} {'p95 ms':>9} {'max ms':>9} {'req/s':>8} "
        f"{'server CPU ms/req':>18}"
    )
    for name, r in results.items():
        print(
            f"{name:34} {r['median_ms']:10.1f} {r['p95_ms']:9.1f} {r['max_ms']:9.1f} "
            f"{r['req_per_s']:8.1f} {r['server_cpu_ms']:18.1f}"
        )
    print(
        "server CPU ms/req: user + system CPU of the `watcher run` process(es) over the "
        "scenario's requests, per request (not the database server's, on PostgreSQL)"
    )


if __name__ == "__main__":
    main()
