"""Poll benchmark, whole process: `watcher poll` (and urlwatch 2.29) on a local source farm.

The farm (its own process): RSS and Atom feeds (HTML listings too with ``--html``) spread
over loopback hosts 127.0.0.2 …, every response delayed by ``--latency`` (100 ms), at most
``--per-host`` (2) requests in flight per host (the farm enforces it: extra requests wait),
an ETag on every feed, so a second round on the same database gets 304. The politeness limit,
sources per host × latency ÷ per-host, is 1.0 s at both sizes of issue 14.

Each run writes a config.toml into a fresh temporary folder and runs `watcher poll` as a
subprocess twice: the first round on a new database, then the unchanged round (all 304) on
the same one. Measured from spawn to exit: wall time; CPU (user + system, from ``wait4``: the
process and its worker processes); peak RSS (``wait4``'s ``ru_maxrss`` is the largest single
process of the tree; the sum of every process's peak, sampled from /proc, is shown too).
``--compare-urlwatch`` runs urlwatch 2.29 (its own environment under bench/.urlwatch-venv/,
made on first use) on the same farm the same way, interleaved: watcher, urlwatch, watcher …
Medians over ``--runs`` are printed as the issue's table, with the targets next to them.

    python bench/poll.py [--sources 200] [--hosts 10] [--runs 3] [--compare-urlwatch]
                         [--latency 0.1] [--items 15] [--per-host 2] [--workers 1]
                         [--html] [--json] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procstat import cpu_seconds  # noqa: E402
from tests.loopback import LoopbackServer, RecordedRequest, Reply  # noqa: E402

URLWATCH_VERSION = "2.29"
URLWATCH_VENV = ROOT / "bench" / ".urlwatch-venv"
URLWATCH_THREADS = 10  # urlwatch 2.29's default: worker.MAX_WORKERS, not configurable

# (sources, hosts) → targets from issue 14, in seconds and MiB.
TARGETS: dict[tuple[int, int], dict[str, float]] = {
    (200, 10): {"first": 1.5},
    (2000, 100): {"first": 4.0, "unchanged": 1.5, "rss": 100.0},
}


# -- the farm -------------------------------------------------------------------------------


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


BUILDERS: dict[str, Callable[[int, int], str]] = {"rss": rss, "atom": atom, "html": html}
CONTENT_TYPES = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "html": "text/html",
}


@dataclass(frozen=True)
class Spec:
    n: int
    host: int  # index: 127.0.0.{2 + host}
    path: str
    kind: str  # rss | atom | html


def farm_specs(args: argparse.Namespace) -> list[Spec]:
    kinds = ("rss", "atom", "html") if args.html else ("rss", "atom")
    return [Spec(n, n % args.hosts, f"/s{n}", kinds[n % len(kinds)]) for n in range(args.sources)]


@dataclass
class FarmRound:
    """What the farm saw since the last read: responses by status (robots.txt included),
    and when (``time.monotonic``, the machine's clock, the same in every process) the
    first request arrived and the last response was ready."""

    counts: dict[int, int]
    first_request: float | None
    last_response: float | None

    def window(self) -> tuple[float, float]:
        """The first request's arrival and the last response's time (the farm saw some)."""
        assert self.first_request is not None and self.last_response is not None
        return self.first_request, self.last_response

    def span(self) -> float:
        """From the first request's arrival to the last response."""
        first, last = self.window()
        return last - first


class Counts:
    """Responses the farm sent, by status, and the first and last of them in time, since
    the last read (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[int] = Counter()
        self._first: float | None = None
        self._last: float | None = None

    def arrived(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._first is None:
                self._first = now

    def add(self, status: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._counts[status] += 1
            self._last = now

    def take(self) -> FarmRound:
        with self._lock:
            out = FarmRound(dict(self._counts), self._first, self._last)
            self._counts, self._first, self._last = Counter(), None, None
        return out


def polite_handler(
    gate: threading.Semaphore,
    latency: float,
    counts: Counts,
    body: bytes,
    content_type: str,
    etag: str | None,
) -> Callable[[RecordedRequest], Reply]:
    """A resource that answers after ``latency``, at most the gate's count at a time on its
    host (the rest wait their turn), 304 to a matching If-None-Match."""

    def handle(request: RecordedRequest) -> Reply:
        counts.arrived()
        with gate:
            time.sleep(latency)
        inm = request.header("if-none-match")
        if etag is not None and inm is not None and etag in {t.strip() for t in inm.split(",")}:
            reply = Reply(304, {"ETag": etag})
        else:
            headers = {"Content-Type": content_type, **({"ETag": etag} if etag else {})}
            reply = Reply(200, headers, body)
        counts.add(reply.status)
        return reply

    return handle


def run_farm(args: argparse.Namespace, conn: Connection) -> None:
    """The source farm, in its own process (as real sites are). Answers "counts" (the
    responses by status since the last ask) and "stop" on ``conn``."""
    counts = Counts()
    servers = [LoopbackServer(host=f"127.0.0.{2 + h}").start() for h in range(args.hosts)]
    gates = [threading.Semaphore(args.per_host) for _ in range(args.hosts)]
    for spec in farm_specs(args):
        body = BUILDERS[spec.kind](spec.n, args.items).encode()
        ctype = CONTENT_TYPES[spec.kind] + "; charset=utf-8"
        handler = polite_handler(
            gates[spec.host], args.latency, counts, body, ctype, f'"{spec.path}"'
        )
        servers[spec.host].add_handler(spec.path, handler)
    robots = b"User-agent: *\nDisallow: /private/\n"
    for h, server in enumerate(servers):
        server.add_handler(
            "/robots.txt",
            polite_handler(gates[h], args.latency, counts, robots, "text/plain", None),
        )
    conn.send([s.port for s in servers])
    while True:
        command = conn.recv()
        if command == "counts":
            conn.send(counts.take())
        else:
            break
    for server in servers:
        server.stop()


class Farm:
    def __init__(self, args: argparse.Namespace) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=run_farm, args=(args, child), daemon=True)
        self.process.start()
        if not self._conn.poll(120):
            raise RuntimeError("the farm did not start")
        self.ports: list[int] = self._conn.recv()
        self.specs = farm_specs(args)

    def url(self, spec: Spec) -> str:
        return f"http://127.0.0.{2 + spec.host}:{self.ports[spec.host]}{spec.path}"

    def counts(self) -> FarmRound:
        """Responses by status since the last call (robots.txt included), and when."""
        self._conn.send("counts")
        counts: FarmRound = self._conn.recv()
        return counts

    def stop(self) -> None:
        self._conn.send("stop")
        self.process.join(timeout=30)


# -- measuring a process --------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants now (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                text = Path(f"/proc/{p}/task/{task}/children").read_text()
                todo.extend(int(c) for c in text.split())
        except OSError:
            continue
    return out


def peak_kib(pid: int) -> int:
    """VmHWM: the process's peak resident set so far, in KiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Measured:
    wall: float
    cpu: float  # user + system of the process and its (reaped) descendants
    # The process itself (not its workers), as last sampled before it exited (at most 50 ms
    # short): on a first round the main process is the critical path.
    main_cpu: float
    maxrss_mib: float  # wait4 ru_maxrss: the largest single process of the tree
    tree_mib: float  # sum of every process's peak, as last sampled
    processes: int
    exit_code: int
    started: float  # time.monotonic() at spawn and at exit, to set beside the farm's times
    ended: float


def measure(cmd: Sequence[str], cwd: Path, env: dict[str, str], out: Path) -> Measured:
    """Run ``cmd`` from spawn to exit; stdout and stderr go to ``out``."""
    peaks: dict[int, int] = {}
    main_cpu = [0.0]
    done = threading.Event()

    def sample(pid: int) -> None:
        while True:
            for p in tree(pid):
                peaks[p] = max(peaks.get(p, 0), peak_kib(p))
            cpu = cpu_seconds(pid)
            if cpu is not None:
                main_cpu[0] = cpu
            if done.wait(0.05):
                return

    with out.open("wb") as sink:
        started = time.monotonic()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        ended = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        main_cpu=main_cpu[0],
        maxrss_mib=usage.ru_maxrss / 1024,
        tree_mib=sum(peaks.values()) / 1024,
        processes=len(peaks),
        exit_code=proc.returncode,
        started=started,
        ended=ended,
    )


