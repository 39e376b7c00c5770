"""Benchmark: items classified per second on one core with the default rules.

    python bench/classify.py [--data FILE] [--items N] [--repeat R] [--model [--threshold T]]

Classifies the labelled dev set (``shared/data/classification-dev.jsonl`` beside the repo:
real titles and summaries of typical length) repeated to N items (default 50,000), in one
process, and prints the best of R runs. Throughput is measured in CPU time of this process
(one core), so other work on the machine does not distort it; wall time is printed too.
The rule set is compiled before timing starts, as in the service, where it is compiled
once per rule version. With ``--model`` every item the rules leave relevant (or untagged)
is also scored by the learned model (``rules.learned``, trained on the shipped labelled
sets before timing starts), and labels at or above ``--threshold`` become tags with their
evidence: everything on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from itertools import cycle, islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rules import classify, load_labelled, load_rules  # noqa: E402
from rules.engine import compiled  # noqa: E402
from rules.learned import add_model_tags, shipped_rows, train  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "classification-dev.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSONL items")
    ap.add_argument("--items", type=int, default=50_000, help="items per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs (the best is reported)")
    ap.add_argument("--model", action="store_true", help="also the learned model")
    ap.add_argument("--threshold", type=float, default=30.0, help="the model's tag threshold")
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"no data at {args.data}; pass --data FILE", file=sys.stderr)
        return 2
    rows = load_labelled(args.data)
    rules = load_rules()
    t0 = time.perf_counter()
    compiled(rules)
    compile_s = time.perf_counter() - t0
    chars = statistics.mean(len(r.title) + len(r.summary) for r in rows)
    terms = sum(len(r.terms) + len(r.requires) + len(r.exclude) for r in rules.rules)
    print(
        f"rules: {len(rules.rules)} tagging + {len(rules.relevance)} relevance, {terms} terms; "
        f"compiled in {compile_s * 1000:.1f} ms"
    )
    print(f"items: {args.items} (dev set × {args.items / len(rows):.0f}), {chars:.0f} chars each")
    model = None
    if args.model:
        t0 = time.perf_counter()
        model = train(shipped_rows(), args.threshold)
        print(
            f"model: {len(model.weights)} features from {model.items} items, threshold "
            f"{args.threshold:g}; trained in {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
    rates = []
    for _ in range(args.repeat):
        # Items stream through as they do in the service (stored items in batches), rather
        # than all being held in memory at once.
        items = islice(cycle(rows), args.items)
        w0, c0 = time.perf_counter(), time.process_time()
        if model is None:
            for item in items:
                classify(item, rules)
        else:
            for item in items:
                add_model_tags(classify(item, rules), item, model)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        n = args.items
        rates.append(n / cpu)
        print(
            f"  run: {cpu:.2f} s CPU ({n / cpu:,.0f} items/s), {wall:.2f} s wall ({n / wall:,.0f} items/s)"
        )
    what = "classify with the model" if model is not None else "classify"
    print(f"{what}: {max(rates):,.0f} items/s per core (best of {args.repeat}, CPU time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
