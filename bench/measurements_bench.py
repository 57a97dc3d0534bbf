"""Accuracy of the measurement module on synthetic scenarios with exact labels.

``python bench/measurements_bench.py [--quick] [--out PATH]`` prints Markdown tables per scenario and noise level (the
lead ``measure_leads`` chooses, and lead II alone) and writes bench/results/measurements.json.
``python bench/measurements_bench.py --ec57 [--quick]`` instead scores beat by beat as ANSI/AAMI EC57 does (150 ms
match window; QRS and ventricular-beat Se and +P, per record and gross), per scenario and noise level, for clean
records (noise none/low) and for AF (``af_onset`` after its onset, and the ``af`` rhythm preset), and writes
bench/results/measurements_ec57.json.

Everything here is SYNTHETIC: records come from :mod:`simulators.scenarios`, whose beats and rhythms are scripted,
so the numbers say how well the module recovers the generator's labels, not how it performs on patients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.measurements import (
    BEAT_CLASSES,
    Ec57Score,
    LeadAnalysis,
    analyse_leads,
    best_lead,
    gross_ec57,
    run_bounds,
    score_beats,
    score_ec57,
    true_rate_bpm,
)


@dataclass(frozen=True)
class BenchSpec:
    """What the benchmark generates; every field is written into the results for reproducibility."""

    scenarios: tuple[str, ...] = ("sinus_stable", "sinus_ectopy", "sinus_tachy_exertion", "af_onset",
                                  "flutter_onset", "vt_onset")  # fmt: skip
    seeds: tuple[int, ...] = (101, 102, 103, 104, 105)
    minutes: float = 10.0
    fs: float = 250.0
    leads: tuple[str, ...] = ("II", "V1")
    noises: tuple[str, ...] = ("none", "low", "medium", "high")
    fs_sweep: tuple[float, ...] = (128.0, 360.0, 500.0, 1000.0)  # sinus_ectopy, low noise, first seed


def _longest_run(symbols: npt.NDArray[np.str_]) -> int:
    bounds = run_bounds(symbols == "V")
    return int((bounds[:, 1] - bounds[:, 0]).max()) if bounds.size else 0


def _record_row(rec: Any, analysis: LeadAnalysis, chosen: bool) -> dict[str, Any]:
    """Scores of one analysed lead of one generated record."""
    score = score_beats(analysis, rec.beats.sample, rec.beats.symbol, rec.unusable)
    m = analysis.measurements
    usable_ref = ~rec.unusable[rec.beats.sample]
    usable_test = ~rec.unusable[analysis.r_peaks]
    true_hr = true_rate_bpm(rec.beats.sample, rec.fs, rec.unusable)
    return {
        "scenario": rec.meta["scenario"],
        "seed": rec.meta["seed"],
        "noise": rec.meta["noise"],
        "fs": rec.fs,
        "lead": m.lead,
        "chosen": chosen,
        **score.as_dict(),
        "hr_true_bpm": round(true_hr, 2),
        "hr_bpm": None if m.hr_bpm is None else round(m.hr_bpm, 2),
        "pac_true": int(np.sum(rec.beats.symbol[usable_ref] == "A")),
        "pac_count": m.pac_count,
        "pac_count_outside_artifacts": int(np.sum(analysis.symbols[usable_test] == "A")),
        "pvc_true": int(np.sum(rec.beats.symbol[usable_ref] == "V")),
        "pvc_count": m.pvc_count,
        "pvc_count_outside_artifacts": int(np.sum(analysis.symbols[usable_test] == "V")),
        "longest_v_run_true": _longest_run(rec.beats.symbol),
        "longest_v_run": m.longest_ventricular_run,
        "qrs_width_ms": m.qrs_width_ms,
        "rr_irregularity": None if m.rr_irregularity is None else round(m.rr_irregularity, 4),
        "usable_fraction": round(m.usable_fraction, 4),
        "usable_fraction_true": round(1.0 - float(rec.unusable.mean()), 4),
    }


def _score_record(rec: Any) -> tuple[list[dict[str, Any]], float]:
    start = time.perf_counter()
    analyses = analyse_leads(rec.p_signal.astype(np.float64), rec.fs, list(rec.sig_name))
    elapsed = time.perf_counter() - start
    chosen = best_lead(analyses)
    return [_record_row(rec, a, i == chosen) for i, a in enumerate(analyses)], elapsed


_COUNT_KEYS = (
    "pac_true",
    "pac_count",
    "pac_count_outside_artifacts",
    "pvc_true",
    "pvc_count",
    "pvc_count_outside_artifacts",
)


def _median(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return float(np.median(finite)) if finite else None


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled Se/PPV and confusion, mean |HR error| and count totals over a group of rows."""
    tp = sum(r["true_positives"] for r in rows)
    n_ref = sum(r["n_ref"] for r in rows)
    n_test = sum(r["n_test"] for r in rows)
    confusion = {t: {p: sum(r["confusion"][t][p] for r in rows) for p in BEAT_CLASSES} for t in BEAT_CLASSES}
    hr_err = [abs(r["hr_bpm"] - r["hr_true_bpm"]) for r in rows if r["hr_bpm"] is not None]
    return {
        "records": len(rows),
        "beats_ref": n_ref,
        "sensitivity": round(tp / n_ref, 4) if n_ref else None,
        "ppv": round(tp / n_test, 4) if n_test else None,
        "confusion": confusion,
        "hr_abs_err_bpm_mean": round(float(np.mean(hr_err)), 2) if hr_err else None,
        "hr_abs_err_bpm_max": round(float(np.max(hr_err)), 2) if hr_err else None,
        **{key: sum(r[key] for r in rows) for key in _COUNT_KEYS},
        "longest_v_run_exact": sum(r["longest_v_run"] == r["longest_v_run_true"] for r in rows),
        "qrs_width_ms_median": _median([r["qrs_width_ms"] for r in rows]),
    }