# -- watcher --------------------------------------------------------------------------------


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def global_limit(args: argparse.Namespace) -> int:
    """The watcher's global limit: by default every host's share at once (hosts × per
    host, at most the 500 the config allows), so the politeness limit is what binds; a
    lower one (the shipped default is 20) makes the floor sources × latency ÷ it."""
    if args.global_concurrency:
        return int(args.global_concurrency)
    return min(500, int(args.hosts) * int(args.per_host))


def watcher_config(args: argparse.Namespace, farm: Farm, tmp: Path) -> Path:
    lines = [
        "[watcher]",
        f"database_url = {toml_str(f'sqlite:///{tmp}/watcher.db')}",
        f"data_dir = {toml_str(str(tmp / 'var'))}",
        f"workers = {args.workers}",
        "",
        "[fetch]",
        'allow_private_networks = ["127.0.0.0/8"]',
        f"per_host_concurrency = {args.per_host}",
        f"global_concurrency = {global_limit(args)}",
        "respect_robots_txt = true",
        "timeout = 30",
        "",
        "[email]",
        'backend = "file"',
        f"outbox = {toml_str(str(tmp / 'outbox'))}",
        "flood_threshold = 100000",
        "",
    ]
    for spec in farm.specs:
        lines += [
            "[[sources]]",
            f'id = "s{spec.n}"',
            f'name = "Källa {spec.n}"',
            f'kind = "{"html" if spec.kind == "html" else "rss"}"',
            f"url = {toml_str(farm.url(spec))}",
            'schedule = "1h"',
        ]
        if spec.kind == "html":
            lines.append('options = { item = ".card", title = "h3" }')
        lines.append("")
    path = tmp / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def watcher_cmd() -> list[str]:
    script = Path(sys.executable).parent / "watcher"
    return [str(script)] if script.exists() else [sys.executable, "-m", "watcher"]


