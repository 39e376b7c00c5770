"""Parse throughput of the native adapters on their recorded fixtures.

For each adapter kind, every golden case in ``tests/data/sources/<kind>/`` is parsed over and
over (``parse_fetched``, pure, no network) for about ``--seconds``; the table shows items per
second for parsing alone and for parsing plus ``normalise`` (what a poll does to each item),
and the input bytes read per second. Detail pages count as input (Tillväxtverket).

    python bench/parse.py [--seconds 2] [--kind esf ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sources import registry
from tests.test_sources_native import KINDS, NOW, golden_cases, load_case
from watcher.config import SourceConfig
from watcher.pipeline.normalise import normalise
from watcher.types import Fetched


@dataclass(frozen=True)
class Row:
    kind: str
    cases: int
    items_per_round: int
    bytes_per_round: int
    parse_items_s: float
    full_items_s: float
    mb_s: float


def _rate(work: Callable[[], int], seconds: float) -> float:
    """Units of ``work`` per second, repeating it for about ``seconds`` (one warm-up run)."""
    work()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        done += work()
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def bench_kind(kind: str, seconds: float) -> Row:
    loaded: list[tuple[SourceConfig, Fetched]] = [
        load_case(k, name) for k, name in golden_cases() if k == kind
    ]
    adapters = [(registry.get(kind)(source), source, fetched) for source, fetched in loaded]
    size = sum(len(p.content) for _, _, f in adapters for p in (*f.pages, *f.details.values()))

    def parse_only() -> int:
        return sum(len(a.parse_fetched(f)) for a, _, f in adapters)

    def parse_and_normalise() -> int:
        n = 0
        for a, source, f in adapters:
            for raw in a.parse_fetched(f):
                normalise(raw, source, NOW)
                n += 1
        return n

    per_round = parse_only()
    parse_rate = _rate(parse_only, seconds / 2)
    full_rate = _rate(parse_and_normalise, seconds / 2)
    rounds_s = parse_rate / per_round if per_round else 0.0
    return Row(
        kind=kind,
        cases=len(adapters),
        items_per_round=per_round,
        bytes_per_round=size,
        parse_items_s=parse_rate,
        full_items_s=full_rate,
        mb_s=rounds_s * size / 1e6,
    )


def table(rows: list[Row]) -> str:
    head = ("kind", "cases", "items", "input KB", "parse items/s", "+normalise items/s", "MB/s")
    lines = [
        (
            r.kind,
            str(r.cases),
            str(r.items_per_round),
            f"{r.bytes_per_round / 1024:.1f}",
            f"{r.parse_items_s:,.0f}",
            f"{r.full_items_s:,.0f}",
            f"{r.mb_s:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *lines)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out.extend(fmt.format(*line) for line in lines)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per adapter")
    parser.add_argument("--kind", action="append", choices=KINDS, help="only these kinds")
    args = parser.parse_args(argv)
    rows = [bench_kind(kind, args.seconds) for kind in (args.kind or KINDS)]
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
