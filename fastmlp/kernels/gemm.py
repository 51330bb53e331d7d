"""Matrix products for the few-row GEMMs of small batches: a register-blocked tile.

A batch-32 epoch split over two threads multiplies 16 rows by a 784x64 weight matrix. BLAS
packs the whole weight matrix into its own layout at every call, whatever the row count, so
at 16 rows it runs at a third of its large-matrix rate. The tile below skips the packing:

    out[i0:i0+R, j0:j0+W] = x[i0:i0+R, :] @ w[:, j0:j0+W]

with W = two SIMD registers of columns (16 float32 with AVX2, 32 with AVX-512: the CPU's,
kernels/machine.py) and R <= MAX_TILE_ROWS rows (6, or 12 in AVX-512's 32 registers). Its
R x 2 accumulators
stay in registers for the whole sum over k; at each k it loads w[k, j0:j0+W] once (two
vector loads) and broadcasts x[i, k] for each row (the classic BLAS micro-kernel, as in
BLIS and OpenBLAS, here without the packing). It is written in LLVM IR (a Numba
intrinsic) because Numba has no SIMD types and LLVM does not vectorise the same loop written
with scalars. The sum over k runs in order, one fused multiply-add per term.

Every shape sums each output's terms in the same order with one fused multiply-add each, so
AVX2 and AVX-512 tiles give the same bits.

`matmul` chooses: the tile for float32 products over at most SMALL_ROWS of a batch's rows
whose width is a multiple of W and whose weight matrix is at most SMALL_WEIGHTS (half the
L2 cache on AVX2, under twice it on AVX-512; its size read from the machine); np.dot (BLAS)
for everything else. The tile walks the columns in its outer loop, so only a W-column slice
of the weights is in use at a time. The limits below come from `python bench/tile_rule.py`
and real `fastmlp train` runs. The NumPy twin is the plain product `x @ w`.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import kernel

from .machine import L2_BYTES, VECTOR_BYTES, VECTOR_REGISTERS

TILE_BYTES = 2 * VECTOR_BYTES  # the columns of one tile: 16 float32 (AVX2), 32 (AVX-512)
# the most rows the tile takes: past them BLAS's packing pays for itself. AVX2 (Zen 3): the
# tile and OpenBLAS were level at 128 rows. AVX-512 (Zen 4): at every row count up to 512,
# the most measured, the tile was level with OpenBLAS's AVX-512 kernels or ahead of them, by
# up to 1.7x (docs/benchmarks.md, "Which products take the tile")
SMALL_ROWS = 64 if VECTOR_REGISTERS == 16 else 512
# the largest weight-sized matrix (elements) the tile takes. AVX2: float32 filling half a
# core's L2 cache (65,536 on Zen 3). AVX-512 (Zen 4, 1 MiB of L2): under twice the L2 cache.
# In a loop the tile was 8-44 % ahead of OpenBLAS at 16-128 rows for every weight size up
# to 784 x 1024, but real epochs gained only up to 784 x 512 (1.5 L2 caches of float32):
# the 784-1024-512 net's epochs took the same time either way
SMALL_WEIGHTS = L2_BYTES // 2 // 4 if VECTOR_REGISTERS == 16 else 2 * L2_BYTES // 4 - 1
# rows x 2 accumulators + 2 loads of w + 1 broadcast of x fit the vector registers: 6 rows
# (15 of AVX2's 16), 12 (27 of AVX-512's 32; 14 would leave LLVM no spare register)
MAX_TILE_ROWS = 6 if VECTOR_REGISTERS == 16 else 12


def _tile_intrinsic(tile_rows):
    """The intrinsic tile(out, x, w, i0, j0) for tile_rows rows (x may have any strides; w and
    out must have unit column strides)."""

    @intrinsic
    def tile(typingctx, out, x, w, i0, j0):
        arrays = (out, x, w)
        if not all(isinstance(a, types.Array) and a.ndim == 2 for a in arrays):
            return None
        if len({a.dtype for a in arrays}) != 1 or not isinstance(out.dtype, types.Float):
            return None

        def codegen(context, builder, signature, args):
            dtype = signature.args[0].dtype
            elem = context.get_value_type(dtype)
            item_bytes = dtype.bitwidth // 8
            lanes = VECTOR_BYTES // item_bytes
            vector = ir.VectorType(elem, lanes)
            intp = context.get_value_type(types.intp)

            def const(value):
                return ir.Constant(intp, value)

            out_a, x_a, w_a = (context.make_array(aty)(context, builder, value)
                               for aty, value in zip(signature.args[:3], args[:3]))
            i0_v = context.cast(builder, args[3], signature.args[3], types.intp)
            j0_v = context.cast(builder, args[4], signature.args[4], types.intp)
            x_row_bytes, x_k_bytes = cgutils.unpack_tuple(builder, x_a.strides, 2)
            w_row_bytes, _ = cgutils.unpack_tuple(builder, w_a.strides, 2)
            out_row_bytes, _ = cgutils.unpack_tuple(builder, out_a.strides, 2)
            _, depth = cgutils.unpack_tuple(builder, x_a.shape, 2)
            column_bytes = builder.mul(j0_v, const(item_bytes))

            def pointer(base, byte_offset, pointee):
                return builder.bitcast(cgutils.pointer_add(builder, base, byte_offset),
                                       pointee.as_pointer())

            def row_at(r, row_bytes):  # byte offset of the tile's row r in an array
                return builder.mul(builder.add(i0_v, const(r)), row_bytes)

            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector] * 3),
                f"llvm.fma.v{lanes}f{dtype.bitwidth}")
            undefined = ir.Constant(vector, ir.Undefined)
            lane0 = ir.Constant(ir.IntType(32), 0)
            all_lane0 = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            # allocas in the entry block: LLVM's mem2reg turns them into registers
            sums = [[cgutils.alloca_once_value(builder, ir.Constant(vector, [0.0] * lanes))
                     for _ in range(2)] for _ in range(tile_rows)]
            with cgutils.for_range(builder, depth) as loop:
                k = loop.index
                w_at = builder.add(builder.mul(k, w_row_bytes), column_bytes)
                w_k = [builder.load(pointer(w_a.data,
                                            builder.add(w_at, const(half * VECTOR_BYTES)),
                                            vector), align=item_bytes) for half in range(2)]
                x_k_at = builder.mul(k, x_k_bytes)
                for r in range(tile_rows):
                    x_rk = builder.load(pointer(x_a.data,
                                                builder.add(row_at(r, x_row_bytes), x_k_at), elem))
                    broadcast = builder.shuffle_vector(
                        builder.insert_element(undefined, x_rk, lane0), undefined, all_lane0)
                    for half in range(2):
                        total = builder.call(fma, [broadcast, w_k[half],
                                                   builder.load(sums[r][half])])
                        builder.store(total, sums[r][half])
            for r in range(tile_rows):
                out_at = builder.add(row_at(r, out_row_bytes), column_bytes)
                for half in range(2):
                    at = builder.add(out_at, const(half * VECTOR_BYTES))
                    builder.store(builder.load(sums[r][half]),
                                  pointer(out_a.data, at, vector), align=item_bytes)
            return context.get_dummy_value()

        return types.void(out, x, w, i0, j0), codegen

    return tile


# the tiles a product's rows are cut into: as many of the largest as fit, then the rest by
# halves (16 rows: 12 + 4 on AVX-512, 6 + 6 + 4 on AVX2)
_tile_max, _tile8, _tile4, _tile2, _tile1 = (_tile_intrinsic(rows) for rows in
                                             (MAX_TILE_ROWS, 8, 4, 2, 1))


@kernel()
def tiled_matmul(out, x, w):
    """out = x @ w by tiles. x may be strided (a transposed view); w and out need unit column
    strides, and out's width must be a multiple of the tile's (TILE_BYTES / itemsize)."""
    rows, cols = out.shape
    tile_cols = TILE_BYTES // out.itemsize
    for j in range(0, cols, tile_cols):
        i = 0
        while rows - i >= MAX_TILE_ROWS:
            _tile_max(out, x, w, i, j)
            i += MAX_TILE_ROWS
        if MAX_TILE_ROWS > 8 and rows - i >= 8:
            _tile8(out, x, w, i, j)
            i += 8
        if rows - i >= 4:
            _tile4(out, x, w, i, j)
            i += 4
        if rows - i >= 2:
            _tile2(out, x, w, i, j)
            i += 2
        if rows - i == 1:
            _tile1(out, x, w, i, j)


@kernel()
def tiles_suit(out, x, w):
    """Whether out = x @ w goes to the tile (see the module docstring) rather than BLAS: a
    thin product (the batch's rows are out's rows in a forward pass, x @ W, and the summed
    dimension in a weight gradient, a_in.T @ dz) whose weight-sized matrix (w, or out for a
    gradient) is at most SMALL_WEIGHTS."""
    item = out.itemsize
    thin = min(x.shape[0], x.shape[1]) <= SMALL_ROWS
    return (item == 4 and thin and max(w.size, out.size) <= SMALL_WEIGHTS
            and out.shape[1] % (TILE_BYTES // item) == 0
            and out.strides[1] == item and w.strides[1] == item)


@kernel()
def matmul(out, x, w):
    """out (m, n) = x (m, k) @ w (k, n): the tile for the small float32 products, else BLAS."""
    if tiles_suit(out, x, w):
        tiled_matmul(out, x, w)
    else:
        np.dot(x, w, out)
