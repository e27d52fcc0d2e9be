"""Continuous query matching: one write against N standing tasks, predicate index vs linear.

Xenon matches every index write against every active continuous query, one after another
(`LuceneDocumentIndexService.applyActiveQueries`). fleetwatch indexes the tasks' DNF
conjunctions by one equality term (`fleetwatch.query.predicate_index`). This benchmark
registers N tasks of realistic shapes, replays the same random writes through both and
reports the mean cost of matching one write, the ratio, and how many candidates the index
verified. Both paths must return the same task sets (checked on every write).

Task shapes (share of N): 70 % live query result streams (kind fleet:result AND
campaignLink = one campaign), 10 % host watches (kind fleet:host AND uuid = one of 10,000
hosts), 8 % result log filters (kind fleet:log AND name IN three of 1,000 query names), 8 %
numeric thresholds (kind docs:cK AND value > X, over 200 collections), 4 % wildcard with
negation (kind docs:cK AND name WILDCARD AND NOT status = ok), plus 20 tasks with no
equality at all (prefix, negation only) that sit on the always-check list.

Run: `python -m bench.bench_matching [--sizes 1000,10000,100000] [--writes 2000]`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench._harness import Measurement, Report
from fleetwatch.query.matcher import CompiledQuery, compile_query
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.spec import parse_query

HOSTS = 10_000
LOG_NAMES = 1_000
COLLECTIONS = 200
ALWAYS_CHECK = 20


def _t(name: str, value: str, match_type: str = "TERM", occ: str = "MUST_OCCUR") -> dict[str, Any]:
    term = {"propertyName": name, "matchValue": value, "matchType": match_type}
    return {"occurance": occ, "term": term}


def _kind(kind: str, *clauses: dict[str, Any]) -> dict[str, Any]:
    return {"booleanClauses": [_t("documentKind", kind), *clauses]}


def task_queries(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """N task queries (JSON, as clients send them) in the shares of the module docstring."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        share = i % 100
        if share < 70:
            out.append(_kind("fleet:result", _t("campaignLink", f"/fleet/campaigns/{i}")))
        elif share < 80:
            out.append(_kind("fleet:host", _t("uuid", f"host-{rng.randrange(HOSTS)}")))
        elif share < 88:
            names = rng.sample(range(LOG_NAMES), 3)
            any_of = {
                "booleanClauses": [_t("name", f"pack/q{k}", occ="SHOULD_OCCUR") for k in names]
            }
            out.append(_kind("fleet:log", any_of))
        elif share < 96:
            threshold = {
                "term": {
                    "propertyName": "value",
                    "range": {"type": "DOUBLE", "min": rng.uniform(0, 100)},
                }
            }
            out.append(_kind(f"docs:c{rng.randrange(COLLECTIONS)}", threshold))
        else:
            out.append(
                _kind(
                    f"docs:c{rng.randrange(COLLECTIONS)}",
                    _t("name", f"*-{rng.randrange(50)}*", "WILDCARD"),
                    _t("status", "ok", occ="MUST_NOT_OCCUR"),
                )
            )
    for k in range(ALWAYS_CHECK):
        if k % 2:
            out.append(_t("documentSelfLink", f"/docs/audit{k}/", "PREFIX"))
        else:
            out.append({"booleanClauses": [_t("status", f"state-{k}", occ="MUST_NOT_OCCUR")]})
    return out


