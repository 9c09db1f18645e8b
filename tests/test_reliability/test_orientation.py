"""Every format comes out upright exactly once, for each of the 8 EXIF orientations (OpenCV applies TIFF's itself
even with IMREAD_UNCHANGED, the others' are applied by us)."""
import cv2
import numpy as np
import pytest
from PIL import Image

from gaussiansr_plugin.inference.image_header import read_header
from gaussiansr_plugin.inference.image_io import read_image
from shared_helpers import cli

# orientation -> the transpose that stores an upright image so that a viewer applying the tag shows it upright
STORE = {1: None, 2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
         6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}
FORMATS = {'jpg': dict(quality=95, subsampling=0), 'png': {}, 'webp': dict(lossless=True), 'tif': {}}


def upright() -> np.ndarray:
    """A 32x48 RGB image of four coloured quadrants: any flip or rotation shows."""
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:16, :24], pixels[:16, 24:] = (255, 0, 0), (0, 255, 0)
    pixels[16:, :24], pixels[16:, 24:] = (0, 0, 255), (255, 255, 0)
    return pixels


def write_oriented(path, orientation: int) -> None:
    img = Image.fromarray(upright())
    stored = img if STORE[orientation] is None else img.transpose(STORE[orientation])
    ext = str(path).rsplit('.', 1)[1]
    if ext == 'tif':
        stored.save(path, tiffinfo={0x0112: orientation})
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.save(path, exif=exif.tobytes(), **FORMATS[ext])


@pytest.mark.parametrize('ext', sorted(FORMATS))
@pytest.mark.parametrize('orientation', range(1, 9))
def test_read_image_is_upright_exactly_once(tmp_path, ext, orientation):
    path = str(tmp_path / f'o{orientation}.{ext}')
    write_oriented(path, orientation)
    got = np.round(read_image(path).rgb * 255)
    assert read_header(path).size == got.shape[:2] == (32, 48)
    assert np.abs(got - upright()).mean() < 4  # JPEG: lossy; the others: exact


def test_upscale_of_a_rotated_tiff_is_upright(tmp_path, tiny_checkpoint):
    src, out = str(tmp_path / 'o6.tif'), tmp_path / 'out.png'
    write_oriented(src, 6)
    assert cli('upscale', src, out, '--scale', 1, '--model', tiny_checkpoint[0], '--device', 'cpu') == 0
    assert cv2.imread(str(out)).shape == (32, 48, 3)
