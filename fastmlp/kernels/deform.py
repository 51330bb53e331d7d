"""The input deformations of the batch gather: a random affine map (rotation, scale, shear)
and an elastic displacement field per training image, sampled bilinearly (the math of
record; its NumPy twin is reference.deform).

An image of H rows and W columns, centre c = ((W - 1) / 2, (H - 1) / 2), pixel p = (x, y)
(y downwards), becomes
    D(p) = bilinear(image, c + M (p - c) + e(p))         (zero outside the image)
    M = (1 / k) [[1, -tan s], [0, 1]] [[cos r, sin r], [-sin r, cos r]]
M is the inverse of: scale by k, then shear (x += tan(s) y), then rotate by r (a positive r
turns the image clockwise on the screen), all about c. Per image, with u ~ U[0, 1) drawn
with the key (seed, step, STREAM_..., row in the batch, 0):
    r = rotate (2u - 1) degrees,  k = 1 + scale (2u - 1),  s = shear (2u - 1) degrees
(a setting at 0 draws nothing and leaves its part out). The elastic field e (Simard et al.
2003, "best practices for convolutional neural networks": uniform noise in [-1, 1] smoothed
by a Gaussian of sigma, times alpha) puts its noise on a lattice of spacing
h = max(1, sigma) pixels instead of on every pixel:
    e_a(p) = alpha * sum_ij n_aij g_i(y) g_j(x),   g_j(x) = sqrt(h) N(x; c_j, sigma^2)
where N is the normal density, n_aij = 2u - 1 with the key (seed, step, STREAM_ELASTIC_X + a,
row, i * G_x + j), and c_j the lattice's points along an axis (lattice_weights). Each e_a
has Simard's variance alpha^2 (1/3) / (4 pi sigma^2) and correlation exp(-d^2 / (4 sigma^2))
at a distance d, to 0.2 % at every pixel (tests/test_deform.py), where a
zero-padded convolution weakens towards the borders; for sigma 4 on 28 x 28 images it takes
338 draws and 30,000 multiply-adds an image, against 1,568 draws and 78,000 for Simard's
two 25-tap separable convolutions.

The gather applies the existing augmentation after the deformation: the batch's example is
shift(flip(D)) (kernels/epoch.py, _gather), then input dropout.
"""
import math

import numpy as np

from . import kernel
from .interface import HP_ELASTIC, HP_ROTATE, HP_SCALE, HP_SHEAR
from .random import STREAM_ELASTIC_X, STREAM_ROTATE, STREAM_SCALE, STREAM_SHEAR, uniform

DEGREE = math.pi / 180.0
LATTICE_MARGIN = 2.0  # the lattice reaches this many sigmas beyond the image on every side


@kernel()
def deformations_on(hyper):
    """True when any deformation is asked for (else the gather does none of this)."""
    return (hyper[HP_ROTATE] > 0.0 or hyper[HP_SCALE] > 0.0 or hyper[HP_SHEAR] > 0.0
            or hyper[HP_ELASTIC] > 0.0)


@kernel()
def inverse_affine(rotation, factor, shear):
    """(m00, m01, m10, m11) of M for a rotation and a shear in radians and a scale factor."""
    co, si, ta = math.cos(rotation), math.sin(rotation), math.tan(shear)
    return (co + ta * si) / factor, (si - ta * co) / factor, -si / factor, co / factor


@kernel()
def drawn_affine(seed, t, row, rotate, scale, shear):
    """M of this example: rotate and shear in degrees, scale a fraction (the settings)."""
    rotation, factor, shear_angle = 0.0, 1.0, 0.0
    if rotate > 0.0:
        rotation = rotate * DEGREE * (2.0 * uniform(seed, t, STREAM_ROTATE, row, 0) - 1.0)
    if scale > 0.0:
        factor = 1.0 + scale * (2.0 * uniform(seed, t, STREAM_SCALE, row, 0) - 1.0)
    if shear > 0.0:
        shear_angle = shear * DEGREE * (2.0 * uniform(seed, t, STREAM_SHEAR, row, 0) - 1.0)
    return inverse_affine(rotation, factor, shear_angle)


