"""Decompression bombs and undecodable files: decided from the header alone, in bounded memory and time, one line
each, and a folder batch goes on with the other images."""
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference.image_header import read_header
from gaussiansr_plugin.inference.image_io import decode
from shared_helpers import cli


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def crafted_png(width: int, height: int, exif_after_pixels: bool = False) -> bytes:
    """A few hundred bytes claiming ``width`` x ``height`` 1-bit pixels (the pixel data is cut short)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    chunks = [_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)),
              _chunk(b'IDAT', zlib.compress(b'\x00' * 4096))]
    if exif_after_pixels:
        chunks.append(_chunk(b'eXIf', exif.tobytes()[6:]))  # without the 'Exif\0\0' header, as PNG stores it
    return b'\x89PNG\r\n\x1a\n' + b''.join(chunks) + _chunk(b'IEND', b'')


def crafted_jpeg(width: int, height: int) -> bytes:
    """SOI, a baseline frame header claiming the size, a scan header and no entropy-coded data to speak of."""
    sof = b'\xff\xc0' + struct.pack('>HBHHB', 11, 8, height, width, 1) + b'\x01\x11\x00'
    sos = b'\xff\xda' + struct.pack('>HB', 8, 1) + b'\x01\x00\x00\x3f\x00'
    return b'\xff\xd8' + sof + sos + b'\x00' * 16 + b'\xff\xd9'


def crafted_bmp(width: int, height: int) -> bytes:
    info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', 14 + 40 + 16, 0, 0, 54) + info + b'\x00' * 16


def crafted_gif(width: int, height: int) -> bytes:
    screen = struct.pack('<HHBBB', width, height, 0, 0, 0)
    return b'GIF89a' + screen + b',' + struct.pack('<HHHHB', 0, 0, width, height, 0) + b'\x02\x02\x44\x01\x00;'


def crafted_tiff(width: int, height: int) -> bytes:
    """One uncompressed 1-bit strip, cut short: ImageWidth, ImageLength, bits, compression, photometric, strips."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 1), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack('<H', len(entries)) + b''.join(struct.pack('<HHII', *e) for e in entries) + b'\x00' * 4
    return b'II*\x00' + struct.pack('<I', 8) + ifd + b'\x00' * 16


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('pixels were decoded')

    monkeypatch.setattr(ImageFile.ImageFile, 'load', refuse)
    monkeypatch.setattr(Image.Image, 'load', refuse)


@pytest.mark.parametrize('exif_after_pixels', [False, True])
def test_the_size_of_a_60000_squared_png_comes_from_its_header(tmp_path, no_pixel_decoding, exif_after_pixels):
    path = tmp_path / 'bomb.png'
    path.write_bytes(crafted_png(60000, 60000, exif_after_pixels))
    start = time.perf_counter()
    header = read_header(str(path))
    assert header.size == (60000, 60000) and header.orientation == 1  # an eXIf after the pixels is not read
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize('ext, craft', [('jpg', crafted_jpeg), ('bmp', crafted_bmp), ('gif', crafted_gif),
                                        ('tif', crafted_tiff)])
def test_bombs_of_every_format_are_sized_from_the_header(tmp_path, no_pixel_decoding, ext, craft, capsys,
                                                         tiny_checkpoint):
    path = tmp_path / f'bomb.{ext}'
    path.write_bytes(craft(60000, 50000))  # under 200 bytes each
    start = time.perf_counter()
    assert read_header(str(path)).size == (50000, 60000) and time.perf_counter() - start < 1
    assert cli('upscale', path, tmp_path / 'out.png', '--scale', 2, '--model', tiny_checkpoint[0]) == 2
    assert capsys.readouterr().err.startswith(f'error: {path} is 60000x50000 = 3e+09 pixels, above --max-pixels')


def test_decoder_errors_are_one_line_even_above_opencv_pixel_limit():
    with pytest.raises(UserError, match=r'^cannot decode big.png: OpenCV'):
        decode(crafted_png(40000, 30000), 'big.png')  # 1.2e9 pixels: above OpenCV's 2^30, a cv2.error
    with pytest.raises(UserError, match=r'^cannot decode junk.png: not an image'):
        decode(b'\x89PNG\r\n\x1a\n' + b'\x00' * 64, 'junk.png')


def test_files_of_2_gib_are_refused_before_reading(tmp_path):
    path = tmp_path / 'huge.png'
    with open(path, 'wb') as f:
        f.write(crafted_png(8, 8))
        f.truncate(2**31)  # sparse: no disk used
    with pytest.raises(UserError, match=r'huge.png is 2.0 GiB: files of 2 GiB or more cannot be decoded'):
        read_header(str(path))


def test_a_folder_batch_goes_on_after_bombs_and_broken_files(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    folder = tmp_path / 'in'
    folder.mkdir()
    (folder / 'a_bomb.png').write_bytes(crafted_png(60000, 60000))
    (folder / 'b_cut.png').write_bytes(crafted_png(200, 200))  # a valid header, pixel data cut short
    (folder / 'c_text.png').write_text('not an image')
    with open(folder / 'd_huge.png', 'wb') as f:
        f.write(crafted_png(8, 8))
        f.truncate(2**31)
    cv2.imwrite(str(folder / 'e_good.png'), np.full((5, 4, 3), 100, np.uint8))
    code = cli('upscale', folder, tmp_path / 'out', '--scale', 2, '--model', tiny_checkpoint[0], '--device', 'cpu')
    err = capsys.readouterr().err
    assert code == 2 and 'Traceback' not in err
    assert err.strip().splitlines()[-1].startswith(f'error: 4 of 5 image(s) failed, the first: {folder}/a_bomb.png '
                                                   'is 60000x60000 = 3.6e+09 pixels, above --max-pixels')
    for name in ('b_cut.png', 'c_text.png', 'd_huge.png'):
        assert f'skipped: cannot decode {folder}/{name}' in err or f'skipped: {folder}/{name} is 2.0 GiB' in err
    assert [p.name for p in (tmp_path / 'out').iterdir()] == ['e_good.png']
