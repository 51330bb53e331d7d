"""Counter-based random numbers: a draw is a pure function of (seed, step, stream, row, unit).

Dropout masks, augmentation and deformation draws come from here, so the NumPy twin
(fastmlp/reference.py, `uniform_array`) replays exactly the same numbers, a resumed run
draws what the uninterrupted one would have (the key holds the step count, not a generator
state), and the draws do not depend on how a batch is split over threads (the key holds the
row's place in the batch).

The hash is SplitMix64's finaliser over the key folded into one 64-bit word; the top 53
bits give a float64 in [0, 1).
"""
import numpy as np

from . import kernel

# The `stream` part of a key: which use a draw is for.
STREAM_INPUT_DROPOUT = 0
STREAM_DROPOUT = 1          # + the hidden layer's index
STREAM_SHIFT_X = 1000
STREAM_SHIFT_Y = 1001
STREAM_FLIP = 1002
STREAM_ROTATE = 1003        # the deformations of the gather (kernels/deform.py)
STREAM_SCALE = 1004
STREAM_SHEAR = 1005
STREAM_ELASTIC_X = 1006     # unit: the elastic lattice point's index
STREAM_ELASTIC_Y = 1007

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@kernel()
def mix64(z):
    """SplitMix64's finaliser: a bijection of uint64 whose output bits all depend on every
    input bit."""
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@kernel()
def uniform(seed, step, stream, row, unit):
    """A float64 in [0, 1) for this key (all non-negative integers)."""
    z = mix64(np.uint64(seed) * GOLDEN + np.uint64(step))
    z = mix64(z + np.uint64(stream) * GOLDEN)
    z = mix64(z + np.uint64(row) * GOLDEN)
    z = mix64(z + np.uint64(unit) * GOLDEN)
    return np.float64(z >> np.uint64(11)) * TO_UNIT