@kernel()
def lattice_weights(n, sigma):
    """(G, n): g_j(x) for the G lattice points c_j along an axis of n pixels, x = 0 .. n-1:
    c_j = (n - 1) / 2 + (j - half) h, j = 0 .. 2 half, h = max(1, sigma), half the fewest
    steps that reach LATTICE_MARGIN sigmas beyond the axis's ends."""
    spacing = max(1.0, sigma)
    half = int(math.ceil(((n - 1) / 2.0 + LATTICE_MARGIN * sigma) / spacing))
    points = 2 * half + 1
    weights = np.empty((points, n))
    norm = math.sqrt(spacing) / (math.sqrt(2.0 * math.pi) * sigma)
    for j in range(points):
        centre = (n - 1) / 2.0 + (j - half) * spacing
        for x in range(n):
            d = (x - centre) / sigma
            weights[j, x] = norm * math.exp(-0.5 * d * d)
    return weights


@kernel()
def elastic_field(field, partial, row_weights, col_weights, seed, t, row, alpha):
    """field (2, H, W) <- e_x, e_y of this example (row_weights (G_y, H), col_weights
    (G_x, W) from lattice_weights; partial: (G_y, W) scratch)."""
    g_rows, height = row_weights.shape
    g_cols, width = col_weights.shape
    for axis in range(2):
        stream = STREAM_ELASTIC_X + axis
        for i in range(g_rows):  # partial[i, x] = sum_j n_ij g_j(x)
            for x in range(width):
                partial[i, x] = 0.0
            for j in range(g_cols):
                noise = 2.0 * uniform(seed, t, stream, row, i * g_cols + j) - 1.0
                for x in range(width):
                    partial[i, x] += noise * col_weights[j, x]
        for y in range(height):  # e_a(x, y) = alpha sum_i g_i(y) partial[i, x]
            for x in range(width):
                field[axis, y, x] = 0.0
            for i in range(g_rows):
                weight = alpha * row_weights[i, y]
                for x in range(width):
                    field[axis, y, x] += weight * partial[i, x]


@kernel()
def bilinear(image, qx, qy, width, height):
    """The flat image (H * W) at (qx, qy), bilinearly, zero outside: continuous in q, so
    last-bit differences in q change the value by as little."""
    if not (-1.0 < qx < width and -1.0 < qy < height):  # also NaN
        return 0.0
    x0, y0 = int(qx + 1.0) - 1, int(qy + 1.0) - 1  # floor, for q > -1 (math.floor is slower)
    fx, fy = qx - x0, qy - y0
    if 0 <= x0 and x0 + 1 < width and 0 <= y0 and y0 + 1 < height:  # all four inside
        at = y0 * width + x0
        top_left, bottom_left = np.float64(image[at]), np.float64(image[at + width])
        top = top_left + fx * (image[at + 1] - top_left)
        bottom = bottom_left + fx * (image[at + width + 1] - bottom_left)
        return top + fy * (bottom - top)
    value = 0.0  # on the border: the neighbours outside count 0
    if y0 >= 0:
        if x0 >= 0:
            value += (1.0 - fx) * (1.0 - fy) * image[y0 * width + x0]
        if x0 + 1 < width:
            value += fx * (1.0 - fy) * image[y0 * width + x0 + 1]
    if y0 + 1 < height:
        if x0 >= 0:
            value += (1.0 - fx) * fy * image[(y0 + 1) * width + x0]
        if x0 + 1 < width:
            value += fx * fy * image[(y0 + 1) * width + x0 + 1]
    return value


@kernel()
def deformed_image(target, source, width, height, divisor, m00, m01, m10, m11, field,
                   elastic, dx, dy, mirrored):
    """target (H * W) <- shift(flip(D)) / divisor for the flat source image: D as above (the
    elastic field in `field` when `elastic`), mirrored when `mirrored`, then moved by
    (dx, dy) pixels with zero-filled borders (the gather's augmentation)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    for y in range(height):
        # out[y, x] = flip(D)[y - dy, x - dx] = D[y - dy, x'] (x' mirrored or not)
        from_y = y - dy
        if not 0 <= from_y < height:
            for x in range(width):
                target[y * width + x] = 0.0
            continue
        oy = from_y - cy
        row_x, row_y = cx + m01 * oy, cy + m11 * oy  # c + M (p - c), the row's part
        for x in range(width):
            from_x = x - dx
            if not 0 <= from_x < width:
                target[y * width + x] = 0.0
                continue
            if mirrored:
                from_x = width - 1 - from_x
            ox = from_x - cx
            qx, qy = row_x + m00 * ox, row_y + m10 * ox
            if elastic:
                qx += field[0, from_y, from_x]
                qy += field[1, from_y, from_x]
            target[y * width + x] = bilinear(source, qx, qy, width, height) / divisor
