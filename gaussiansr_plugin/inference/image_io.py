"""Image files for inference: read any 8/16-bit or float image as RGB + alpha, write it back atomically.

Reading first parses the header (``image_header``: size, orientation; never pixels), then decodes with OpenCV
(``IMREAD_UNCHANGED``, so bit depth, gray and alpha survive) and turns the image upright exactly once, as viewers
show it: OpenCV applies the EXIF orientation of TIFF files itself, that of JPEG, PNG and WebP files is applied here.
Writing picks the format from the extension, keeps the pixel type where the format can store it, and replaces
the target in one step (a temporary file in the same folder, then ``os.replace``), so a partial file never
appears under the final name.
"""
from dataclasses import dataclass
from os import path as osp
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..atomic_files import write_atomic
from ..errors import UserError, first_line
from .image_header import ImageHeader, read_header

# extension -> (pixel types the format stores, best first for float input; alpha channel supported)
FORMATS: Dict[str, Tuple[Tuple[str, ...], bool]] = {
    '.png': (('uint16', 'uint8'), True),
    '.jpg': (('uint8', ), False),
    '.jpeg': (('uint8', ), False),
    '.tif': (('float32', 'uint16', 'uint8'), True),
    '.tiff': (('float32', 'uint16', 'uint8'), True),
    '.webp': (('uint8', ), True),
    '.bmp': (('uint8', ), False),
}
IMAGE_EXTENSIONS = tuple(FORMATS)
QUALITY = 95  # JPEG / WebP
_MAX_VALUE = {'uint8': 255.0, 'uint16': 65535.0, 'float32': 1.0}
# EXIF orientation -> the transform that shows the image upright ([H, W, ...] arrays; 5-8 swap H and W)
_UPRIGHT: Dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: a.swapaxes(0, 1)[::-1],
}


@dataclass
class Picture:
    """An image in the form the network takes.

    Attributes:
        rgb (np.ndarray): Colour, [h, w, 3] float32 RGB in [0, 1] (a gray image is repeated over 3 channels).
        alpha (np.ndarray | None): Opacity, [h, w] float32 in [0, 1]; None without an alpha channel.
        gray (bool): The file has one colour channel.
        dtype (str): Pixel type of the file: 'uint8', 'uint16' or 'float32'.
    """
    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    gray: bool
    dtype: str

    @property
    def size(self) -> Tuple[int, int]:
        """(h, w)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def _quiet_opencv() -> None:
    """Keep OpenCV's own messages (e.g. about a broken file) off stderr; we report failures ourselves."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``pixels`` [H, W, ...] upright for an EXIF ``orientation`` (1-8; others leave it unchanged)."""
    transform = _UPRIGHT.get(orientation)
    return pixels if transform is None else np.ascontiguousarray(transform(pixels))


def decode(data: bytes, name: str, orientation: int = 1) -> np.ndarray:
    """Decode file bytes as OpenCV does with ``IMREAD_UNCHANGED``, then apply an EXIF ``orientation``.

    Args:
        data (bytes): The encoded file.
        name (str): The file name, for error messages.
        orientation (int): EXIF orientation still to apply (``ImageHeader.orientation``). Default: 1 (none).

    Returns:
        np.ndarray: [H, W] (gray) or [H, W, C] (BGR / BGRA), uint8, uint16 or float32.

    Raises:
        UserError: OpenCV cannot decode the data (any decoder error, also its own size limits, is one line).
    """
    _quiet_opencv()
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except (cv2.error, MemoryError, OverflowError, ValueError) as exc:
        raise UserError(f'cannot decode {name}: {first_line(exc)}') from exc
    if pixels is None:
        raise UserError(f'cannot decode {name}: not an image, an unsupported format, or a corrupt file')
    return apply_orientation(pixels, orientation)


def to_picture(pixels: np.ndarray, name: str) -> Picture:
    """OpenCV pixels ([H, W] gray, [H, W, 1|3|4] gray/BGR/BGRA) -> ``Picture``."""
    dtype = pixels.dtype.name
    if dtype not in _MAX_VALUE:
        raise UserError(f'{name}: unsupported pixel type {dtype} (use 8-bit, 16-bit or float32 images)')
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in (1, 3, 4):
        raise UserError(f'{name}: unsupported number of channels ({channels}); use gray, RGB or RGBA images')
    values = pixels.astype(np.float32) / _MAX_VALUE[dtype]
    if dtype == 'float32':
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1)
    values = values.reshape(*pixels.shape[:2], channels)
    alpha = values[..., 3].copy() if channels == 4 else None
    if channels == 1:
        rgb = np.repeat(values, 3, axis=2)
    else:
        rgb = np.ascontiguousarray(values[..., 2::-1])  # BGR(A) -> RGB
    return Picture(rgb=rgb, alpha=alpha, gray=channels == 1, dtype=dtype)


