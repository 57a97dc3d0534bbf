"""Cheaper arithmetic for the LM's linear layers on this CPU (issue #20 item 4): float32 vs bfloat16 vs int8 dynamic
quantisation, for Gemma 3 270M's shapes at the token counts the runtime feeds.

    python bench/linear_dtype_bench.py --out bench/results/linear_dtype.json

Random weights and inputs of Gemma 3 270M's linear shapes (hidden 640, MLP 2048, q 1024, k/v 256); one torch
thread; per shape and token count the median of ``--repeats`` timed calls after a warm-up, and the int8 output's
error relative to float32's mean magnitude. The speed of a dtype depends on the CPU's instructions (AVX512-BF16 or
AMX for bf16, VNNI for int8), which the JSON records from /proc/cpuinfo.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch

SHAPES = {"mlp up/gate 640->2048": (640, 2048), "mlp down 2048->640": (2048, 640), "q 640->1024": (640, 1024)}
TOKENS = (2, 20, 160)  # one patient-second of two leads, one patient's 10-s feed, 8 patients' feed


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "avx_vnni", "fma"))


def _median_us(layer: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(10):
            layer(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            layer(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _int8(layer: torch.nn.Linear) -> torch.nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 points eager quantisation users to torchao
        quantised: torch.nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]  # torch.ao is untyped
            torch.nn.Sequential(layer), {torch.nn.Linear}, dtype=torch.qint8
        )
        return quantised


def measure(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, (n_in, n_out) in SHAPES.items():
        torch.manual_seed(0)
        fp32 = torch.nn.Linear(n_in, n_out, bias=False)
        bf16 = torch.nn.Linear(n_in, n_out, bias=False).to(torch.bfloat16)
        bf16.load_state_dict({"weight": fp32.weight.detach().to(torch.bfloat16)})
        int8 = _int8(fp32)
        for tokens in TOKENS:
            x = torch.randn(tokens, n_in)
            with torch.no_grad():
                reference = fp32(x)
                error = float((int8(x) - reference).abs().mean() / reference.abs().mean())
            times = {
                "float32": _median_us(fp32, x, repeats),
                "bfloat16": _median_us(bf16, x.to(torch.bfloat16), repeats),
                "int8_dynamic": _median_us(int8, x, repeats),
            }
            row = {"shape": name, "tokens": tokens, "us": {k: round(v, 1) for k, v in times.items()}}
            row["speedup_vs_float32"] = {k: round(times["float32"] / v, 2) for k, v in times.items()}
            row["int8_mean_abs_error_relative"] = round(error, 4)
            rows.append(row)
            print(f"{name:24s} {tokens:4d} tokens  " + "  ".join(f"{k} {v:8.1f} us" for k, v in times.items()))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results/linear_dtype.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = {
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_flags": _cpu_flags(),
        "threads": 1,
        "data": "random weights and inputs of Gemma 3 270M's linear shapes (timing only)",
        "rows": measure(args.repeats),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
