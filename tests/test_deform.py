"""The input deformations of the batch gather (kernels/deform.py): the compiled gather
against its NumPy twin (reference.deform, the same counter-based draws), known deformations
of known images, the default path untouched, and draws that do not depend on how a batch is
split over threads. Training with them against the twin: tests/test_kernels.py (REGIMES);
resume: tests/test_daily_resume.py."""
import math

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.config import TrainConfig
from fastmlp.kernels.deform import (deformations_on, deformed_image, drawn_affine,
                                    elastic_field, inverse_affine, lattice_weights)
from fastmlp.kernels.epoch import _gather, train_epoch
from fastmlp.kernels.interface import DEFORMATIONS, kernel_inputs
from fastmlp.model import Layout, init_params

SEED, STEP = 11, 3
NAMES = DEFORMATIONS + ("elastic_sigma",)


def images(height, width, count=6, seed=0):
    """Random uint8 images with a bright blob each, flattened (count, height * width)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(count, height, width))
    pixels[:, height // 4:height // 2, width // 3:2 * width // 3] = 255
    return pixels.reshape(count, -1).astype(np.uint8)


def gathered(pixels, image_width, first_row=0, rows=None, dtype=np.float64, step=STEP,
             **settings):
    """The compiled gather of pixels[rows] (all rows by default) under these settings."""
    config = TrainConfig(seed=SEED, **settings).validated()
    codes, hyper = kernel_inputs(config, 1, image_width)
    order = np.arange(len(pixels)) if rows is None else np.asarray(rows)
    out = np.empty((len(order), pixels.shape[1]), dtype)
    _gather(out, pixels, order, codes, hyper, step, first_row)
    return out


def twin(pixels, image_width, first_row=0, **settings):
    """reference.train_epoch's input of the batch: deform, then flip and shift, then input
    dropout."""
    config = TrainConfig(seed=SEED, **settings).validated()
    x = pixels.astype(np.float64) / 255
    places = first_row + np.arange(len(x))
    if config.deformations:
        x = ref.deform(x, places, SEED, STEP, image_width,
                       **{name: getattr(config, name) for name in NAMES})
    shift, flip = config.augmentation
    if shift or flip:
        x = ref.augment(x, places, SEED, STEP, shift, flip, image_width)
    if config.input_dropout:
        x = x * ref.dropout_scales(config.input_dropout, SEED, STEP, 0, places, x.shape[1])
    return x


CASES = {
    "rotate": dict(rotate=30.0),
    "scale": dict(scale=0.3),
    "shear": dict(shear=20.0),
    "elastic": dict(elastic=34.0),  # Simard's strength, sigma 4 (the default)
    "elastic-fine": dict(elastic=3.0, elastic_sigma=0.7),  # a lattice of every pixel
    "all": dict(rotate=20.0, scale=0.15, shear=10.0, elastic=20.0, elastic_sigma=5.0,
                augment="shift:2,flip", input_dropout=0.1),
}


@pytest.mark.parametrize("shape", [(28, 28), (9, 7)], ids=["28x28", "9x7"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_gather_deforms_like_the_twin(name, shape):
    height, width = shape
    pixels = images(height, width)
    mine = gathered(pixels, width, first_row=4, **CASES[name])
    gold = twin(pixels, width, first_row=4, **CASES[name])
    assert np.max(np.abs(mine - gold)) < 1e-12
    assert np.max(np.abs(gold - pixels / 255)) > 0.1, "the deformation must move pixels"
    single = gathered(pixels, width, first_row=4, dtype=np.float32, **CASES[name])
    assert np.max(np.abs(single - gold)) < 1e-6  # float32 runs: the same, rounded once


def test_no_deformation_leaves_the_pixels_unchanged():
    """The defaults (rotate, scale, shear, elastic 0) take the gather as it was; the
    deforming path with an identity map and no field gives the pixels bit for bit, and with
    only a flip and a shift gives --augment's own images."""
    pixels = images(28, 28)
    _, hyper = kernel_inputs(TrainConfig().validated(), 1, 28)
    assert not deformations_on(hyper)
    assert np.array_equal(gathered(pixels, 28), pixels / 255.0)
    assert inverse_affine(0.0, 1.0, 0.0) == (1.0, 0.0, 0.0, 1.0)
    no_field = np.zeros((2, 28, 28))
    for dx, dy, mirrored in ((0, 0, False), (2, -1, True), (-3, 2, False)):
        out = np.empty(28 * 28)
        deformed_image(out, pixels[0], 28, 28, 255.0, 1.0, 0.0, 0.0, 1.0, no_field, False,
                       dx, dy, mirrored)
        image = (pixels[0] / 255.0).reshape(28, 28)
        want = image[:, ::-1] if mirrored else image
        want = np.roll(np.pad(want, 3), (dy, dx), axis=(0, 1))[3:-3, 3:-3]  # zero-filled
        assert np.array_equal(out, want.ravel()), (dx, dy, mirrored)


def deformed(image, m=(1.0, 0.0, 0.0, 1.0), field=None):
    """deformed_image of one (H, W) image with the inverse map m and a field, or none."""
    height, width = image.shape
    out = np.empty(height * width)
    elastic = field is not None
    field = np.zeros((2, height, width)) if field is None else field
    deformed_image(out, image.ravel().astype(np.float64), width, height, 1.0, *m, field,
                   elastic, 0, 0, False)
    return out.reshape(height, width)


def dot(x, y, size=7):
    image = np.zeros((size, size))
    image[y, x] = 1.0
    return image