def run_bench(spec: BenchSpec) -> dict[str, Any]:
    """Generate every (scenario, seed, noise) record of ``spec``, measure it and score it against the truth."""
    from simulators.scenarios import GENERATOR_VERSION, generate_scenario

    rows: list[dict[str, Any]] = []
    seconds = 0.0
    jobs = [(n, s, z, spec.fs) for n in spec.scenarios for z in spec.noises for s in spec.seeds]
    jobs += [("sinus_ectopy", spec.seeds[0], "low", fs) for fs in spec.fs_sweep]
    for name, seed, noise, fs in jobs:
        rec = generate_scenario(name, seed=seed, minutes=spec.minutes, fs=fs, leads=spec.leads, noise=noise)
        new_rows, elapsed = _score_record(rec)
        rows += new_rows
        seconds += elapsed
    main = [r for r in rows if r["fs"] == spec.fs]
    groups: dict[str, Any] = {}
    for name in spec.scenarios:
        for noise in spec.noises:
            group = [r for r in main if r["scenario"] == name and r["noise"] == noise]
            groups[f"{name}/{noise}"] = {
                lead: _summarise([r for r in group if r["lead"] == lead]) for lead in spec.leads
            } | {"chosen": _summarise([r for r in group if r["chosen"]])}
    sweep = {f"{fs:g}": _summarise([r for r in rows if r["fs"] == fs and r["chosen"]]) for fs in spec.fs_sweep}
    signal_s = spec.minutes * 60.0 * len(jobs) * len(spec.leads)
    return {
        "data": "SYNTHETIC: simulators.scenarios records (scripted beats and rhythms); not clinical performance",
        "generator_version": GENERATOR_VERSION,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()},
        "tolerance_ms": 50,
        "records": len(jobs),
        "analysis_seconds": round(seconds, 2),
        "analysis_seconds_per_signal_hour": round(seconds / (signal_s / 3600.0), 3),
        "groups": groups,
        "fs_sweep_sinus_ectopy_low": sweep,
        "rows": rows,
    }


