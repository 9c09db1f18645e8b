"""A progress bar over the query chunks of one ``upsample`` call (``gaussiansr upscale`` of a single image).

``upsample`` decodes the output in chunks of queries, per LR tile when tiling; the decoder runs once per chunk, so a
forward hook on it counts the chunks without any change to the network.
"""
import math
import sys
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

from torch import Tensor
from tqdm import tqdm

from ..archs.gaussiansr_arch import GaussianSR
from ..archs.tiling import tile_plan


def count_chunks(net: GaussianSR, lq: Tensor, size: Tuple[int, int], chunk_size: int, tile: Optional[int],
                 tile_overlap: int) -> Tuple[int, int]:
    """How many query chunks ``net.upsample(lq, size, chunk_size, tile, tile_overlap)`` decodes, and in how many
    tiles (1 without tiling).

    Args:
        net (GaussianSR): The network.
        lq (Tensor): LR images, [B, 3, h, w].
        size (tuple[int, int]): Output (H, W).
        chunk_size (int): Queries per chunk asked for (``upsample`` may fit it to free GPU memory).
        tile (int, optional): LR tile side, or None.
        tile_overlap (int): Context around each tile, in LR pixels.
    """
    chunk = net.fit_chunk_size(lq, chunk_size)
    h, w = lq.shape[-2:]
    tile, tile_overlap = net.tiling(h, w, tile, tile_overlap)
    if not tile or (tile >= h and tile >= w):
        return math.ceil(size[0] * size[1] / chunk), 1
    tiles = tile_plan((h, w), size, int(tile), int(tile_overlap))
    return sum(math.ceil((t.hr_y1 - t.hr_y0) * (t.hr_x1 - t.hr_x0) / chunk) for t in tiles), len(tiles)


class ChunkProgress:
    """A tqdm bar on stderr (with its ETA) that follows the chunks of each render it tracks.

    Args:
        desc (str): Text in front of the bar.
    """

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Optional[tqdm] = None  # made by the first track, so that no empty bar is drawn before

    @contextmanager
    def track(self, net: GaussianSR, lq: Tensor, size: Tuple[int, int], chunk_size: int, tile: Optional[int],
              tile_overlap: int) -> Iterator[None]:
        """Restart the bar at the chunk count of this render and advance it once per decoded chunk."""
        chunks, tiles = count_chunks(net, lq, size, chunk_size, tile, tile_overlap)
        desc = self.desc + (f' ({tiles} tiles)' if tiles > 1 else '')
        if self.bar is None:
            self.bar = tqdm(total=chunks, desc=desc, unit='chunk', file=sys.stderr, dynamic_ncols=True, leave=False)
        else:
            self.bar.set_description(desc, refresh=False)
            self.bar.reset(total=chunks)
        handle = net.decoder.register_forward_hook(self._advance)
        try:
            yield
        finally:
            handle.remove()

    def _advance(self, *args) -> None:
        """The forward hook; returns None, which keeps the decoder's output (tqdm's ``update`` may return True)."""
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
