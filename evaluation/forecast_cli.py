"""``python main.py forecast``: one patient's forecast from a synthetic scenario or a WFDB record.

The whole streaming path, offline: cut the window, preprocess it into 1-s windows as the agent does, encode them
with the ONNX encoder, measure the evidence, feed the seconds into the runner, score, explain. Heavy imports
happen inside the handler so ``python main.py --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import DEFAULT_CONFIG_PATH
from core.errors import EcgcastError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

    from agent.settings import Settings
    from evaluation.lm import WindowEvidence
    from llm_runtime.forecast import Forecast

__all__ = ["register", "window_embeddings", "window_input"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forecast", help="forecast one patient from a scenario or a WFDB record (LM runtime)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", help="synthetic scenario name (simulators.scenarios)")
    source.add_argument("--record", type=Path, help="WFDB record path without extension")
    p.add_argument("--seed", type=int, default=0, help="scenario seed")
    p.add_argument("--at", type=float, required=True, help="forecast time: end of the window, seconds")
    p.add_argument("--window", type=int, help="window length, seconds (default llm.window_s)")
    p.add_argument("--horizon", type=int, action="append", help="horizon in seconds; repeat for several")
    p.add_argument("--patient-id", default=None, help="patient id in the output (default: record name)")
    p.add_argument("--backbone", help="override llm.backbone (e.g. tiny-random)")
    p.add_argument("--layout", choices=["streaming", "camel"], help="override llm.layout")
    p.add_argument("--no-explain", action="store_true", help="scores only, no generated rationale")
    p.add_argument("--json", action="store_true", help="print the forecast object as JSON")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config")
    p.set_defaults(func=cmd_forecast)


def _signal(args: argparse.Namespace, leads: tuple[str, ...]) -> tuple[npt.NDArray[np.float32], float, list[str], str]:
    """(p_signal (sig_len, n_leads) mV, fs, sig_name, record name) with columns in ``leads`` order."""
    import numpy as np

    from core.errors import SignalError
    from core.protocol import canonical_lead

    wanted = [canonical_lead(lead) for lead in leads]
    if args.scenario:
        from simulators.scenarios import generate_scenario

        rec = generate_scenario(args.scenario, seed=args.seed, minutes=(args.at + 60) / 60, leads=tuple(wanted))
        p_signal, fs, names, name = rec.p_signal, rec.fs, list(rec.sig_name), rec.record_name
    else:
        import wfdb

        record = wfdb.rdrecord(str(args.record))
        p_signal, fs, names, name = record.p_signal, float(record.fs), list(record.sig_name), record.record_name
    canonical = [canonical_lead(n) for n in names]
    missing = [lead for lead in wanted if lead not in canonical]
    if missing:
        raise SignalError(f"record {name} lacks leads {missing} (has {names}); set llm.leads")
    columns = [canonical.index(lead) for lead in wanted]
    return np.asarray(p_signal[:, columns], dtype=np.float32), fs, wanted, name


def window_embeddings(
    settings: Settings, segment: npt.NDArray[np.float32], fs: float, names: list[str]
) -> npt.NDArray[np.float32]:
    """(sig_len, n_leads) mV -> (n_leads, T, 64) encoder embeddings, via the agent's own preprocessing."""
    from core.windows import preprocess_record
    from encoder_onnx.export import ensure_onnx
    from encoder_onnx.runtime import EncoderRuntime

    pre = preprocess_record(segment, fs, settings.windows, settings.quality, sig_name=names)
    n_leads, n_seconds, n_samples = pre.windows.shape
    with EncoderRuntime(ensure_onnx(settings.encoder), settings.encoder) as encoder:
        flat = encoder.encode(pre.windows.reshape(n_leads * n_seconds, n_samples))  # (L*T, 256) -> (L*T, 64)
    return flat.reshape(n_leads, n_seconds, -1)  # (L*T, 64) -> (L, T, 64)


def window_input(
    settings: Settings, p_signal: npt.NDArray[np.float32], fs: float, names: list[str], at_s: float, window_s: int
) -> tuple[torch.Tensor, WindowEvidence]:
    """The ``window_s`` seconds before ``at_s`` as the runner reads them: (n_leads, T, 64) encoder embeddings and the
    measured evidence (line and trend features) of the same samples."""
    import torch

    from evaluation.lm import window_evidence

    end = round(at_s * fs)
    start = end - round(window_s * fs)
    if start < 0 or end > p_signal.shape[0]:
        raise EcgcastError(f"window [{at_s - window_s}, {at_s}] s is outside the record")
    segment = p_signal[start:end]
    return torch.from_numpy(window_embeddings(settings, segment, fs, names)), window_evidence(segment, fs, names)


def _run(args: argparse.Namespace) -> Forecast:
    from agent.settings import load_settings
    from core.logs import configure_logging
    from llm_runtime.engine import ForecastEngine
    from llm_runtime.runner import ScoreRequest
    from llm_runtime.settings import LlmSettings

    settings = load_settings(args.config)
    configure_logging(settings.logging.level, settings.logging.format)  # to stderr: stdout carries the forecast
    overrides = {
        "window_s": args.window,
        "horizons_s": tuple(args.horizon) if args.horizon else None,
        "backbone": args.backbone,
        "layout": args.layout,
    }
    llm = LlmSettings.model_validate(
        {**settings.llm.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    )
    p_signal, fs, names, record_name = _signal(args, llm.leads)
    embeddings, evidence = window_input(settings, p_signal, fs, names, args.at, llm.window_s)
    engine = ForecastEngine.load(llm, slide="rebuild")
    patient_id = args.patient_id or record_name
    first_second = int(args.at) - embeddings.shape[1]
    with engine.runner:
        engine.runner.prime(patient_id, embeddings.permute(1, 0, 2), first_second)  # (L, T, 64) -> (T, L, 64)
        request = ScoreRequest(patient_id, evidence.text, evidence.trends)
        return engine.forecast([request], explain=not args.no_explain)[0]


def _print_human(forecast: Forecast) -> None:
    print(f"patient {forecast.patient_id} at t={forecast.t_forecast:.0f} s, window {forecast.window_s} s")
    print(f"model: {forecast.model_id} [{forecast.model_version}]")
    for h in forecast.horizons_s:
        rhythm = ", ".join(f"{k} {v:.3f}" for k, v in forecast.rhythm_probs[h].items())
        onset = ", ".join(f"{k} {v:.3f}" for k, v in forecast.onset_probs[h].items())
        print(f"  +{h} s: rhythm {rhythm} | onset within: {onset}")
    print(f"explanation: {forecast.explanation or '(none)'}")
    if forecast.explanation_note:
        print(f"note: {forecast.explanation_note}")
    print(f"latency: {forecast.latency_ms:.0f} ms")


def cmd_forecast(args: argparse.Namespace) -> int:
    try:
        forecast = _run(args)
    except EcgcastError as exc:
        print(f"forecast failed: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(forecast.to_json(indent=2))
    else:
        _print_human(forecast)
    return 0
