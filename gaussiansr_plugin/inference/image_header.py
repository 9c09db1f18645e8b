"""What an image file holds, read from its header alone: size, orientation, animation.

Every size decision (``--max-pixels``, the CPU memory plan) is taken from the header before any pixel is decoded,
in memory and time bounded by the header: Pillow parses it lazily, its decompression-bomb limit is lifted because
only the size is looked at, and nothing here may make Pillow decode pixels (``PngImageFile.getexif`` decodes the
whole image when no ``eXIf`` chunk precedes the pixel data, so PNG orientation is read from the chunks Pillow
has already parsed).
"""
import os
import warnings
from dataclasses import dataclass
from os import path as osp
from typing import Optional, Tuple

from PIL import Image, TiffImagePlugin

from ..errors import UserError

EXIF_ORIENTATION = 0x0112
MAX_FILE_BYTES = 2**31 - 1  # cv2.imdecode refuses buffers of 2 GiB or more
# formats whose OpenCV decoder applies the orientation itself, also with IMREAD_UNCHANGED (libtiff's reader);
# tests/test_reliability/test_orientation.py checks every format and orientation against OpenCV
DECODER_APPLIES_ORIENTATION = frozenset({'TIFF'})


@dataclass(frozen=True)
class ImageHeader:
    """An image file as its header describes it.

    Attributes:
        size (tuple[int, int]): Upright (h, w), as viewers show the image.
        orientation (int): EXIF orientation (1-8) still to apply after OpenCV decoded the pixels; 1 when the file
            has none or OpenCV applies it itself.
        format (str): Pillow's format name ('PNG', 'JPEG', ...).
        animated (bool): The file holds several frames (GIF, APNG, WebP); only the first one is read.
    """
    size: Tuple[int, int]
    orientation: int
    format: str
    animated: bool


def _exif_orientation(img: Image.Image) -> int:
    if img.format == 'PNG':  # Image.getexif would decode a PNG whose eXIf chunk follows the pixels
        exif = Image.Exif()
        if img.info.get('exif'):
            exif.load(img.info['exif'])
    else:
        exif = img.getexif()
    value = exif.get(EXIF_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def _stored_size(img: Image.Image) -> Tuple[int, int]:
    """(width, height) of the pixels as stored, before any orientation (Pillow already swaps a TIFF's size for
    orientations 5-8, as libtiff will rotate it)."""
    tags = getattr(img, 'tag_v2', None)
    if tags is not None and isinstance(tags.get(256), int) and isinstance(tags.get(257), int):
        return tags[256], tags[257]  # ImageWidth, ImageLength
    return img.size


def _tiff_tags(path: str) -> Optional[Tuple[int, int, int]]:
    """(width, height, orientation) from the first directory of a TIFF Pillow cannot open (e.g. float32 RGB, which
    OpenCV reads), or None if it is not a TIFF with those tags."""
    with open(path, 'rb') as f:
        prefix = f.read(8)
        if prefix[:4] not in (b'II*\x00', b'MM\x00*'):
            return None
        tags = TiffImagePlugin.ImageFileDirectory_v2(prefix)
        f.seek(tags.next)
        tags.load(f)
    width, height, orientation = tags.get(256), tags.get(257), tags.get(EXIF_ORIENTATION, 1)
    if not all(isinstance(v, int) for v in (width, height, orientation)):
        return None
    return width, height, orientation if orientation in range(1, 9) else 1


def _parse(path: str) -> Tuple[int, int, int, str, bool]:
    """(stored width, stored height, EXIF orientation, format, animated) from the header."""
    try:
        with Image.open(path) as img:
            width, height = _stored_size(img)
            animated = bool(getattr(img, 'is_animated', False))  # header only: skips frames, decodes none
            return width, height, _exif_orientation(img), img.format or '', animated
    except Exception:  # not a format or mode Pillow opens: a TIFF's tags may still be read directly
        tiff = _tiff_tags(path)
        if tiff is None:
            raise
        return (*tiff, 'TIFF', False)


def read_header(path: str) -> ImageHeader:
    """Read an image file's header (never its pixels).

    Raises:
        UserError: The file is missing, 2 GiB or larger, or not an image whose header can be parsed.
    """
    if not osp.exists(path):
        raise UserError(f'input not found: {path}')
    if not osp.isfile(path):
        raise UserError(f'not a file: {path}')
    file_bytes = os.path.getsize(path)
    if file_bytes > MAX_FILE_BYTES:
        raise UserError(f'{path} is {file_bytes / 2**30:.1f} GiB: files of 2 GiB or more cannot be decoded '
                        '(OpenCV); convert or split it first')
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # only the size is looked at here; --max-pixels decides
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            width, height, orientation, fmt, animated = _parse(path)
    except Exception as exc:  # Pillow raises many types on broken or crafted headers; each means "unreadable"
        raise UserError(f'cannot decode {path}: not an image, an unsupported format, or a corrupt file') from exc
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    upright = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
    return ImageHeader(size=upright, orientation=1 if fmt in DECODER_APPLIES_ORIENTATION else orientation,
                       format=fmt, animated=animated)
