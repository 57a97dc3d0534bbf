"""``python -m agent.measurements [--quick] [--out PATH]``: measure accuracy on synthetic scenarios.

Prints a table per scenario and noise level and writes bench/results/measurements.json. All data is SYNTHETIC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._bench import BenchSpec, run_bench, write_results


def _table(results: dict[str, object]) -> list[str]:
    groups = results["groups"]
    assert isinstance(groups, dict)
    lines = [
        "| scenario / noise | lead | beats | Se | PPV | HR err (mean/max bpm) | PAC true/meas | PVC true/meas "
        "| N→V | V→N | N→A | A→N | longest V-run exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, per_lead in groups.items():
        for lead, s in per_lead.items():
            c = s["confusion"]
            lines.append(
                f"| {key} | {lead} | {s['beats_ref']} | {s['sensitivity']} | {s['ppv']} "
                f"| {s['hr_abs_err_bpm_mean']}/{s['hr_abs_err_bpm_max']} | {s['pac_true']}/{s['pac_count']} "
                f"| {s['pvc_true']}/{s['pvc_count']} | {c['N']['V']} | {c['V']['N']} | {c['N']['A']} | {c['A']['N']} "
                f"| {s['longest_v_run_exact']}/{s['records']} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.measurements", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results/measurements.json"))
    parser.add_argument("--quick", action="store_true", help="one seed, 3 minutes, low and medium noise only")
    args = parser.parse_args(argv)
    spec = (
        BenchSpec(seeds=(101,), minutes=3.0, noises=("low", "medium"), fs_sweep=(128.0,)) if args.quick else BenchSpec()
    )
    results = run_bench(spec)
    write_results(results, args.out)
    print(f"SYNTHETIC data ({results['records']} records, spec {results['spec']})")
    print("\n".join(_table(results)))
    print(f"\nfs sweep (sinus_ectopy, low noise, chosen lead): {results['fs_sweep_sinus_ectopy_low']}")
    print(
        f"analysis time: {results['analysis_seconds']} s, {results['analysis_seconds_per_signal_hour']} s per lead-hour"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
