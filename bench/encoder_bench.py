"""Encoder benchmark: ORT vs torch eager throughput, and incremental embedding fetch vs re-encoding, in one run.

1. Windows per second per core: ONNX Runtime (CPU provider, 1 intra-op thread) against torch eager (1 thread,
   no_grad, eval) on the same weights, at batch sizes 1, 12, 100 and 1000.
2. Forecast-time cost: reading the last 5 minutes of a 2-lead patient from the EmbeddingRing (what the agent does)
   against rebuilding those embeddings from the raw 5-minute buffer (preprocess_record + encode 600 windows, what
   a design without the ring would do before every forecast), measured side by side.

Usage: python bench/encoder_bench.py [--weights models/encoder/encoder.pt] [--min-time 1.0]
Writes bench/results/encoder.json. CUDA throughput is measured too when a usable CUDA device is present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from core.windows import preprocess_record
from encoder_onnx.embedding_ring import EmbeddingRing
from encoder_onnx.export import export_onnx, random_windows
from encoder_onnx.runtime import EncoderRuntime, cuda_device_usable
from encoder_onnx.settings import DEFAULT_WEIGHTS_PATH, EncoderSettings
from encoder_onnx.weights import load_encoder_weights
from simulators.scenarios import generate_scenario

BATCH_SIZES = (1, 12, 100, 1000)
RESULTS = Path(__file__).resolve().parent / "results" / "encoder.json"


def _block_size(fn: Callable[[], object], block_s: float) -> int:
    fn()  # warm-up
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= block_s:
            return n
        n *= 2


def paired_seconds_per_call(
    fn_a: Callable[[], object], fn_b: Callable[[], object], min_time_s: float, blocks: int = 7
) -> tuple[float, float]:
    """Median seconds per call of ``fn_a`` and ``fn_b``, timed in alternating blocks.

    Alternating keeps both sides under the same background load (the project's machines are shared), so their
    ratio is meaningful even when absolute numbers drift.
    """
    n_a, n_b = _block_size(fn_a, min_time_s / blocks), _block_size(fn_b, min_time_s / blocks)
    a: list[float] = []
    b: list[float] = []
    for _ in range(blocks):
        for fn, n, out in ((fn_a, n_a, a), (fn_b, n_b, b)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - t0) / n)
    return float(np.median(a)), float(np.median(b))


def throughput(onnx_path: Path, model: torch.nn.Module, min_time_s: float) -> list[dict[str, float]]:
    torch.set_num_threads(1)
    settings = EncoderSettings(onnx_path=onnx_path, provider="cpu", intra_op_threads=1, inter_op_threads=1)
    rows: list[dict[str, float]] = []
    with EncoderRuntime(onnx_path, settings) as rt, torch.no_grad():
        for batch in BATCH_SIZES:
            windows = random_windows(batch, seed=batch)
            tensor = torch.from_numpy(windows)
            t_ort, t_torch = paired_seconds_per_call(partial(rt.encode, windows), partial(model, tensor), min_time_s)
            rows.append(
                {
                    "batch": batch,
                    "ort_windows_per_s_per_core": batch / t_ort,
                    "torch_windows_per_s_per_core": batch / t_torch,
                    "ort_speedup": t_torch / t_ort,
                    "ort_ms_per_call": 1e3 * t_ort,
                    "torch_ms_per_call": 1e3 * t_torch,
                }
            )
    return rows


def cuda_throughput(onnx_path: Path, min_time_s: float) -> dict[str, object]:
    usable, reason = cuda_device_usable()
    if not usable or "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"measured": False, "reason": f"no usable CUDA device in this run: {reason}"}
    settings = EncoderSettings(onnx_path=onnx_path, provider="cuda")
    with EncoderRuntime(onnx_path, settings) as rt:
        rows: list[dict[str, float]] = []
        for batch in BATCH_SIZES:
            windows = random_windows(batch, seed=batch)
            t_gpu, _ = paired_seconds_per_call(partial(rt.encode, windows), lambda: None, min_time_s)
            rows.append({"batch": batch, "windows_per_s": batch / t_gpu})
    return {"measured": True, "provider": rt.provider, "rows": rows}


def forecast_fetch(onnx_path: Path, min_time_s: float) -> dict[str, object]:
    """The 5-minute 2-lead forecast input: ring slice vs preprocess + encode from the raw buffer."""
    fs, minutes = 250.0, 5.0
    rec = generate_scenario("af_onset", seed=3, minutes=minutes, fs=fs, leads=("II", "V1"), noise="low")
    p_signal = np.asarray(rec.p_signal)
    settings = EncoderSettings(onnx_path=onnx_path, provider="cpu", intra_op_threads=1, inter_op_threads=1)
    with EncoderRuntime(onnx_path, settings) as rt:
        pre = preprocess_record(p_signal, fs)
        n_sig, n_sec, _ = pre.windows.shape
        ring = EmbeddingRing(n_sig, capacity_s=600)
        emb = rt.encode(pre.windows.reshape(-1, 256)).reshape(n_sig, n_sec, 64)
        for s in range(n_sec):
            for lead in range(n_sig):
                ring.put(lead, s, float(s), emb[lead, s], bool(pre.valid[lead, s]))

        def reencode() -> np.ndarray:
            again = preprocess_record(p_signal, fs)
            return rt.encode(again.windows.reshape(-1, 256))  # (600, 64)

        t_ring, t_reencode = paired_seconds_per_call(lambda: ring.window(n_sec), reencode, min_time_s)
        t_encode_only, _ = paired_seconds_per_call(lambda: rt.encode(pre.windows.reshape(-1, 256)), lambda: None, 0.2)
    return {
        "buffer": f"{minutes:g} min, {n_sig} leads, fs {fs:g} Hz -> {n_sig * n_sec} windows (synthetic af_onset)",
        "ring_fetch_ms": 1e3 * t_ring,
        "reencode_ms": 1e3 * t_reencode,
        "reencode_encode_only_ms": 1e3 * t_encode_only,
        "reencode_over_ring": t_reencode / t_ring,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_PATH)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model, _ = load_encoder_weights(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "encoder.onnx"
        export_onnx(args.weights, onnx_path, n_random=64)
        rows = throughput(onnx_path, model, args.min_time)
        fetch = forecast_fetch(onnx_path, args.min_time)
        cuda = cuda_throughput(onnx_path, args.min_time)
    result = {
        "weights": str(args.weights),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
        },
        "throughput_cpu_1_thread": rows,
        "forecast_fetch": fetch,
        "cuda": cuda,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'batch':>6} {'ORT win/s/core':>15} {'torch win/s/core':>17} {'ORT speed-up':>13}")
    for r in rows:
        print(
            f"{r['batch']:>6} {r['ort_windows_per_s_per_core']:>15,.0f} {r['torch_windows_per_s_per_core']:>17,.0f} "
            f"{r['ort_speedup']:>12.1f}x"
        )
    print(
        f"forecast input ({fetch['buffer']}): ring fetch {fetch['ring_fetch_ms']:.3f} ms vs re-encode "
        f"{fetch['reencode_ms']:.1f} ms (encode alone {fetch['reencode_encode_only_ms']:.1f} ms): "
        f"{fetch['reencode_over_ring']:,.0f}x"
    )
    print(f"CUDA: {cuda if not cuda.get('measured') else cuda['rows']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
