"""What the kernels are shaped for: this CPU's vector registers and L2 cache, read once at
import (no Numba here: gemm.py reads these constants when it generates its tile).

    VECTOR_BYTES    64 where the CPU has AVX-512 (32 zmm registers), else 32 (AVX2's 16
                    ymm registers); FASTMLP_VECTOR_BYTES=32 forces the AVX2 shape (the tests
                    run both)
    VECTOR_REGISTERS  32 or 16
    L2_BYTES        one core's L2 cache, from /sys (512 KiB where it cannot be read)

The kernels' disk cache is keyed by these values too (kernels/__init__.py), so a machine of
another shape compiles its own.
"""
import os
from pathlib import Path

DEFAULT_L2_BYTES = 512 * 1024


def _vector_bytes() -> int:
    forced = os.environ.get("FASTMLP_VECTOR_BYTES")
    if forced in ("32", "64"):
        return int(forced)
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
    except (ImportError, RuntimeError):
        return 32
    return 64 if features.get("avx512f") and features.get("avx512vl") else 32


def _l2_bytes() -> int:
    """cpu0's level-2 data or unified cache, in bytes."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if level == "2" and kind in ("Unified", "Data") and size[:-1].isdigit():
            scale = {"K": 1024, "M": 1024 ** 2}.get(size[-1], 1)
            return int(size[:-1]) * scale
    return DEFAULT_L2_BYTES


VECTOR_BYTES = _vector_bytes()
VECTOR_REGISTERS = 32 if VECTOR_BYTES == 64 else 16
L2_BYTES = _l2_bytes()


def shape_key() -> str:
    """The values above as text: part of the kernels' cache key."""
    return f"vector={VECTOR_BYTES} l2={L2_BYTES}"