def writes(n_tasks: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Document bodies as the index would hand them to the matcher after a write."""
    docs: list[dict[str, Any]] = []
    for i in range(count):
        r = rng.random()
        if r < 0.5:
            campaign = rng.randrange(max(n_tasks, 1))
            doc = {
                "documentKind": "fleet:result",
                "documentSelfLink": f"/fleet/results/{campaign}-{i}",
                "campaignLink": f"/fleet/campaigns/{campaign}",
                "hostId": rng.randrange(HOSTS),
                "status": "complete",
                "rows": [{"name": "osqueryd", "pid": str(rng.randrange(1 << 16))}],
            }
        elif r < 0.7:
            host = rng.randrange(HOSTS)
            doc = {
                "documentKind": "fleet:host",
                "documentSelfLink": f"/fleet/hosts/{host}",
                "uuid": f"host-{host}",
                "hostname": f"web-{host}",
                "platform": rng.choice(["darwin", "ubuntu", "windows"]),
                "labels": ["All Hosts", rng.choice(["prod", "dev"])],
                "status": "online",
            }
        elif r < 0.85:
            doc = {
                "documentKind": "fleet:log",
                "documentSelfLink": f"/fleet/logs/{i}",
                "name": f"pack/q{rng.randrange(LOG_NAMES)}",
                "action": "added",
                "columns": {"path": "/usr/bin/x"},
            }
        else:
            doc = {
                "documentKind": f"docs:c{rng.randrange(COLLECTIONS)}",
                "documentSelfLink": f"/docs/c/{i}",
                "name": f"item-{rng.randrange(100)}",
                "value": rng.uniform(0, 100),
                "status": rng.choice(["ok", "failed"]),
            }
        docs.append(doc)
    return docs


def _per_write(fn: Callable[[dict[str, Any]], set[int]], docs: Sequence[dict[str, Any]]) -> float:
    """Mean seconds per write (docs are replayed in order)."""
    start = time.perf_counter()
    for doc in docs:
        fn(doc)
    return (time.perf_counter() - start) / len(docs)


def run(n: int, n_writes: int, seed: int) -> Report:
    rng = random.Random(seed)
    raw = task_queries(n, rng)
    start = time.perf_counter()
    compiled: list[CompiledQuery] = [compile_query(parse_query(q)) for q in raw]
    compile_s = time.perf_counter() - start
    index: PredicateIndex[int] = PredicateIndex()
    start = time.perf_counter()
    for key, c in enumerate(compiled):
        index.add(key, c)
    index_s = time.perf_counter() - start
    docs = writes(n, n_writes, rng)

    def linear(doc: dict[str, Any]) -> set[int]:
        return {key for key, c in enumerate(compiled) if c.matches(doc)}

    # Same answers on every write (and a warm-up for both paths).
    sample = docs[: min(len(docs), 200)]
    matched = 0
    for doc in sample:
        expected = linear(doc)
        assert index.match(doc) == expected, doc
        matched += len(expected)
    candidates = sum(len(index.candidates(doc)) for doc in docs) / len(docs)

    # The linear scan is slow at 100k tasks: time it on a prefix of the same writes.
    linear_docs = docs[: max(20, min(len(docs), 2_000_000 // max(n, 1)))]
    linear_s = _per_write(linear, linear_docs)
    indexed_s = _per_write(index.match, docs)

    report = Report(
        bench="matching",
        baseline="linear (Xenon)",
        params={
            "tasks": len(compiled),
            "writes": len(docs),
            "linear_writes": len(linear_docs),
            "seed": seed,
        },
    )
    report.add(Measurement("linear (Xenon)", linear_s * 1e6, "us/write", higher_is_better=False))
    report.add(
        Measurement(
            "predicate index",
            indexed_s * 1e6,
            "us/write",
            higher_is_better=False,
            extra={"candidates_per_write": round(candidates, 1), "speedup": linear_s / indexed_s},
        )
    )
    report.notes.append(
        f"predicate index is {linear_s / indexed_s:,.0f}x cheaper per write; "
        f"{candidates:,.1f} candidate tasks verified per write on average "
        f"({index.always_check_count} always-check conjunctions), "
        f"{matched / len(sample):.2f} tasks matched per write"
    )
    report.notes.append(
        f"setup: compile {compile_s:.2f} s ({compile_s / len(compiled) * 1e6:.0f} us/task), "
        f"index {index_s:.2f} s ({index_s / len(compiled) * 1e6:.1f} us/task)"
    )
    return report


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_matching", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000", help="task counts")
    parser.add_argument("--writes", type=int, default=2000, help="writes replayed per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(list(argv))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    summary = []
    for n in sizes:
        report = run(n, args.writes, args.seed)
        report.print()
        print()
        if not args.no_save:
            report.save()
        base = report.get("linear (Xenon)").value
        idx = report.get("predicate index").value
        summary.append((report.params["tasks"], base, idx))
    print("tasks      linear us/write   index us/write   index is N x cheaper")
    for tasks, base, idx in summary:
        print(f"{tasks:>7,}  {base:>16,.1f}  {idx:>15,.2f}  {base / idx:>20,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
