"""Input -> output paths for upscaling a file or a folder, never writing outside the output folder."""
import os
from os import path as osp
from typing import List, Tuple

from ..errors import UserError
from .image_io import IMAGE_EXTENSIONS, check_format


def is_within(path: str, folder: str) -> bool:
    """True if ``path`` is ``folder`` or below it (both taken as given; pass real paths to resolve links)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def folder_jobs(in_dir: str, out_dir: str) -> List[Tuple[str, str]]:
    """(source, destination) for every image below ``in_dir``, mirrored below ``out_dir``, sorted.

    Links to folders are not followed; a linked file must resolve inside ``in_dir``. Nothing below ``in_dir`` is
    ever written: an ``out_dir`` inside ``in_dir`` and a layout that maps an image onto a path inside ``in_dir``
    (``out_dir`` a parent of ``in_dir``, e.g. ``in/in/a.png`` -> ``./in/a.png``) are refused before anything runs.

    Raises:
        UserError: No images, an ``out_dir`` equal to or inside ``in_dir``, a destination inside ``in_dir``, or a
            link that leads outside ``in_dir``.
    """
    in_real, out_real = osp.realpath(in_dir), osp.realpath(out_dir)
    if in_real == out_real:
        raise UserError(f'the output folder must differ from the input folder ({in_dir}); inputs would be replaced')
    if is_within(out_real, in_real):
        raise UserError(f'the output folder {out_dir} is inside the input folder {in_dir}; nothing under the input '
                        'folder is written: choose an output folder outside it')
    jobs = []
    for root, dirs, files in os.walk(in_dir):
        dirs[:] = sorted(d for d in dirs if not osp.islink(osp.join(root, d)))
        for name in sorted(files):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            src = osp.join(root, name)
            if not is_within(osp.realpath(src), in_real):
                raise UserError(f'{src} is a link to a file outside {in_dir}; refusing to follow it')
            dst = osp.join(out_dir, osp.relpath(src, in_dir))
            if is_within(osp.realpath(dst), in_real):
                raise UserError(f'{src} would be written to {dst}, inside the input folder {in_dir} (the output '
                                'folder contains it); nothing under the input folder is written: choose an output '
                                'folder outside it')
            jobs.append((src, dst))
    if not jobs:
        raise UserError(f'no images ({" ".join(IMAGE_EXTENSIONS)}) found in {in_dir}')
    return jobs


def plan_jobs(src: str, dst: str) -> Tuple[List[Tuple[str, str]], bool]:
    """The (source, destination) pairs for ``gaussiansr upscale IN OUT`` and whether IN is a folder.

    A file IN writes OUT (or ``OUT/<name>`` when OUT is an existing folder) in the format of OUT's extension, never
    over IN itself; a folder IN writes every image below it to the same relative path below OUT, in the same format.
    """
    if not osp.exists(src):
        raise UserError(f'input not found: {src}')
    if osp.isdir(src):
        if osp.exists(dst) and not osp.isdir(dst):
            raise UserError(f'{dst} is a file, but the input {src} is a folder: give an output folder')
        return folder_jobs(src, dst), True
    if osp.isdir(dst):
        dst = osp.join(dst, osp.basename(src))
    if osp.exists(dst) and osp.samefile(src, dst):
        raise UserError(f'the output {dst} is the input file itself; write the result to another path')
    check_format(dst)
    return [(src, dst)], False


def check_destination(dst: str, out_dir: str) -> None:
    """Refuse a destination whose folder resolves outside ``out_dir`` (e.g. through a link inside OUT)."""
    if not is_within(osp.realpath(osp.dirname(osp.abspath(dst))), osp.realpath(out_dir)):
        raise UserError(f'{dst} would be written outside {out_dir} (a link inside the output folder); refusing')
