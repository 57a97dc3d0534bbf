"""What a benchmark figure depends on besides the code: the CPU model and the vector units torch can use.

Development machines differ between sessions (an AMD EPYC with AVX2 only on one day, an Intel Xeon with AVX-512 and
AMX on another), and the same code ran 2x faster on the second; every bench JSON says which one gave its numbers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_description"]

_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def cpu_description() -> dict[str, object]:
    """CPU model name, core count and which of the vector units that matter for float32/bf16/int8 matmuls it has
    (from /proc/cpuinfo on Linux; the platform's processor string elsewhere)."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {"cpu_model": model, "cpus": os.cpu_count(), "vector_units": [f for f in _FLAGS if f in flags]}
