"""results.json -> Markdown tables (CAMEL's layout: one row per method, one column per window, one table per
horizon) and PNG plots (F1 against window and horizon, calibration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evaluation.scoring import af_onset_aurocs

__all__ = ["markdown_report", "merge_results", "write_report"]

_SET_TITLES = {
    "full": "All test samples (cheap methods)",
    "lm": "LM subsample: every method on identical samples",
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ci(ci: list[float] | tuple[float, float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _grid(per_method: dict[str, Any]) -> tuple[list[int], list[int]]:
    cells = {tuple(int(x[1:]) for x in key.split("_")) for m in per_method.values() for key in m["cells"]}
    return sorted({w for w, _ in cells}), sorted({h for _, h in cells})


def _f1_tables(per_method: dict[str, Any], metric: str) -> list[str]:
    windows, horizons = _grid(per_method)
    lines = []
    for h in horizons:
        lines += [f"**h = {h} s** ({metric.replace('_', '-')} x 100)", ""]
        lines.append("| method | " + " | ".join(f"w = {w} s" for w in windows) + " |")
        lines.append("|---" * (len(windows) + 1) + "|")
        for method, res in per_method.items():
            row = [_pct(res["cells"].get(f"w{w}_h{h}", {}).get(metric)) for w in windows]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


def _summary(per_method: dict[str, Any]) -> list[str]:
    lines = [
        "| method | cells | mean macro-F1 (sinus/AF/flutter) [95% CI] | mean macro-F1 with VT | "
        "AF-onset AUROC (mean over cells) | AF-onset AUROC at h = 300 s | onset ECE | onset Brier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, res in per_method.items():
        cells = res["cells"]
        vt = [c["macro_f1_vt"] for c in cells.values() if c["macro_f1_vt"] is not None]
        af, af300 = af_onset_aurocs(cells), af_onset_aurocs(cells, 300)
        onset = (res.get("calibration") or {}).get("onset") or {}
        lines.append(
            f"| {method} | {res['mean']['cells']} | {_pct(res['mean']['mean_macro_f1'])}"
            f"{_ci(res['mean'].get('mean_macro_f1_ci'))} | {_pct(float(np.mean(vt)) if vt else None)} | "
            f"{_mean3(af)} | {_mean3(af300)} | {_num(onset.get('ece'))} | {_num(onset.get('brier'))} |"
        )
    return [*lines, ""]


def _mean3(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "–"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _onset_table(per_method: dict[str, Any], horizon: int) -> list[str]:
    windows, _ = _grid(per_method)
    lines = [
        f"**Onset within h = {horizon} s: AUROC / AUPRC per arrhythmia (positives), per window**",
        "",
        "| method | arrhythmia | " + " | ".join(f"w = {w} s" for w in windows) + " |",
        "|---|---" + "|---" * len(windows) + "|",
    ]
    for method, res in per_method.items():
        for cls in ("af", "flutter", "vt"):
            row = []
            for w in windows:
                cell = res["cells"].get(f"w{w}_h{horizon}", {}).get(f"onset_{cls}")
                row.append("–" if not cell else f"{_num(cell['auroc'])} / {_num(cell['auprc'])} ({cell['positives']})")
            lines.append(f"| {method} | {cls} | " + " | ".join(row) + " |")
    return [*lines, ""]


def _replay_lines(replay: dict[str, Any] | None) -> list[str]:
    if not replay:
        return []
    lines = [
        f"### Alert-level replay ({replay['method']}: {replay['model_id']})",
        "",
        f"Forecast every {replay['config']['cadence_s']} s of signal, window {replay['window_s']} s, horizons "
        f"{list(replay['horizons_s'])} s, the agent's alert policy; an onset counts as alerted when an alert for it "
        f"was raised at most {replay['config']['lookback_s']} s before it.",
        "",
        "| arrhythmia | onsets | alerted | alerted >= 2 min ahead | median lead time (s) |",
        "|---|---|---|---|---|",
    ]
    for cls, row in replay["per_arrhythmia"].items():
        lead = row["median_lead_time_s"]
        lines.append(
            f"| {cls} | {row['onsets']} | {row['alerted']} | {row['alerted_2min_ahead']} | "
            f"{'–' if lead is None else f'{lead:.0f}'} |"
        )
    rate = replay["false_alerts_per_patient_day"]
    lines += [
        "",
        f"False alerts on non-converting records: {replay['false_alerts']} over {replay['non_converting_records']} "
        f"records ({replay['non_converting_hours']} h) = "
        f"{'–' if rate is None else f'{rate:.1f}'} per patient-day.",
        "",
    ]
    return lines


def markdown_report(results: dict[str, Any]) -> str:
    ds = results["dataset"]
    lines = [
        "# Forecast evaluation results",
        "",
        f"Data: {ds.get('source')} ({(ds.get('spec') or {}).get('name', '')}), test patients: "
        f"{len(ds.get('patients', {}).get('test', []))}. "
        + ("**Synthetic data: not clinical performance.**" if results["synthetic"] else ""),
        "",
    ]
    for set_name, per_method in results["results"].items():
        if not per_method:
            continue
        lines += [f"## {_SET_TITLES.get(set_name, set_name)}", "", *_summary(per_method)]
        lines += _f1_tables(per_method, "macro_f1")
        lines += _onset_table(per_method, 300)
    lines += _replay_lines(results.get("replay"))
    return "\n".join(lines)


def _plot_lines(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []  # (label, style, per-method results)
    methods = sorted({m for per_method in results["results"].values() for m in per_method})
    for set_name, per_method in results["results"].items():
        for method, res in per_method.items():
            style: dict[str, Any] = {
                "color": f"C{methods.index(method)}",
                "linestyle": "-" if set_name == "full" else "--",
            }
            series.append((f"{method} ({set_name})", style, res))
    horizons = sorted({int(k.split("_h")[1]) for _, _, r in series for k in r["cells"]})
    if not horizons:  # a replay-only run (--lm-windows "" and no cheap method): nothing to plot
        return
    fig, axes = plt.subplots(1, len(horizons), figsize=(4 * len(horizons), 3.8), sharey=True, squeeze=False)
    for ax, h in zip(axes[0], horizons, strict=True):
        for label, style, res in series:
            points = sorted(
                (int(k[1:].split("_")[0]), c["macro_f1"])
                for k, c in res["cells"].items()
                if k.endswith(f"_h{h}") and c["macro_f1"] is not None
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label, **style)
        ax.set(xscale="log", title=f"h = {h} s", xlabel="window w (s)")
        ax.minorticks_off()
    axes[0][0].set_ylabel("macro-F1 (sinus/AF/flutter)")
    handles = {lab: han for ax in axes[0] for han, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(6, len(handles)), fontsize=7)
    fig.suptitle("Synthetic benchmark: macro-F1 against window" if results["synthetic"] else "macro-F1 against window")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(out / "eval_f1_window.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, style, res in series:
        per_h = [
            (h, [c["macro_f1"] for k, c in res["cells"].items() if k.endswith(f"_h{h}") and c["macro_f1"]])
            for h in horizons
        ]
        points = [(h, float(np.mean(v))) for h, v in per_h if v]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label, **style)
    ax.set(xlabel="horizon h (s)", ylabel="mean macro-F1 over windows", title="macro-F1 against horizon")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "eval_f1_horizon.png", dpi=110)
    plt.close(fig)


def _plot_calibration(results: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    methods = sorted({m for per_method in results["results"].values() for m in per_method})
    for set_name, per_method in results["results"].items():
        for method, res in per_method.items():
            onset = (res.get("calibration") or {}).get("onset")
            if not onset:
                continue
            pts = [(p, o) for p, o in zip(onset["bin_mean_prob"], onset["bin_observed"], strict=True) if p is not None]
            style: dict[str, Any] = {
                "color": f"C{methods.index(method)}",
                "linestyle": "-" if set_name == "full" else "--",
            }
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{method} ({set_name}) ECE {onset['ece']:.3f}", **style)
    ax.set(xlabel="predicted P(onset within h)", ylabel="observed frequency", title="Onset calibration")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "eval_calibration.png", dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> None:
    (out / "tables.md").write_text(markdown_report(results))
    _plot_lines(results, out)
    _plot_calibration(results, out)


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from runs of different methods on the same benchmark and sample sets (e.g. the cheap methods
    in one process, each LM in another). Refuses runs whose dataset or sample counts differ."""
    merged = {k: v for k, v in parts[0].items() if k not in ("results", "lm", "replay")}
    merged |= {"results": {}, "lm": {}, "replay": None, "merged_from": len(parts)}
    for part in parts:
        if part["dataset"].get("index_sha256") != merged["dataset"].get("index_sha256"):
            raise ValueError("runs on different benchmarks cannot be merged")
        for set_name, per_method in part["results"].items():
            if per_method and part["sets"][set_name] != merged["sets"][set_name]:
                raise ValueError(f"sample set {set_name!r} differs between runs: not the same samples")
            merged["results"].setdefault(set_name, {}).update(per_method)
        merged["lm"] |= part.get("lm") or {}
        merged["replay"] = part.get("replay") or merged["replay"]
    return merged


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.report OUT RUN_DIR...``: merge runs' results.json into OUT (tables and plots)."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    out, runs = Path(args[0]), [Path(a) for a in args[1:]]
    merged = merge_results([json.loads((r / "results.json").read_text()) for r in runs])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(merged, indent=1))
    write_report(merged, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
