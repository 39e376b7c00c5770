"""Poll-cycle benchmark: a local source farm on loopback.

200 sources (RSS, Atom and HTML listings) spread over 10 loopback hosts (127.0.0.2 – .11),
every response delayed by 100 ms, at most 2 requests per host at a time. Prints the first
round's wall time against the politeness limit (sources per host × latency ÷ per-host
concurrency), the share of 304 responses and the new items on a second round, and peak
memory. Targets: first round ≤ 1.5 × the limit; second round ≥ 95 % not modified, 0 new.

    python bench/poll.py [--sources 200] [--hosts 10] [--latency 0.1] [--items 15]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.loopback import LoopbackServer
from watcher.app import App
from watcher.config import validate_data


def rss(n: int, items: int) -> str:
    entries = "".join(
        f"<item><guid>s{n}-i{i}</guid><title>Utlysning {i} från källa {n}: kompetensförsörjning"
        f"</title><link>https://example.org/{n}/{i}</link><description>ESF+ och regionalfonden "
        f"i Västsverige, sista ansökningsdag {1 + (n * 7 + i) % 28} mars 2027.</description>"
        f"<pubDate>Wed, 25 Feb 2026 13:41:04 +0100</pubDate></item>"
        for i in range(items)
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>K{n}</title>{entries}</channel></rss>'


def atom(n: int, items: int) -> str:
    entries = "".join(
        f"<entry><id>urn:s{n}:{i}</id><title>Call {i} of source {n}: Horizon Europe cities"
        f"</title><link href='https://example.org/a{n}/{i}'/><updated>2026-10-01T10:00:00Z</updated>"
        f"<summary>Deadline {1 + (n * 5 + i) % 28} June 2027 (17:00 CEST).</summary></entry>"
        for i in range(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>A{n}</title><id>urn:a{n}</id><updated>2026-10-01T10:00:00Z</updated>{entries}</feed>"
    )


def html(n: int, items: int) -> str:
    cards = "".join(
        f"<div class='card'><h3><a href='/p{n}/{i}'>Nyhet {i} hos källa {n}</a></h3>"
        f"<p>Stänger {1 + (n * 3 + i) % 28} april 2027</p></div>"
        for i in range(items)
    )
    return f"<html><body><main>{cards}</main></body></html>"


def farm_specs(args: argparse.Namespace) -> list[tuple[int, str, str, str, str]]:
    """(host index, path, body, content type, adapter kind) per source."""
    out = []
    for n in range(args.sources):
        kind = ("rss", "atom", "html")[n % 3]
        body = {"rss": rss, "atom": atom, "html": html}[kind](n, args.items)
        ctype = {"rss": "application/rss+xml", "atom": "application/atom+xml", "html": "text/html"}[
            kind
        ]
        out.append((n % args.hosts, f"/s{n}", body, ctype + "; charset=utf-8", kind))
    return out


def run_farm(args: argparse.Namespace, ports: Any, stop: Any) -> None:
    """The source farm, in its own process (as real sites are): loopback servers on
    127.0.0.2 … with a latency per response, every feed with an ETag."""
    servers = [
        LoopbackServer(host=f"127.0.0.{2 + h}", latency=args.latency).start()
        for h in range(args.hosts)
    ]
    for h, path, body, ctype, _kind in farm_specs(args):
        servers[h].add(path, body, content_type=ctype, etag=f'"{path}"')
    for server in servers:
        server.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    ports.put([s.port for s in servers])
    stop.wait()
    for server in servers:
        server.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--items", type=int, default=15)
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="[watcher] workers (processes)")
    args = ap.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    farm = ctx.Process(target=run_farm, args=(args, ports_q, stop), daemon=True)
    farm.start()
    ports = ports_q.get(timeout=60)
    sources = []
    for n, (h, path, _body, _ctype, kind) in enumerate(farm_specs(args)):
        entry: dict[str, Any] = {
            "id": f"s{n}",
            "name": f"Källa {n}",
            "kind": "html" if kind == "html" else "rss",
            "url": f"http://127.0.0.{2 + h}:{ports[h]}{path}",
            "schedule": "1h",
        }
        if kind == "html":
            entry["options"] = {"item": ".card", "title": "h3"}
        sources.append(entry)

    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "watcher": {"database_url": f"sqlite:///{tmp}/bench.db", "workers": args.workers},
            "fetch": {
                "allow_private_networks": ["127.0.0.0/8"],
                "per_host_concurrency": args.per_host,
                "global_concurrency": 50,
                "respect_robots_txt": True,
                "timeout": 30,
            },
            "email": {"flood_threshold": 100000},
            "sources": sources,
        }
        app = App(validate_data(data, None))
        app.storage.ensure_schema()
        app.warm_up_workers()  # a running service has its workers up already

        cpu: dict[str, float] = {}

        def worker_pids() -> list[int]:
            executor = app.executor
            return list(getattr(executor, "_processes", None) or {})

        async def rounds() -> tuple[float, list, float, list]:
            http = app.new_http_client()
            others = {"farm": [farm.pid or 0], "workers": worker_pids()}
            try:
                before = {k: sum(map(cpu_seconds, pids)) for k, pids in others.items()}
                t0, c0 = time.perf_counter(), time.process_time()
                first = await app.poll(http=http)
                t1, c1 = time.perf_counter(), time.process_time()
                cpu["first"] = c1 - c0
                for k, pids in others.items():
                    cpu[k] = sum(map(cpu_seconds, pids)) - before[k]
                second = await app.poll(http=http)
                t2 = time.perf_counter()
            finally:
                await http.aclose()
            return t1 - t0, first, t2 - t1, second

        first_time, first, second_time, second = asyncio.run(rounds())
        per_host = args.sources / args.hosts
        limit = per_host * args.latency / args.per_host
        errors = [r for r in first + second if r.error]
        not_modified = sum(1 for r in second if r.status.value == "not_modified")
        new_second = sum(r.new for r in second)
        stored = app.storage.count_items()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        app.close()
    stop.set()
    farm.join(timeout=30)

    print(
        f"sources: {args.sources} over {args.hosts} hosts, latency {args.latency * 1000:.0f} ms, "
        f"per-host concurrency {args.per_host}, {args.items} items each, workers {args.workers}"
    )
    print(
        f"politeness limit:        {limit:.2f} s  ({per_host:.0f} sources/host × {args.latency} s ÷ {args.per_host})"
    )
    print(
        f"first round:             {first_time:.2f} s  = {first_time / limit:.2f} × limit (target ≤ 1.5)"
    )
    print(
        f"  CPU in it: poller {cpu['first']:.2f} s, its workers {cpu['workers']:.2f} s, "
        f"the farm {cpu['farm']:.2f} s ({os.cpu_count()} cores)"
    )
    print(f"items stored:            {stored}")
    print(
        f"second round:            {second_time:.2f} s, {not_modified / len(second):.1%} not modified "
        f"(target ≥ 95 %), {new_second} new (target 0)"
    )
    print(
        f"errors:                  {len(errors)}" + (f" e.g. {errors[0].error}" if errors else "")
    )
    print(f"peak memory (RSS):       {peak_mb:.0f} MB (the poller's process)")


if __name__ == "__main__":
    main()
