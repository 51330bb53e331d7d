"""Where one training batch's time goes, on this CPU (issue M's per-phase breakdown).

    python bench/batch_phases.py [--batch-size 32] [--rounds 5]

Times, on real Fashion-MNIST pixels and the seed configuration (784-64-64-64-10, ReLU,
Adam, float32), each as the fastest of --rounds interleaved rounds:

    epoch, 2 threads     the compiled epoch at --batch-size over 2 threads (each batch split
                         into two shards), per batch
    epoch, 1 thread      the same on one thread, per batch
    half batch, 1 thread the epoch at half the batch size on one thread, per batch: one
                         shard's gather, forward, loss and backward, and Adam over all
                         parameters
    Adam, all / half     optimizer_update over every parameter / over half of them (one
                         thread each; the two-thread epoch splits the step by ranges)
    gradient sum, half   adding the second shard's gradient into the first over half the
                         parameters
    own half / other half  on 2 threads, each thread updates its half of an array the size
                         of the parameters, then reads its own half / the half the other
                         thread just wrote, per round of both regions: the difference is
                         the cost of moving half the parameters between the two cores,
                         which a two-thread batch does for its parameters and gradients

From these: a shard's gradients = half batch - Adam(all); the two-thread batch's work =
a shard's gradients + Adam(half) + gradient sum(half); what is left of the two-thread
batch is the cost of handing the work to the threads and waiting for both (two parallel
regions a batch).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import time

import numpy as np
from numba import njit, prange

from fastmlp.config import TrainConfig
from fastmlp.data import load_dataset
from fastmlp.engine import TrainState, run_epoch, thread_limits, warm_up
from fastmlp.kernels.interface import CODE_OPTIMIZER, kernel_inputs
from fastmlp.kernels.machine import L2_BYTES, VECTOR_BYTES
from fastmlp.kernels.optimizers import optimizer_update
from fastmlp.model import Layout, init_params

ROWS = 12_288  # training rows per timed epoch


def fastest(function, calls: int) -> float:
    """The fastest of three timings of `calls` calls, per call (seconds)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


@njit(parallel=True, error_model="numpy")
def _update_then_read(values, sums, rounds, other):
    """rounds x (each of 2 threads adds 1 to its half of values; then each adds its own
    half, or the other thread's, into its half of sums)."""
    half = values.size // 2
    for _ in range(rounds):
        for t in prange(2):
            mine = values[t * half:(t + 1) * half]
            for i in range(half):
                mine[i] += np.float32(1.0)
        for t in prange(2):
            source = 1 - t if other else t
            read = values[source * half:(source + 1) * half]
            into = sums[t * half:(t + 1) * half]
            for i in range(half):
                into[i] += read[i]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32, help="the batch to break down")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST's folder")
    args = parser.parse_args(argv)

    config = TrainConfig(batch_size=args.batch_size, epochs=1).validated()
    data = load_dataset("fashion_mnist", args.data_dir)
    pixels = np.ascontiguousarray(data.x_train[:ROWS])
    labels = data.y_train[:ROWS].astype(np.int64)
    layout = Layout((784, 64, 64, 64, 10))
    params = init_params(layout, "Xavier", np.random.default_rng(0), np.dtype(np.float32))
    order = np.random.default_rng(1).permutation(ROWS).astype(np.int64)
    warm_up("float32")

    def epoch(threads: int, batch_size: int):
        state = TrainState(params.copy())

        def run():
            with thread_limits(threads):
                run_epoch(state, layout, pixels, labels, order, batch_size, config,
                          shards=threads)
        return run

    state = TrainState(params.copy())
    grads = np.random.default_rng(2).normal(size=params.size).astype(np.float32) * 1e-3
    other = grads.copy()
    half = params.size // 2
    codes, hyper = kernel_inputs(config, 1)
    segments = layout.arrays()[2]

    def adam(lo, hi):
        def run():
            optimizer_update(state.buffers[0], state.buffers[1], state.buffers[2], grads,
                             segments, 1, codes[CODE_OPTIMIZER], hyper, 1e-3, lo, hi)
        return run

    def gradient_sum():
        grads[:half] += other[:half]

    def update_then_read(other: bool):
        values, sums = np.zeros_like(params), np.zeros_like(params)
        return lambda: _update_then_read(values, sums, 100, other)

    batches = -(-ROWS // args.batch_size)
    half_batches = -(-ROWS // (args.batch_size // 2))
    parts = {
        "epoch, 2 threads": (epoch(2, args.batch_size), 1, batches),
        "epoch, 1 thread": (epoch(1, args.batch_size), 1, batches),
        "half batch, 1 thread": (epoch(1, args.batch_size // 2), 1, half_batches),
        "Adam, all": (adam(0, params.size), 200, 1),
        "Adam, half": (adam(0, half), 200, 1),
        "gradient sum, half": (gradient_sum, 200, 1),
        "own half, 2 threads": (update_then_read(False), 2, 100),
        "other half, 2 threads": (update_then_read(True), 2, 100),
    }
    best = dict.fromkeys(parts, float("inf"))
    with thread_limits(1):
        for function, calls, _ in parts.values():
            function()  # compile, warm the caches
    for _ in range(args.rounds):
        for name, (function, calls, per) in parts.items():
            threads = 2 if "2 threads" in name else 1
            with thread_limits(threads):
                best[name] = min(best[name], fastest(function, calls) / per)
    shard = best["half batch, 1 thread"] - best["Adam, all"]
    work = shard + best["Adam, half"] + best["gradient sum, half"]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# one batch of {args.batch_size}, seed configuration")
    print(f"{cpu}; tile vectors {VECTOR_BYTES} bytes, L2 {L2_BYTES // 1024} KiB; "
          f"{datetime.date.today()}\n")
    print("| part | µs a batch |\n|---|---|")
    for name in parts:
        print(f"| {name} | {best[name] * 1e6:.1f} |")
    print(f"| a shard's gradients (half batch - Adam, all) | {shard * 1e6:.1f} |")
    print(f"| the two-thread batch's work (shard + Adam half + sum half) | {work * 1e6:.1f} |")
    print(f"| left: handing over to the threads and waiting | "
          f"{(best['epoch, 2 threads'] - work) * 1e6:.1f} |")
    print(f"| moving half the parameters to the other core (other half - own half) | "
          f"{(best['other half, 2 threads'] - best['own half, 2 threads']) * 1e6:.1f} |")
    print(f"\ntwo threads against one: {best['epoch, 1 thread'] / best['epoch, 2 threads']:.2f}x")


if __name__ == "__main__":
    main()
