"""The second source's validation table: build its records (third-party generators) and measure them.

``python bench/second_source_check.py [--patients 20] [--minutes 30] [--seed 20261207] [--precursor-min 5]``
builds the records under ``--records`` (default runs/second-source), prints the Markdown table per record kind and
writes bench/results/second_source_check.json (``--out``).

Everything here is SYNTHETIC: neurokit2's ECGSYN beats placed by the second-source rhythm model
(``simulators.second_source``); the numbers say whether its labels and rhythms are what they claim, not how
anything performs on patients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from simulators.second_source import LABEL, build_second_source, check_records, markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("runs/second-source"), help="where to build the records")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--precursor-min", type=float, default=5.0, help="the precursor: last N minutes before onset")
    parser.add_argument("--out", type=Path, default=Path("bench/results/second_source_check.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    build_second_source(args.records, args.patients, args.minutes, seed=args.seed)
    result = check_records(args.records, args.precursor_min)
    result["command"] = "python bench/second_source_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(LABEL)
    print(markdown_table(result))
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