def write_results(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


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


@dataclass(frozen=True)
class Ec57Spec:
    """What the EC57-style run generates; written into its results."""

    scenarios: tuple[str, ...] = BenchSpec.scenarios
    seeds: tuple[int, ...] = BenchSpec.seeds
    minutes: float = BenchSpec.minutes
    fs: float = BenchSpec.fs
    leads: tuple[str, ...] = BenchSpec.leads
    noises: tuple[str, ...] = BenchSpec.noises
    af_preset_seconds: float = 300.0  # generate_rhythm("af", ...): AF at 110 bpm throughout, no PVCs placed
    af_preset_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    generator: str = "1"  # "2": generator v2's scenarios (morphology families, varied PACs and AF)


CLEAN = ("none", "low")


def _ec57_scores(rec: Any, analyses: list[LeadAnalysis], from_sample: int = 0) -> dict[str, Ec57Score]:
    """EC57 counts of the chosen lead and of lead II, on beats at or after ``from_sample`` outside unusable spans."""
    excluded = rec.unusable.copy()
    excluded[:from_sample] = True
    picked = {"chosen": analyses[best_lead(analyses)], "II": analyses[0]}
    return {
        key: score_ec57(rec.beats.sample, rec.beats.symbol, a.r_peaks, a.symbols, rec.fs, excluded)
        for key, a in picked.items()
    }


def run_ec57(spec: Ec57Spec) -> dict[str, Any]:
    """Score every record of ``spec`` beat by beat; group per scenario/noise, clean records, and AF stretches."""
    from simulators.scenarios import generate_rhythm, generate_scenario

    rows: list[dict[str, Any]] = []
    for name in spec.scenarios:
        for noise in spec.noises:
            for seed in spec.seeds:
                rec = generate_scenario(
                    name, seed, spec.minutes, spec.fs, spec.leads, noise=noise, generator=spec.generator
                )
                analyses = analyse_leads(rec.p_signal.astype(np.float64), rec.fs, list(rec.sig_name))
                rows.append({"group": name, "noise": noise, "seed": seed, "scores": _ec57_scores(rec, analyses)})
                if name == "af_onset" and "AF" in rec.onsets:
                    onset = round(rec.onsets["AF"] * rec.fs)
                    post = _ec57_scores(rec, analyses, onset)
                    rows.append({"group": "af_onset after onset", "noise": noise, "seed": seed, "scores": post})
    for noise in spec.noises:
        for seed in spec.af_preset_seeds:
            rec = generate_rhythm("af", seconds=spec.af_preset_seconds, seed=seed, fs=spec.fs, leads=spec.leads,
                                  noise=noise)  # fmt: skip
            analyses = analyse_leads(rec.p_signal.astype(np.float64), rec.fs, list(rec.sig_name))
            rows.append({"group": "af preset", "noise": noise, "seed": seed, "scores": _ec57_scores(rec, analyses)})
    groups: dict[str, dict[str, Any]] = {}
    names = [*spec.scenarios, "af_onset after onset", "af preset"]
    selections: list[tuple[str, str | None, tuple[str, ...]]] = [
        (f"{n}/{z}", n, (z,)) for n in names for z in spec.noises
    ]
    selections += [(f"{n}/clean", n, CLEAN) for n in names]
    selections += [("all scenarios/clean", None, CLEAN), ("AF (af_onset after onset + af preset)/clean", "AF", CLEAN)]
    selections += [("AF (af_onset after onset + af preset)/all noise", "AF", spec.noises)]
    for key, group, noises in selections:
        chosen = [r for r in rows if r["noise"] in noises and _in_group(r["group"], group, spec.scenarios)]
        if chosen:
            groups[key] = {lead: _ec57_summary([r["scores"][lead] for r in chosen]) for lead in ("chosen", "II")}
    return {
        "data": "SYNTHETIC: simulators.scenarios records (scripted beats and rhythms); not clinical performance",
        "generator_version": spec.generator,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()},
        "tolerance_ms": 150,
        "groups": groups,
        "rows": [r | {"scores": {k: s.as_dict() for k, s in r["scores"].items()}} for r in rows],
    }


def _in_group(row_group: str, group: str | None, scenarios: tuple[str, ...]) -> bool:
    """None: every whole scenario record; "AF": the two AF stretches; else that group exactly."""
    if group is None:
        return row_group in scenarios
    if group == "AF":
        return row_group in ("af_onset after onset", "af preset")
    return row_group == group


def _ec57_summary(scores: list[Ec57Score]) -> dict[str, Any]:
    """Gross counts and rates, plus the worst record's QRS Se and +P (EC57 asks for both views)."""
    qrs_se = [s.qrs_se for s in scores if not np.isnan(s.qrs_se)]
    qrs_ppv = [s.qrs_ppv for s in scores if not np.isnan(s.qrs_ppv)]
    return gross_ec57(scores).as_dict() | {
        "qrs_se_min_record": round(min(qrs_se), 4) if qrs_se else None,
        "qrs_ppv_min_record": round(min(qrs_ppv), 4) if qrs_ppv else None,
    }


