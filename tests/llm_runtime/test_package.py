"""The package's public surface resolves, and importing the CLI stays light."""

from __future__ import annotations

import subprocess
import sys

import llm_runtime


def test_every_export_resolves() -> None:
    for name in llm_runtime.__all__:
        assert getattr(llm_runtime, name).__name__ == name


def test_cli_import_does_not_load_torch() -> None:
    code = "import sys, evaluation.forecast_cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