@dataclass
class WatcherRound:
    measured: Measured
    statuses: dict[str, int]
    errors: list[str]  # "source: code: message" per failed source
    new: int
    stored: int
    farm: FarmRound  # what the farm sent, and when


def db_round(db: Path, after_id: int) -> tuple[int, dict[str, int], list[str], int, int]:
    """From the database after a poll: the last poll_log id, the statuses, the errors and
    the new items of the polls after ``after_id``, and the items stored."""
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT id, source_id, status, new, error_code, error_message FROM poll_log"
            " WHERE id > ? ORDER BY id",
            (after_id,),
        ).fetchall()
        stored = c.execute("SELECT count(*) FROM items").fetchone()[0]
    last = max((r[0] for r in rows), default=after_id)
    statuses = Counter(r[2] for r in rows)
    errors = [f"{r[1]}: {r[4]}: {r[5]}" for r in rows if r[2] == "error"]
    return last, dict(statuses), errors, sum(r[3] or 0 for r in rows), stored


def run_watcher(args: argparse.Namespace, farm: Farm) -> dict[str, WatcherRound]:
    with tempfile.TemporaryDirectory(prefix="bench-watcher-") as name:
        tmp = Path(name)
        config = watcher_config(args, farm, tmp)
        env = {k: v for k, v in os.environ.items() if k != "WATCHER_CONFIG"}
        cmd = [*watcher_cmd(), "--config", str(config), "poll"]
        rounds: dict[str, WatcherRound] = {}
        last = 0
        farm.counts()
        for label in ("first", "unchanged"):
            run = cmd
            if args.profile:  # py-spy's collapsed stacks, every process; figures then skewed
                args.profile.mkdir(parents=True, exist_ok=True)
                out = args.profile / f"{label}.txt"
                run = ["py-spy", "record", "--subprocesses", "--format", "raw", "--rate", "200"]
                run += ["--output", str(out), "--", *cmd]
            measured = measure(run, tmp, env, tmp / f"{label}.out")
            if measured.exit_code != 0:
                tail = (tmp / f"{label}.out").read_text(errors="replace")[-2000:]
                sys.exit(f"`watcher poll` exited with {measured.exit_code}:\n{tail}")
            last, statuses, errors, new, stored = db_round(tmp / "watcher.db", last)
            rounds[label] = WatcherRound(measured, statuses, errors, new, stored, farm.counts())
        return rounds


# -- urlwatch -------------------------------------------------------------------------------


def urlwatch_bin() -> Path:
    """urlwatch 2.29 in its own environment, made on first use."""
    exe = URLWATCH_VENV / "bin" / "urlwatch"
    if exe.exists():
        version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        if URLWATCH_VERSION in version:
            return exe
    print(f"installing urlwatch {URLWATCH_VERSION} into {URLWATCH_VENV} …", file=sys.stderr)
    shutil.rmtree(URLWATCH_VENV, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(URLWATCH_VENV)], check=True)
    pip = [str(URLWATCH_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"urlwatch=={URLWATCH_VERSION}"], check=True)
    return exe


