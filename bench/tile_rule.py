"""The GEMM tile against BLAS on this CPU, for the products a dense layer makes: the data
behind kernels/gemm.py's SMALL_ROWS and SMALL_WEIGHTS (which products take the tile).

    python bench/tile_rule.py [--rows 16 64 128 256 512] [--rounds 5]

For each row count and each weight shape (n_in x n_out), one thread, float32, the fastest
of --rounds interleaved rounds of a compiled loop (no Python per call):

    forward      out (rows, n_out) = a_in (rows, n_in) @ W (n_in, n_out)
    gradient     dW (n_in, n_out)  = a_in.T @ dz (rows, n_out)

through the tile (gemm.tiled_matmul) and through BLAS (Numba's np.dot, the BLAS every
kernel calls), and which of the two `matmul` picks on this CPU. The last column is BLAS's
time over the tile's: above 1 the tile is faster.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads its BLAS

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from fastmlp.engine import load_kernel_blas  # noqa: E402
from fastmlp.kernels.gemm import (SMALL_ROWS, SMALL_WEIGHTS, TILE_BYTES,  # noqa: E402
                                  tiled_matmul, tiles_suit)
from fastmlp.kernels.machine import L2_BYTES, VECTOR_BYTES  # noqa: E402

SHAPES = ((784, 64), (64, 64), (784, 128), (256, 256), (784, 512), (512, 512), (784, 1024),
          (1024, 512))


@njit
def _tile_loop(out, x, w, calls):
    for _ in range(calls):
        tiled_matmul(out, x, w)


@njit
def _blas_loop(out, x, w, calls):
    for _ in range(calls):
        np.dot(x, w, out)


def fastest_us(out, x, w, rounds: int) -> tuple[float, float]:
    """(tile µs, BLAS µs) a product, each the fastest of `rounds` interleaved rounds."""
    calls = max(3, int(1e8 / (2 * x.shape[0] * x.shape[1] * w.shape[1])))  # 0.1 GFLOP a round
    tile = blas = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        _tile_loop(out, x, w, calls)
        tile = min(tile, (time.perf_counter() - start) / calls * 1e6)
        start = time.perf_counter()
        _blas_loop(out, x, w, calls)
        blas = min(blas, (time.perf_counter() - start) / calls * 1e6)
    return tile, blas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 64, 128, 256, 512])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_kernel_blas()
    print(f"{platform.processor() or platform.machine()}; vectors {VECTOR_BYTES} bytes, L2 "
          f"{L2_BYTES // 1024} KiB a core; the tile takes up to {SMALL_ROWS} rows and "
          f"weights of up to {SMALL_WEIGHTS:,} elements\n")
    print("| product | rows | tile µs | BLAS µs | matmul picks | BLAS / tile |")
    print("|---|---:|---:|---:|---|---:|")
    rng = np.random.default_rng(0)
    for n_in, n_out in SHAPES:
        if n_out % (TILE_BYTES // 4):
            continue  # never the tile's: not a whole tile wide
        for rows in args.rows:
            a_in = rng.random((rows, n_in), dtype=np.float32)
            weights = rng.random((n_in, n_out), dtype=np.float32)
            dz = rng.random((rows, n_out), dtype=np.float32)
            for name, out, x, w in (
                    (f"forward, weights {n_in} x {n_out}",
                     np.empty((rows, n_out), np.float32), a_in, weights),
                    (f"weight gradient, {n_in} x {n_out}",
                     np.empty((n_in, n_out), np.float32), a_in.T, dz)):
                tile, blas = fastest_us(out, x, w, args.rounds)
                pick = "tile" if tiles_suit(out, x, w) else "BLAS"
                print(f"| {name} | {rows} | {tile:.1f} | {blas:.1f} | {pick} | "
                      f"{blas / tile:.2f} |")


if __name__ == "__main__":
    main()
