"""``python -m agent.measurements [--quick] [--out PATH]``: measure accuracy on synthetic scenarios.

Prints Markdown tables per scenario and noise level (the lead ``measure_leads`` chooses, and lead II alone) and
writes bench/results/measurements.json. All data is SYNTHETIC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._bench import BenchSpec, run_bench, write_results

HEADER = [
    "| scenario / noise | beats | Se | PPV | HR err bpm (mean/max) | PAC true / meas (outside artifacts) "
    "| PVC true / meas (outside artifacts) | N→V | V→N | N→A | A→N | longest V-run exact | QRS ms |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def table(results: dict[str, Any], lead: str) -> list[str]:
    """Markdown rows of one lead (or "chosen") across every scenario/noise group."""
    lines = list(HEADER)
    for key, per_lead in results["groups"].items():
        s = per_lead[lead]
        c = s["confusion"]
        lines.append(
            f"| {key} | {s['beats_ref']} | {s['sensitivity']} | {s['ppv']} "
            f"| {s['hr_abs_err_bpm_mean']} / {s['hr_abs_err_bpm_max']} "
            f"| {s['pac_true']} / {s['pac_count']} ({s['pac_count_outside_artifacts']}) "
            f"| {s['pvc_true']} / {s['pvc_count']} ({s['pvc_count_outside_artifacts']}) "
            f"| {c['N']['V']} | {c['V']['N']} | {c['N']['A']} | {c['A']['N']} "
            f"| {s['longest_v_run_exact']}/{s['records']} | {s['qrs_width_ms_median']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.measurements", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results/measurements.json"))
    parser.add_argument("--quick", action="store_true", help="one seed, 3 minutes, low and medium noise only")
    args = parser.parse_args(argv)
    spec = BenchSpec()
    if args.quick:
        spec = BenchSpec(seeds=(101,), minutes=3.0, noises=("low", "medium"), fs_sweep=(128.0,))
    results = run_bench(spec)
    write_results(results, args.out)
    print(f"{results['data']}\nspec: {results['spec']}, generator version {results['generator_version']}")
    print("\nChosen lead (measure_leads):\n" + "\n".join(table(results, "chosen")))
    print("\nLead II alone (measure):\n" + "\n".join(table(results, "II")))
    print("\nfs sweep (sinus_ectopy, low noise, chosen lead):")
    for fs, s in results["fs_sweep_sinus_ectopy_low"].items():
        print(f"  fs {fs} Hz: Se {s['sensitivity']} PPV {s['ppv']} HR err {s['hr_abs_err_bpm_mean']}", end="")
        print(f" confusion {s['confusion']}")
    per_hour = results["analysis_seconds_per_signal_hour"]
    print(f"\nanalysis time: {results['analysis_seconds']} s in all, {per_hour} s per lead-hour of signal")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