@dataclass
class UrlwatchRound:
    measured: Measured
    errors: int  # jobs its report lists as ERROR
    farm: FarmRound


def run_urlwatch(farm: Farm, exe: Path) -> dict[str, UrlwatchRound]:
    with tempfile.TemporaryDirectory(prefix="bench-urlwatch-") as name:
        tmp = Path(name)
        urls = tmp / "urls.yaml"
        urls.write_text(
            "---\n".join(f"name: s{s.n}\nurl: {farm.url(s)}\n" for s in farm.specs),
            encoding="utf-8",
        )
        # Reporters silenced but for errors (counted): the stdout reporter lists only those.
        config = tmp / "urlwatch.yaml"
        config.write_text(
            "display: {new: false, error: true, unchanged: false, empty-diff: false}\n"
            "report:\n"
            "  text: {footer: false}\n"
            "  stdout: {enabled: true, color: false}\n",
            encoding="utf-8",
        )
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp), "XDG_CACHE_HOME": str(tmp)}
        env.pop("VIRTUAL_ENV", None)
        cmd = [str(exe), "--urls", str(urls), "--config", str(config)]
        cmd += ["--hooks", str(tmp / "hooks.py"), "--cache", str(tmp / "cache.db")]
        rounds: dict[str, UrlwatchRound] = {}
        farm.counts()
        for label in ("first", "unchanged"):
            out = tmp / f"{label}.out"
            measured = measure(cmd, tmp, env, out)
            text = out.read_text(errors="replace")
            if measured.exit_code != 0:
                sys.exit(f"urlwatch exited with {measured.exit_code}:\n{text[-2000:]}")
            errors = sum(1 for line in text.splitlines() if line.startswith("ERROR: "))
            rounds[label] = UrlwatchRound(measured, errors, farm.counts())
        return rounds


# -- a bare client: what the farm itself allows ---------------------------------------------


async def _bare_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str, etag: bool
) -> int:
    """One keep-alive GET, read to its end (the farm sends a Content-Length or no body)."""
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    if etag:
        head += f'If-None-Match: "{path}"\r\n'
    writer.write((head + "\r\n").encode())
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(lines[0].split()[1])


