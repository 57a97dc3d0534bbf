"""Merging runs of different methods: only runs on the same benchmark and the same sample sets."""

from __future__ import annotations

from typing import Any

import pytest

from evaluation.report import merge_results


def _run(method: str, n: int, sha: str = "abc") -> dict[str, Any]:
    return {
        "dataset": {"index_sha256": sha},
        "sets": {"lm": {"w10_h60": n}},
        "results": {"lm": {method: {"cells": {}}}},
        "lm": {method: {"inputs_scored": n}},
        "replay": {"method": method} if method == "shipped" else None,
    }


def test_merge_keeps_every_method_and_the_replay() -> None:
    merged = merge_results([_run("gbt", 5), _run("shipped", 5)])
    assert set(merged["results"]["lm"]) == {"gbt", "shipped"}
    assert merged["replay"] == {"method": "shipped"}
    assert set(merged["lm"]) == {"gbt", "shipped"}


def test_merge_refuses_other_samples_or_another_benchmark() -> None:
    with pytest.raises(ValueError, match="not the same samples"):
        merge_results([_run("gbt", 5), _run("shipped", 6)])
    with pytest.raises(ValueError, match="different benchmarks"):
        merge_results([_run("gbt", 5), _run("shipped", 5, sha="other")])
