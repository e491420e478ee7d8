"""CPU per ``RuleEngine.evaluate``: the rules' share of the ingest hot path (one call per reading).

A site-like rule set on 200 points: a threshold with hysteresis and persistence on every point, a
``stale`` rule on every tenth, a rate rule and an ``all_of`` with freshness on a few; live readings
(``ts`` the wall clock at the call, as a bus stamps them), one evaluate per reading, plus points no
rule uses (the early return). Prints JSON: ns per evaluate, best of ``--repeat`` rounds.

    .venv/bin/python bench/rules_eval.py [--readings 200000] [--repeat 5]

Before/after a change of the engine: run it alternately on both trees (ABAB) in one session and
record the ratio in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from gateway.rules.config import RulesConfig
from gateway.rules.engine import RuleEngine
from gateway.shared import Quality, Reading

POINTS = 200
UNRULED = 50  # points polled and reported that no rule looks at
BLOCK = 25  # readings of one read, handed over together


def rules() -> RulesConfig:
    spec: list[dict[str, Any]] = []
    for i in range(POINTS):
        spec.append({"type": "threshold", "id": f"hi{i}", "point": f"p{i}", "above": 90.0, "hysteresis": 1.0,
                     "persistence": {"duration": 5}})
        if i % 10 == 0:
            spec.append({"type": "stale", "id": f"st{i}", "point": f"p{i}", "max_age": 60})
    for i in range(0, 20, 4):
        spec.append({"type": "rate_of_change", "id": f"rise{i}", "point": f"p{i}", "rise_per_min": 50.0,
                     "window": 60})
        spec.append({"type": "all_of", "id": f"both{i}", "conditions": [
            {"type": "threshold", "point": f"p{i}", "above": 80.0, "within": 30},
            {"type": "threshold", "point": f"p{i + 1}", "above": 80.0, "within": 30}]})
    return RulesConfig.model_validate(spec)


def run(count: int) -> float:
    """ns per evaluate; readings come in blocks of one read (20 points, one ``ts``), stamped when taken."""
    engine = RuleEngine(rules())
    names = [f"p{i}" for i in range(POINTS)] + [f"u{i}" for i in range(UNRULED)]
    blocks = [names[i : i + BLOCK] for i in range(0, len(names), BLOCK)]
    evaluate = engine.evaluate
    spent = 0
    for n in range(count // BLOCK):
        taken = time.time()
        block = [Reading(name, 50.0 + (n % 7), Quality.GOOD, taken) for name in blocks[n % len(blocks)]]
        started = time.perf_counter_ns()
        for reading in block:
            evaluate(reading)
        spent += time.perf_counter_ns() - started
    return spent / (count // BLOCK * BLOCK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rounds = [run(args.readings) for _ in range(args.repeat)]
    print(json.dumps({"readings": args.readings, "ns_per_evaluate": round(min(rounds), 1),
                      "rounds": [round(r, 1) for r in rounds]}))


if __name__ == "__main__":
    main()
