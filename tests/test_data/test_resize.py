"""imresize_to: BasicSR's Matlab bicubic at an exact output size."""
import numpy as np
import pytest

import gaussiansr_plugin  # noqa: F401
from basicsr.utils.matlab_functions import imresize
from gaussiansr_plugin.data.resize import imresize_to, quantize_uint8, resize_matrix


@pytest.mark.parametrize('shape,scale', [((96, 96, 3), 0.5), ((100, 60, 3), 0.25), ((48, 48, 3), 1 / 3),
                                         ((144, 96, 3), 1 / 3), ((30, 40, 3), 2.0), ((35, 21), 1 / 7)])
def test_equals_basicsr_imresize_when_it_can_hit_the_size(shape, scale):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    reference = imresize(img, scale)
    out = imresize_to(img, reference.shape[:2])
    assert out.shape == reference.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_any_target_size_and_identity():
    img = np.random.default_rng(1).random((139, 101, 3)).astype(np.float32)
    assert imresize_to(img, (48, 37)).shape == (48, 37, 3)
    np.testing.assert_allclose(imresize_to(img, img.shape[:2]), img, atol=1e-6)
    constant = np.full((57, 83, 3), 0.3, np.float32)
    np.testing.assert_allclose(imresize_to(constant, (20, 31)), 0.3, atol=1e-6)  # rows of the map sum to 1


def test_matrix_and_quantize():
    matrix = resize_matrix(10, 4)
    assert matrix.shape == (4, 10)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1, atol=1e-6)
    q = quantize_uint8(np.array([-0.1, 0.5, 1.2, 0.2]))
    np.testing.assert_allclose(q * 255, np.round(q * 255))
    assert q.min() == 0 and q.max() == 1
    with pytest.raises(ValueError, match='img must be'):
        imresize_to(np.zeros((2, 2, 2, 2)), (1, 1))
