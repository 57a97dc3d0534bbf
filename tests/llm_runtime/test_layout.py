"""Attention masks against a brute-force reference written straight from the rules, for both layouts."""

from __future__ import annotations

import torch

from llm_runtime.layout import ECG_SPECIAL_TOKENS, TokenKind, TokenMeta, attention_masks, visibility
from llm_runtime.packing import (
    SequenceBuilder,
    camel_block,
    streaming_close,
    streaming_header,
    streaming_second,
)

LEADS = ("ii", "v1", "v5")


def brute_force(meta: TokenMeta, sliding_window: int | None) -> torch.Tensor:
    """The rule, token pair by token pair (B = 1)."""
    kind, pos, sec, question, option = (f[0].tolist() for f in meta.fields())
    n = len(kind)
    out = torch.zeros(1, n, n, dtype=torch.bool)
    for q in range(n):
        for k in range(n):
            if kind[q] == TokenKind.PAD:
                out[0, q, k] = True
                continue
            if kind[k] == TokenKind.PAD:
                continue
            on_branch = question[k] in (-1, question[q]) and option[k] in (-1, option[q])
            both_ecg = kind[q] == TokenKind.ECG and kind[k] == TokenKind.ECG
            ordered = sec[k] <= sec[q] if both_ecg else k <= q  # ECG: by second; otherwise sequence order
            near = sliding_window is None or pos[q] - pos[k] < sliding_window
            out[0, q, k] = on_branch and ordered and near
    return out


def camel_sequence(n_seconds: int = 4) -> TokenMeta:
    builder = SequenceBuilder().text([5, 6, 7])
    camel_block(builder, torch.randn(len(LEADS), n_seconds, 64), LEADS)
    builder.text([8, 9])
    return builder.build().meta


def streaming_sequence(n_seconds: int = 4, with_options: bool = False) -> TokenMeta:
    builder = SequenceBuilder().text([5, 6, 7])
    streaming_header(builder, LEADS)
    for t in range(n_seconds):
        streaming_second(builder, torch.randn(len(LEADS), 64), 100 + t)
    streaming_close(builder, LEADS)
    builder.text([8, 9])
    if with_options:
        for q in range(2):
            builder.branch(q).text([10 + q])
            for o in range(3):
                builder.branch(q, o).text([20 + o] * (o + 1))
    return builder.build().meta


def test_special_table_is_camels_order() -> None:
    assert len(ECG_SPECIAL_TOKENS) == 26
    assert ECG_SPECIAL_TOKENS[:4] == (
        "<ecg_global_start>",
        "<ecg_global_end>",
        "<ecg_lead_i_start>",
        "<ecg_lead_i_end>",
    )
    assert ECG_SPECIAL_TOKENS[-1] == "<ecg_lead_v6_end>"


def test_camel_mask_matches_brute_force() -> None:
    meta = camel_sequence()
    for window in (None, 5):
        assert torch.equal(visibility(meta, meta, window), brute_force(meta, window))


def test_streaming_mask_matches_brute_force_with_option_branches() -> None:
    meta = streaming_sequence(with_options=True)
    for window in (None, 7):
        assert torch.equal(visibility(meta, meta, window), brute_force(meta, window))


def test_camel_semantics_across_leads() -> None:
    """Lead-major: an ECG token sees other leads' tokens of the same or earlier seconds, even placed later."""
    meta = camel_sequence(n_seconds=3)
    seen = visibility(meta, meta)[0]
    kind, sec = meta.kind[0], meta.second[0]
    ecg = [i for i in range(meta.length) if kind[i] == TokenKind.ECG]
    lead_ii_t0, lead_ii_t1 = ecg[0], ecg[1]
    lead_v1_t0 = ecg[3]
    assert sec[lead_v1_t0] == 0 and sec[lead_ii_t1] == 1
    assert seen[lead_ii_t0, lead_v1_t0]  # later in the sequence, same second: visible
    assert not seen[lead_v1_t0, lead_ii_t1]  # earlier in the sequence, later second: hidden
    assert seen[-1].all()  # text after the block sees everything


def test_streaming_mask_is_block_causal_in_time() -> None:
    """Time-major: no token before a second's block sees it, so a cache can grow by one second at a time."""
    meta = streaming_sequence(n_seconds=3)
    seen = visibility(meta, meta)[0]
    sec = meta.second[0]
    for q in range(meta.length):
        for k in range(q + 1, meta.length):
            if seen[q, k]:
                assert sec[q] == sec[k] >= 0  # only a later lead of the same second


def test_float_masks_are_additive() -> None:
    meta = streaming_sequence(n_seconds=2)
    masks = attention_masks(meta, meta, 4, torch.float32, torch.device("cpu"))
    assert set(masks) == {"full_attention", "sliding_attention"}
    full = masks["full_attention"]
    assert full.shape == (1, 1, meta.length, meta.length)
    assert torch.equal(full[0, 0] == 0, visibility(meta, meta)[0])
    assert (masks["sliding_attention"] == 0).sum() < (full == 0).sum()


def test_padding_is_invisible_and_pad_rows_stay_finite() -> None:
    short = streaming_sequence(n_seconds=1)
    long = streaming_sequence(n_seconds=3)
    batch = TokenMeta.stack([short, long], pad_side="left")
    seen = visibility(batch, batch)
    n_pad = long.length - short.length
    assert not seen[0, n_pad:, :n_pad].any()  # real tokens never see padding
    assert seen[0, :n_pad].all()  # padding rows see something (no NaN in SDPA)
    assert torch.equal(seen[0, n_pad:, n_pad:], visibility(short, short)[0])
