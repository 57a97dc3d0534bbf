"""Token order, special tokens and lengths of both layouts."""

from __future__ import annotations

import pytest
import torch

from llm_runtime.layout import ECG_SPECIAL_TOKENS, TokenKind
from llm_runtime.packing import (
    SequenceBuilder,
    camel_block,
    streaming_close,
    streaming_header,
    streaming_second,
)

LEADS = ("ii", "v1")


def specials(ids: list[int]) -> list[str]:
    return [ECG_SPECIAL_TOKENS[i] for i in ids]


def test_camel_block_is_lead_major_with_wrappers() -> None:
    ecg = torch.arange(2 * 3 * 64, dtype=torch.float32).reshape(2, 3, 64)  # (lead, second, dim)
    builder = SequenceBuilder().text([7])
    camel_block(builder, ecg, LEADS, first_second=10)
    packed = builder.build()
    kind = packed.meta.kind[0].tolist()
    assert packed.length == 1 + 2 + 2 * (2 + 3)
    assert kind == [TokenKind.TEXT, TokenKind.ECG_SPECIAL] + (
        [TokenKind.ECG_SPECIAL] + [TokenKind.ECG] * 3 + [TokenKind.ECG_SPECIAL]
    ) * 2 + [TokenKind.ECG_SPECIAL]
    special_ids = [i for i, k in zip(packed.ids[0].tolist(), kind, strict=True) if k == TokenKind.ECG_SPECIAL]
    assert specials(special_ids) == [
        "<ecg_global_start>",
        "<ecg_lead_ii_start>",
        "<ecg_lead_ii_end>",
        "<ecg_lead_v1_start>",
        "<ecg_lead_v1_end>",
        "<ecg_global_end>",
    ]
    ecg_mask = packed.meta.kind[0] == TokenKind.ECG
    assert packed.meta.second[0][ecg_mask].tolist() == [10, 11, 12, 10, 11, 12]
    rows = packed.ecg[packed.ids[0][ecg_mask]]  # the embedding each ECG token reads
    assert torch.equal(rows, torch.cat([ecg[0], ecg[1]]))
    assert packed.meta.pos[0].tolist() == list(range(packed.length))


def test_streaming_is_time_major() -> None:
    builder = SequenceBuilder()
    streaming_header(builder, LEADS)
    seconds = torch.randn(3, 2, 64)
    for t in range(3):
        streaming_second(builder, seconds[t], t)
    streaming_close(builder, LEADS)
    packed = builder.build()
    assert packed.length == 1 + 2 + 3 * 2 + 2 + 1
    kind = packed.meta.kind[0]
    special_ids = packed.ids[0][kind == TokenKind.ECG_SPECIAL].tolist()
    assert specials(special_ids) == [
        "<ecg_global_start>",
        "<ecg_lead_ii_start>",
        "<ecg_lead_v1_start>",
        "<ecg_lead_ii_end>",
        "<ecg_lead_v1_end>",
        "<ecg_global_end>",
    ]
    ecg_mask = kind == TokenKind.ECG
    assert packed.meta.second[0][ecg_mask].tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(packed.ecg[packed.ids[0][ecg_mask]], seconds.reshape(6, 64))


def test_branches_share_positions() -> None:
    builder = SequenceBuilder(start_pos=50).text([1, 2])
    builder.branch(0).text([3])
    builder.branch(0, 0).text([4, 5])
    builder.branch(0, 1).text([6])
    builder.branch(1).text([7])
    meta = builder.build().meta
    assert meta.pos[0].tolist() == [50, 51, 52, 53, 54, 53, 52]
    assert meta.question[0].tolist() == [-1, -1, 0, 0, 0, 0, 1]
    assert meta.option[0].tolist() == [-1, -1, -1, 0, 0, 1, -1]


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="n_leads=2"):
        camel_block(SequenceBuilder(), torch.zeros(3, 4, 64), LEADS)
    with pytest.raises(ValueError, match=r"\(64,\)"):
        SequenceBuilder().ecg(torch.zeros(32), 0)
    with pytest.raises(ValueError, match="before its parent"):
        SequenceBuilder().branch(0, 1)