EC57_HEADER = [
    "| group / noise | records | ref beats | QRS Se | QRS +P | worst record Se / +P | ref V | V Se | V +P "
    "| V TP / FN / FP |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def ec57_table(results: dict[str, Any], lead: str) -> list[str]:
    """Markdown rows of one lead ("chosen" or "II") across the EC57 groups."""
    lines = list(EC57_HEADER)
    for key, per_lead in results["groups"].items():
        s = per_lead[lead]
        lines.append(
            f"| {key} | {s['records']} | {s['qrs_tp'] + s['qrs_fn']} | {s['qrs_se']} | {s['qrs_ppv']} "
            f"| {s['qrs_se_min_record']} / {s['qrs_ppv_min_record']} | {s['v_tp'] + s['v_fn']} | {s['v_se']} "
            f"| {s['v_ppv']} | {s['v_tp']} / {s['v_fn']} / {s['v_fp']} |"
        )
    return lines


def main_ec57(quick: bool, out: Path, generator: str) -> int:
    from simulators.scenarios import scenario_names

    spec = Ec57Spec(generator=generator, scenarios=scenario_names(generator))
    if quick:
        spec = replace(spec, seeds=(101,), minutes=3.0, noises=("low", "medium"), af_preset_seeds=(0,))
    results = run_ec57(spec)
    write_results(results, out)
    print(f"{results['data']}\nspec: {results['spec']}, generator version {results['generator_version']}")
    print("EC57-style, 150 ms window; 'worst record': lowest per-record QRS Se / +P in the group")
    print("\nChosen lead (measure_leads):\n" + "\n".join(ec57_table(results, "chosen")))
    print("\nLead II alone:\n" + "\n".join(ec57_table(results, "II")))
    print(f"wrote {out}")
    return 0


def _rhythm_mask(rec: Any, aux: str) -> npt.NDArray[np.bool_]:
    mask = np.zeros(rec.sig_len, dtype=bool)
    for seg in rec.rhythms:
        if seg.aux == aux:
            mask[seg.start_sample : seg.end_sample] = True
    return mask


def run_ec57_records(directory: Path) -> dict[str, Any]:
    """EC57 on every annotated WFDB record under ``directory`` (e.g. the second source): whole records, and their
    AF stretches alone (beats outside ``(AFIB`` segments excluded), on the chosen lead."""
    from simulators.wfdb_io import read_directory

    rows = []
    for rec in read_directory(directory):
        analyses = analyse_leads(rec.p_signal.astype(np.float64), rec.fs, list(rec.sig_name))
        a = analyses[best_lead(analyses)]
        whole = score_ec57(rec.beats.sample, rec.beats.symbol, a.r_peaks, a.symbols, rec.fs, rec.unusable)
        row: dict[str, Any] = {"record": rec.record_name, "whole": whole}
        af = _rhythm_mask(rec, "(AFIB")
        if af.any():
            excluded = rec.unusable | ~af
            row["af"] = score_ec57(rec.beats.sample, rec.beats.symbol, a.r_peaks, a.symbols, rec.fs, excluded)
        rows.append(row)
    groups = {
        "all records": {"chosen": _ec57_summary([r["whole"] for r in rows])},
        "AF stretches": {"chosen": _ec57_summary([r["af"] for r in rows if "af" in r])},
    }
    return {
        "data": f"WFDB records under {directory} (SYNTHETIC when it is the second source); not clinical performance",
        "source": str(directory),
        "tolerance_ms": 150,
        "groups": groups,
        "rows": [{"record": r["record"]} | {k: r[k].as_dict() for k in ("whole", "af") if k in r} for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/measurements_bench.py", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/measurements"
                        "[_ec57].json)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one seed, 3 minutes, low and medium noise only")
    parser.add_argument("--ec57", action="store_true", help="EC57-style beat-by-beat scoring instead")
    parser.add_argument("--records", type=Path, help="with --ec57: score the annotated WFDB records under this folder")
    parser.add_argument("--generator", default="1", choices=["1", "2"], help="with --ec57: scenario generator")
    args = parser.parse_args(argv)
    if args.ec57 and args.records:
        results = run_ec57_records(args.records)
        write_results(results, args.out or Path("bench/results/measurements_ec57_records.json"))
        print(results["data"] + "\n" + "\n".join(ec57_table(results, "chosen")))
        return 0
    if args.ec57:
        default = "measurements_ec57.json" if args.generator == "1" else f"measurements_ec57_v{args.generator}.json"
        return main_ec57(args.quick, args.out or Path("bench/results") / default, args.generator)
    args.out = args.out or Path("bench/results/measurements.json")
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