def test_known_deformations_move_a_known_image():
    """A bright pixel one step right of the centre (3, 3) of a 7 x 7 image."""
    source = dot(4, 3)
    # rotated by 90 degrees: right of the centre goes below it (clockwise on the screen)
    assert np.allclose(deformed(source, inverse_affine(math.pi / 2, 1.0, 0.0)), dot(3, 4),
                       atol=1e-12)
    # scaled by 2 about the centre: two steps right, spread bilinearly over its neighbours
    scaled = deformed(source, inverse_affine(0.0, 2.0, 0.0))
    assert np.allclose(scaled, np.outer([0, 0, 0.5, 1, 0.5, 0, 0], [0, 0, 0, 0, 0.5, 1, 0.5]),
                       atol=1e-12)
    # sheared by 45 degrees: x += y, so one step below the centre moves one step right
    assert np.allclose(deformed(dot(3, 4), inverse_affine(0.0, 1.0, math.pi / 4)), dot(4, 4),
                       atol=1e-12)
    # a field of +1 in x: each pixel reads its right-hand neighbour, the image moves left
    field = np.zeros((2, 7, 7))
    field[0] = 1.0
    assert np.array_equal(deformed(source, field=field), dot(3, 3))
    # a half-pixel field up: bilinear halves between two rows, zero beyond the border
    field = np.zeros((2, 7, 7))
    field[1] = 0.5
    moved = deformed(dot(2, 0), field=field)
    assert moved[0, 2] == 0.5 and moved.sum() == 0.5


def test_the_drawn_maps_and_fields_are_the_twins():
    for row in range(20):
        mine = np.array(drawn_affine(SEED, STEP, row, 30.0, 0.2, 15.0)).reshape(2, 2)
        assert np.allclose(mine, ref.drawn_affine(SEED, STEP, row, 30.0, 0.2, 15.0),
                           rtol=0, atol=1e-15)
    angles = [math.degrees(math.atan2(*drawn_affine(SEED, STEP, row, 30.0, 0.0, 0.0)[1::-1]))
              for row in range(400)]  # M = R(-r): its first row is (cos r, sin r)
    assert -30 <= min(angles) < -28 and 28 < max(angles) <= 30
    factors = [1 / drawn_affine(SEED, STEP, row, 0.0, 0.2, 0.0)[3] for row in range(400)]
    assert 0.8 <= min(factors) < 0.81 and 1.19 < max(factors) <= 1.2
    for height, width, sigma in ((28, 28, 4.0), (9, 7, 0.5), (6, 5, 10.0)):
        rows, cols = lattice_weights(height, sigma), lattice_weights(width, sigma)
        assert np.allclose(rows, ref.lattice_weights(height, sigma), rtol=1e-14, atol=0)
        field = np.empty((2, height, width))
        elastic_field(field, np.empty((len(rows), width)), rows, cols, SEED, STEP, 5, 3.0)
        gold = ref.elastic_field(SEED, STEP, 5, 3.0, sigma, height, width)
        assert np.max(np.abs(field - gold)) < 1e-13


def test_the_elastic_field_has_simards_strength_everywhere():
    """Simard's field (uniform [-1, 1] noise on every pixel, a normalised Gaussian of sigma,
    times alpha) has the variance (1/3) / (4 pi sigma^2) away from the borders and the
    correlation exp(-d^2 / (4 sigma^2)) at a distance d; the lattice's field has both at
    every pixel, corners included: var = (1/3) sum_i g_i(y)^2 sum_j g_j(x)^2."""
    for sigma in (4.0, 6.0, 2.0):
        g = lattice_weights(28, sigma)
        variance = np.outer((g * g).sum(axis=0), (g * g).sum(axis=0)) / 3
        assert variance == pytest.approx(np.full((28, 28), 1 / (12 * math.pi * sigma ** 2)),
                                         rel=2e-3), sigma
        covariance = (g[:, 10] * g[:, 14]).sum() / (g[:, 10] ** 2).sum()
        assert covariance == pytest.approx(math.exp(-16 / (4 * sigma ** 2)), rel=2e-3)
    fields = np.array([ref.elastic_field(SEED, STEP, row, 1.0, 4.0, 28, 28)
                       for row in range(1000)])
    assert fields[:, :, 14, 14].std() == pytest.approx(math.sqrt(1 / (12 * math.pi * 16)),
                                                       rel=0.05)


def test_the_draws_do_not_depend_on_how_a_batch_is_split():
    """Each example draws with its place in the batch: the batch gathered whole is the batch
    gathered as two threads' shares, bit for bit; another step draws otherwise."""
    pixels = images(28, 28, count=10)
    settings = CASES["all"]
    whole = gathered(pixels, 28, **settings)
    first = gathered(pixels, 28, rows=np.arange(4), **settings)
    second = gathered(pixels, 28, first_row=4, rows=np.arange(4, 10), **settings)
    assert np.array_equal(whole, np.concatenate([first, second]))
    assert not np.array_equal(whole, gathered(pixels, 28, step=STEP + 1, **settings))


def test_an_epoch_refuses_a_deformation_without_images():
    layout = Layout((30, 4, 10))
    params = init_params(layout, "Xavier", np.random.default_rng(0), np.float64)
    codes, hyper = kernel_inputs(TrainConfig(rotate=10.0).validated(), 1, image_width=0)
    with pytest.raises(ValueError, match="deformation needs images"):
        train_epoch(np.stack([params] * 4), np.zeros(1, np.int64), 0,
                    np.zeros((4, 30), np.uint8), np.zeros(4, np.int64), np.zeros((0, 0)),
                    np.zeros(0), np.arange(4), 4, layout.arrays(), codes, hyper, 1)