async def _bare_host(
    host: str, port: int, paths: list[str], per_host: int, robots: bool, etag: bool
) -> Counter[int]:
    """One host's requests over ``per_host`` keep-alive connections that take the next
    path as they come free; robots.txt first when ``robots``, as a first poll asks it."""
    statuses: Counter[int] = Counter()
    todo = deque(paths)
    conns = [await asyncio.open_connection(host, port) for _ in range(min(per_host, len(todo)))]
    if robots:
        statuses[await _bare_get(*conns[0], host, "/robots.txt", False)] += 1

    async def lane(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while todo:
            statuses[await _bare_get(reader, writer, host, todo.popleft(), etag)] += 1

    await asyncio.gather(*(lane(*c) for c in conns))
    for _, writer in conns:
        writer.close()
    return statuses


def bare_round(urls: list[str], per_host: int, robots: bool, etag: bool) -> dict[int, int]:
    """Every URL once with a bare HTTP/1.1 client, no parsing or storage: the farm's own
    floor (its latency, its per-host limit, its turnaround), to set beside a watcher
    round. Runs in its own process."""
    by_host: dict[tuple[str, int], list[str]] = {}
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        by_host.setdefault((parts.hostname, parts.port), []).append(parts.path)

    async def main() -> Counter[int]:
        found = await asyncio.gather(
            *(_bare_host(h, p, paths, per_host, robots, etag) for (h, p), paths in by_host.items())
        )
        return sum(found, Counter())

    return dict(asyncio.run(main()))


def run_bare(
    args: argparse.Namespace, farm: Farm, pool: ProcessPoolExecutor
) -> dict[str, FarmRound]:
    """A bare client's first round (robots.txt, then every feed) and unchanged round (every
    feed with its ETag, as the watcher, which keeps robots.txt a day), as the farm saw them."""
    urls = [farm.url(spec) for spec in farm.specs]
    rounds: dict[str, FarmRound] = {}
    farm.counts()
    for label, robots, etag in (("first", True, False), ("unchanged", False, True)):
        statuses = pool.submit(bare_round, urls, args.per_host, robots, etag).result()
        seen = farm.counts()
        if seen.counts != statuses:
            sys.exit(
                f"the bare client's {label} round: it got {statuses}, the farm sent {seen.counts}"
            )
        rounds[label] = seen
    return rounds


# -- report ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def not_modified_share(counts: dict[int, int]) -> float:
    total = sum(counts.values())
    return counts.get(304, 0) / total if total else 0.0


@dataclass
class Summary:
    sources: int
    hosts: int
    runs: int
    politeness_limit: float
    watcher: dict[str, float] = field(default_factory=dict)
    urlwatch: dict[str, float] = field(default_factory=dict)
    bare: dict[str, float] = field(default_factory=dict)  # a bare client's requests, by round
    checks: dict[str, Any] = field(default_factory=dict)


def summarise(
    args: argparse.Namespace,
    w_runs: list[dict[str, WatcherRound]],
    u_runs: list[dict[str, UrlwatchRound]],
    b_runs: list[dict[str, FarmRound]],
) -> Summary:
    limit = args.sources / args.hosts * args.latency / args.per_host
    s = Summary(args.sources, args.hosts, args.runs, limit)

    def wm(label: str, pick: Callable[[WatcherRound], float]) -> float:
        return median([pick(r[label]) for r in w_runs])

    for label in ("first", "unchanged"):
        s.watcher[f"{label}_wall"] = wm(label, lambda r: r.measured.wall)
        s.watcher[f"{label}_cpu"] = wm(label, lambda r: r.measured.cpu)
        s.watcher[f"{label}_main_cpu"] = wm(label, lambda r: r.measured.main_cpu)
        s.watcher[f"{label}_maxrss_mib"] = wm(label, lambda r: r.measured.maxrss_mib)
        s.watcher[f"{label}_tree_mib"] = wm(label, lambda r: r.measured.tree_mib)
        s.watcher[f"{label}_processes"] = wm(label, lambda r: r.measured.processes)
        s.watcher[f"{label}_errors"] = wm(label, lambda r: len(r.errors))
        s.watcher[f"{label}_new"] = wm(label, lambda r: r.new)
        s.watcher[f"{label}_stored"] = wm(label, lambda r: r.stored)
        s.watcher[f"{label}_not_modified"] = wm(
            label,
            lambda r: r.statuses.get("not_modified", 0) / max(1, sum(r.statuses.values())),
        )
        s.watcher[f"{label}_farm_304"] = wm(label, lambda r: not_modified_share(r.farm.counts))
        # Where the round's time went, by the farm's clock: until its first request came
        # in, its requests, and from its last response to the process's exit.
        s.watcher[f"{label}_to_first_request"] = wm(
            label, lambda r: r.farm.window()[0] - r.measured.started
        )
        s.watcher[f"{label}_requests"] = wm(label, lambda r: r.farm.span())
        s.watcher[f"{label}_after_last_response"] = wm(
            label, lambda r: r.measured.ended - r.farm.window()[1]
        )
        if b_runs:
            s.bare[f"{label}_requests"] = median([b[label].span() for b in b_runs])
        if u_runs:
            ur = [r[label] for r in u_runs]
            s.urlwatch[f"{label}_wall"] = median([r.measured.wall for r in ur])
            s.urlwatch[f"{label}_cpu"] = median([r.measured.cpu for r in ur])
            s.urlwatch[f"{label}_maxrss_mib"] = median([r.measured.maxrss_mib for r in ur])
            s.urlwatch[f"{label}_errors"] = median([r.errors for r in ur])
            s.urlwatch[f"{label}_farm_304"] = median(
                [not_modified_share(r.farm.counts) for r in ur]
            )
    targets = TARGETS.get((args.sources, args.hosts), {})
    peak = max(s.watcher["first_maxrss_mib"], s.watcher["unchanged_maxrss_mib"])
    peak_tree = max(s.watcher["first_tree_mib"], s.watcher["unchanged_tree_mib"])
    for key, value in (
        ("first", s.watcher["first_wall"]),
        ("unchanged", s.watcher["unchanged_wall"]),
        ("rss", peak),
        ("rss_all_processes", peak_tree),
    ):
        target = targets.get(key.removesuffix("_all_processes"))
        if target is not None:
            s.checks[key] = {"value": round(value, 3), "target": target, "met": value <= target}
    return s


def mark(s: Summary, key: str, unit: str) -> str:
    check = s.checks.get(key)
    if check is None:
        return ""
    return f"≤ {check['target']:g} {unit} {'✓' if check['met'] else '✗'}"


def table(args: argparse.Namespace, s: Summary) -> str:
    w, u = s.watcher, s.urlwatch
    column = f"{args.sources:,} sources / {args.hosts} hosts"
    rows = [
        (f"whole process, median of {s.runs} run(s)", column, "target"),
        ("---", "---", "---"),
    ]
    if u:
        rows.append(
            (
                f"urlwatch {URLWATCH_VERSION}, first / unchanged round",
                f"{u['first_wall']:.2f} s / {u['unchanged_wall']:.2f} s",
                "",
            )
        )
    rows += [
        ("`watcher poll`, first round", f"{w['first_wall']:.2f} s", mark(s, "first", "s")),
        (
            "`watcher poll`, unchanged round (all 304)",
            f"{w['unchanged_wall']:.2f} s",
            mark(s, "unchanged", "s"),
        ),
        (
            "`watcher poll` CPU, first / unchanged",
            f"{w['first_cpu']:.2f} s / {w['unchanged_cpu']:.2f} s",
            "",
        ),
        (
            "of which its main process (sampled)",
            f"{w['first_main_cpu']:.2f} s / {w['unchanged_main_cpu']:.2f} s",
            "",
        ),
    ]
    for label in ("first", "unchanged"):
        rows.append(
            (
                f"`watcher poll` {label} round: to its first request · requests · to exit",
                f"{w[f'{label}_to_first_request']:.2f} s · {w[f'{label}_requests']:.2f} s · "
                f"{w[f'{label}_after_last_response']:.2f} s",
                "",
            )
        )
    if s.bare:
        rows.append(
            (
                "bare HTTP/1.1 client, same farm: requests, first / unchanged round",
                f"{s.bare['first_requests']:.2f} s / {s.bare['unchanged_requests']:.2f} s",
                "",
            )
        )
    peak = max(w["first_maxrss_mib"], w["unchanged_maxrss_mib"])
    peak_tree = max(w["first_tree_mib"], w["unchanged_tree_mib"])
    watcher_rss = f"{peak:.0f} MiB (all {w['first_processes']:.0f} processes: {peak_tree:.0f} MiB)"
    if u:
        uw = max(u["first_maxrss_mib"], u["unchanged_maxrss_mib"])
        rows.append(("peak RSS, urlwatch / watcher", f"{uw:.0f} MiB / {watcher_rss}", ""))
    else:
        rows.append(("peak RSS, watcher", watcher_rss, ""))
    if "rss" in s.checks:
        met = "✓" if s.checks["rss_all_processes"]["met"] else "✗"
        rows[-1] = (*rows[-1][:2], f"{mark(s, 'rss', 'MiB')} (all processes {met})")
    return "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)


def details(args: argparse.Namespace, s: Summary) -> str:
    w, u = s.watcher, s.urlwatch
    kinds = "RSS, Atom and HTML" if args.html else "RSS and Atom"
    lines = [
        f"farm: {args.sources} {kinds} sources over {args.hosts} loopback hosts, "
        f"{args.latency * 1000:.0f} ms per response, at most {args.per_host} in flight per host "
        f"(farm-enforced), {args.items} items each; politeness limit {s.politeness_limit:.2f} s",
        f"watcher: `watcher poll`, [watcher] workers = {args.workers}, "
        f"[fetch] per_host_concurrency = {args.per_host}, global_concurrency = {global_limit(args)}; "
        f"{os.cpu_count()} cores",
        f"items stored: {w['first_stored']:.0f} after the first round "
        f"({w['first_new']:.0f} new), {w['unchanged_new']:.0f} new on the unchanged round",
        f"errors (failed sources): first {w['first_errors']:.0f}, "
        f"unchanged {w['unchanged_errors']:.0f}",
        f"not modified on the unchanged round: {w['unchanged_not_modified']:.1%} of the "
        f"watcher's polls; {w['unchanged_farm_304']:.1%} of the farm's responses to it "
        "(robots.txt included)",
        "CPU: user + system of `watcher poll` and its worker processes (wait4); its main "
        "process alone as sampled every 50 ms (/proc), the last sample before it exited: "
        "the critical path of a first round, one core",
        "peak RSS: the largest single process (wait4 ru_maxrss); 'all processes': the sum of "
        "each process's peak (VmHWM sampled every 50 ms: main, workers, resource tracker)",
        "to its first request · requests · to exit: by the farm's clock, from spawn to the "
        "first request it received, from then to its last response, and from then to exit",
        "bare HTTP/1.1 client: keep-alive GETs and nothing else (no parsing, no storage), "
        f"{args.per_host} connections per host, robots.txt first on the first round, ETags on "
        "the unchanged one, in its own process after each watcher run: the farm's own floor "
        "for the requests, to set beside the watcher's",
    ]
    if u:
        lines += [
            f"urlwatch {URLWATCH_VERSION}: its default {URLWATCH_THREADS} worker threads, no "
            "per-host limit of its own (the farm holds it to "
            f"{args.per_host} per host); CPU first / unchanged "
            f"{u['first_cpu']:.2f} s / {u['unchanged_cpu']:.2f} s; errors "
            f"{u['first_errors']:.0f} / {u['unchanged_errors']:.0f}; "
            f"304 on its unchanged round {u['unchanged_farm_304']:.1%}",
        ]
    return "\n".join(lines)


def progress(i: int, tool: str, rounds: Mapping[str, WatcherRound | UrlwatchRound]) -> None:
    """One run's wall times, first and unchanged round, on stderr."""
    first, unchanged = rounds["first"].measured.wall, rounds["unchanged"].measured.wall
    print(f"run {i + 1}: {tool} {first:.2f} s / {unchanged:.2f} s", file=sys.stderr)


def compile_bytecode() -> None:
    """Byte-compile the project before measuring, as an installed package is: with
    PYTHONDONTWRITEBYTECODE set (this machine sets it) an editable checkout would compile
    every one of its modules again in every process, a tenth of a second per start that no
    installation pays (urlwatch, installed by pip, has its bytecode)."""
    import compileall

    for package in ("watcher", "sources", "rules", "notifications"):
        compileall.compile_dir(ROOT / package, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sources", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs; medians are shown")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per response")
    ap.add_argument("--items", type=int, default=15, help="items per feed")
    ap.add_argument("--per-host", type=int, default=2, help="requests in flight per host")
    ap.add_argument("--workers", type=int, default=1, help="[watcher] workers (processes)")
    ap.add_argument(
        "--global",
        dest="global_concurrency",
        type=int,
        help="[fetch] global_concurrency (default: hosts × per-host, so that only the per-host "
        "limit binds, as the politeness limit assumes)",
    )
    ap.add_argument("--html", action="store_true", help="every third source an HTML listing")
    ap.add_argument("--compare-urlwatch", action="store_true", help=f"urlwatch {URLWATCH_VERSION}")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument(
        "--profile",
        type=Path,
        help="folder for py-spy's collapsed stacks of each watcher round (first.txt, "
        "unchanged.txt); the figures are then not comparable",
    )
    args = ap.parse_args()

    if args.profile and shutil.which("py-spy") is None:
        sys.exit("--profile needs py-spy on the PATH: pip install py-spy")
    exe = urlwatch_bin() if args.compare_urlwatch else None
    compile_bytecode()
    farm = Farm(args)
    w_runs: list[dict[str, WatcherRound]] = []
    u_runs: list[dict[str, UrlwatchRound]] = []
    b_runs: list[dict[str, FarmRound]] = []
    bare = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        for i in range(args.runs):
            w_runs.append(run_watcher(args, farm))
            progress(i, "watcher", w_runs[-1])
            if exe is not None:
                u_runs.append(run_urlwatch(farm, exe))
                progress(i, "urlwatch", u_runs[-1])
            if not args.profile:
                b_runs.append(run_bare(args, farm, bare))
    finally:
        bare.shutdown()
        farm.stop()

    s = summarise(args, w_runs, u_runs, b_runs)
    if args.json:
        out = {
            **asdict(s),
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "watcher_runs": [{k: asdict(v) for k, v in r.items()} for r in w_runs],
            "urlwatch_runs": [{k: asdict(v) for k, v in r.items()} for r in u_runs],
            "bare_runs": [{k: asdict(v) for k, v in r.items()} for r in b_runs],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    print(table(args, s))
    print()
    print(details(args, s))
    errors = [e for r in w_runs for rnd in r.values() for e in rnd.errors]
    if errors:
        print(f"first error: {errors[0]}")


if __name__ == "__main__":
    main()
