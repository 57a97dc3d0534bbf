"""How long a full cyclic-GC collection stalls an agent process, before and after ``gc.freeze()``.

The agent process imports torch, transformers and the project's model code; every object they create is tracked
by the cyclic garbage collector, and a full (generation 2) collection walks all of them while holding the GIL, so
ingest and forecasting stop meanwhile. ``agent.daemon.tune_process_for_streaming`` freezes them once the
agent has started. This measures both sides in one run.

Usage: python bench/gc_pause.py [--repeats 5]. Writes bench/results/gc_pause.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "gc_pause.json"


def full_collection_ms(repeats: int) -> float:
    """Median wall time of ``gc.collect()`` (a full collection) in milliseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gc.collect()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import transformers  # noqa: F401

    import agent.daemon
    import llm_runtime.engine  # noqa: F401

    gc.collect()
    tracked = len(gc.get_objects())
    before = full_collection_ms(args.repeats)
    agent.daemon.tune_process_for_streaming()
    after = full_collection_ms(args.repeats)
    result = {
        "tracked_objects_after_imports": tracked,
        "full_collection_ms": round(before, 2),
        "full_collection_ms_after_freeze": round(after, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
