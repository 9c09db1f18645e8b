"""Split an LR image into overlapping tiles and assign every HR pixel to exactly one tile."""
from typing import List, NamedTuple, Tuple


class Tile(NamedTuple):
    """An LR window (core + context) and the HR pixels it renders (those whose nearest LR pixel is in its core)."""
    lr_y0: int
    lr_y1: int
    lr_x0: int
    lr_x1: int
    hr_y0: int
    hr_y1: int
    hr_x0: int
    hr_x1: int


def first_hr_index(c: int, lr: int, hr: int) -> int:
    """Smallest HR index whose nearest LR pixel is >= ``c`` (exact integer form of ceil(c * hr / lr - 1/2))."""
    return -((lr - 2 * c * hr) // (2 * lr))


def _spans(lr: int, hr: int, tile: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    spans = []
    for c0 in range(0, lr, tile):
        c1 = min(lr, c0 + tile)
        y0, y1 = first_hr_index(c0, lr, hr), first_hr_index(c1, lr, hr) if c1 < lr else hr
        if y1 > y0:
            spans.append((max(0, c0 - overlap), min(lr, c1 + overlap), y0, y1))
    return spans


def tile_plan(lr_size: Tuple[int, int], hr_size: Tuple[int, int], tile: int, overlap: int) -> List[Tile]:
    """Tiles of side ``tile`` (LR pixels) with ``overlap`` pixels of context, covering the HR grid exactly once."""
    if tile < 1 or overlap < 0:
        raise ValueError(f'tile must be >= 1 and tile_overlap >= 0, got {tile} and {overlap}')
    rows = _spans(lr_size[0], hr_size[0], tile, overlap)
    cols = _spans(lr_size[1], hr_size[1], tile, overlap)
    return [Tile(r[0], r[1], c[0], c[1], r[2], r[3], c[2], c[3]) for r in rows for c in cols]