def read_image(path: str, header: Optional[ImageHeader] = None) -> Picture:
    """Read an image file (PNG, JPEG, TIFF, WebP, BMP; 8/16-bit or float; gray, RGB or RGBA), upright exactly once.

    Args:
        path (str): The file.
        header (ImageHeader, optional): Its header, if already read (``read_header``).

    Raises:
        UserError: The file is missing, unreadable, corrupt or of an unsupported kind.
    """
    header = header or read_header(path)
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise UserError(f'cannot read {path}: {exc.strerror or exc}') from exc
    return to_picture(decode(data, path, header.orientation), path)


def check_format(path: str) -> str:
    """The lower-case extension of ``path`` if we can write that format, else a ``UserError``."""
    ext = osp.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise UserError(f"unsupported output format '{ext or path}' for {path}; use one of {', '.join(FORMATS)}")
    return ext


def to_pixels(picture: Picture, ext: str) -> Tuple[np.ndarray, List[str]]:
    """``Picture`` -> OpenCV pixels for a format, keeping the pixel type and alpha where the format can.

    Args:
        picture (Picture): The image (``rgb`` and ``alpha`` may be outside [0, 1]; they are clipped).
        ext (str): Target extension, a key of ``FORMATS``.

    Returns:
        tuple: The pixels ([H, W] gray, [H, W, 3] BGR or [H, W, 4] BGRA) and notes on what the format lost.
    """
    kinds, has_alpha = FORMATS[ext]
    notes = []
    dtype = picture.dtype if picture.dtype in kinds else kinds[0]
    if dtype != picture.dtype:
        notes.append(f'{ext} stores {dtype} pixels, not {picture.dtype}: converted')
    alpha = picture.alpha
    if alpha is not None and not has_alpha:
        notes.append(f'{ext} has no alpha channel: alpha dropped')
        alpha = None
    rgb = np.clip(picture.rgb, 0, 1)
    if picture.gray and alpha is None:
        channels = rgb.mean(axis=2, keepdims=True)
    elif picture.gray:
        channels = np.repeat(rgb.mean(axis=2, keepdims=True), 3, axis=2)
    else:
        channels = rgb[..., ::-1]
    if alpha is not None:
        channels = np.concatenate([channels, np.clip(alpha, 0, 1)[..., None]], axis=2)
    values = channels * _MAX_VALUE[dtype]
    if dtype != 'float32':
        values = np.round(values)
    pixels = np.ascontiguousarray(values.astype(dtype))
    return (pixels[..., 0] if pixels.shape[2] == 1 else pixels), notes


def encode(pixels: np.ndarray, ext: str) -> bytes:
    """Encode OpenCV pixels in the format of ``ext`` (JPEG / WebP at quality ``QUALITY``)."""
    _quiet_opencv()
    params = {
        '.jpg': [cv2.IMWRITE_JPEG_QUALITY, QUALITY],
        '.jpeg': [cv2.IMWRITE_JPEG_QUALITY, QUALITY],
        '.webp': [cv2.IMWRITE_WEBP_QUALITY, QUALITY]
    }.get(ext, [])
    ok, buf = cv2.imencode(ext, pixels, params)
    if not ok:
        raise UserError(f'OpenCV cannot encode a {pixels.dtype} image as {ext}')
    return buf.tobytes()


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_files.write_atomic``): on any failure, including Ctrl-C,
    ``path`` is left as it was and no temporary file remains."""
    try:
        write_atomic(path, lambda f: f.write(data))
    except OSError as exc:
        raise UserError(f'cannot write {path}: {exc.strerror or exc}') from exc


def write_image(path: str, picture: Picture) -> List[str]:
    """Write ``picture`` to ``path`` atomically in the format of its extension; returns notes on losses."""
    ext = check_format(path)
    pixels, notes = to_pixels(picture, ext)
    write_bytes_atomic(path, encode(pixels, ext))
    return notes
