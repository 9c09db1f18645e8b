"""GaussianSR: arbitrary-scale super-resolution with 2D Gaussian splatting (Hu et al., AAAI 2025, arXiv 2407.18046).

Reference code: https://github.com/tljxyys/GaussianSR. Differences from it are listed in docs/architecture.md.
"""
import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from basicsr.utils.registry import ARCH_REGISTRY
from ..ops.splat import BACKENDS as SPLAT_BACKENDS
from ..ops.splat import MAX_RADIUS as SPLAT_MAX_RADIUS
from ..ops.splat import SplatSource
from .bicubic_sampling import sample_bicubic
from .decoder import MLPDecoder
from .encoders import build_encoder, is_builtin, is_convolutional
from ..option_checks import check_int_option, is_int_at_least, is_number, strict_kwargs
from .gabor import GaborTexture
from .gaussian_util import make_cell, make_coord, pair_tensor
from .input_checks import check_upsample_args
from .sgs import (GaussianBank, GaussianHead, balance_loss, constrain, density_factor, refine_kernels,
                  select_kernels)
from .tiling import Tile, tile_plan
from .upsample_graphs import MAX_GRAPH_PIXELS, TensorAddresses, UpsampleGraphs

_NORM_MEAN, _NORM_STD = 0.5, 0.5
# the smallest query chunk that fitting to free memory, out-of-memory retries and the CPU memory plan go down to:
# smaller ones run slowly and save little
MIN_CHUNK_SIZE = 4096
# LR side of the tiles a larger image is encoded in by default (GaussianSR.auto_tile_side)
AUTO_TILE_SIDE = 1024
OFFSET_ENCODINGS = ('linear', 'periodic')


def _check_sizes(bank_size, sigma_range, tau, mlp_hidden, head_hidden) -> None:
    """Reject sizes that would fail deep inside PyTorch (negative dimensions) or train nothing."""
    if not is_int_at_least(bank_size, 1):
        raise ValueError(f'bank_size must be an int >= 1, got {bank_size!r}')
    if not is_int_at_least(head_hidden, 1):
        raise ValueError(f'head_hidden must be an int >= 1, got {head_hidden!r}')
    if not isinstance(mlp_hidden, (list, tuple)) or not all(is_int_at_least(n, 1) for n in mlp_hidden):
        raise ValueError(f'mlp_hidden must be a list of ints >= 1, got {mlp_hidden!r}')
    pair = isinstance(sigma_range, (list, tuple)) and len(sigma_range) == 2 and all(map(is_number, sigma_range))
    if not (pair and 0 < sigma_range[0] < sigma_range[1]):
        raise ValueError(f'sigma_range must be [min, max] with 0 < min < max, got {sigma_range!r}')
    if not (is_number(tau) and tau > 0):
        raise ValueError(f'tau must be > 0, got {tau!r}')


@ARCH_REGISTRY.register()
class GaussianSR(nn.Module):
    """GaussianSR with Selective Gaussian Splatting and dual-stream decoding.

    Every LR pixel becomes a 2D Gaussian that picks its kernel from a learnable bank; the first
    ``num_gaussian_channels`` feature channels are splatted continuously at each query, the rest are sampled
    bicubically; both, with the offset to the nearest LR centre and the cell size, are decoded by an MLP.

    Args:
        encoder (dict): ``type`` (edsr-baseline | edsr | rdn | swinir | a registered arch) and its kwargs,
            optionally ``pretrain_path``. Default: {'type': 'edsr-baseline'}.
        num_gaussian_channels (int): Channels splatted (0: no splatting; C: all). Default: 8.
        bank_size (int): K, kernels in the bank. Default: 100.
        sigma_range (Sequence[float]): Range of sigma in LR pixels. Default: (0.3, 1.5).
        radius (int): Window radius r: (2r+1)^2 Gaussians per query. Default: 3.
        tau (float): Gumbel-softmax temperature (the model may anneal it). Default: 1.
        gumbel_hard (bool): Straight-through one-hot Gumbel samples in training. Default: True.
        eval_selection (str): ``argmax`` or ``soft`` kernel choice at evaluation. Default: 'argmax'.
        gaussian_norm (str): ``density`` (x 1/(2 pi sqrt|Sigma|), the paper's Eq. (3)) or ``peak`` (kernel peak =
            opacity, the official code). Default: 'density' (ahead at every scale in docs/quality.md's ablation).
        mlp_hidden (Sequence[int]): Decoder widths. Default: (256, 256, 256, 256).
        residual (str | None): ``bicubic`` adds the bicubic-upsampled LR image; ``none``/None disables it.
            Default: 'bicubic'.
        head_hidden (int): Hidden channels of the kernel-selection head. Default: 64.
        head_input (str): What the kernel-selection head reads: ``gaussian`` (the splatted channels) or ``all``
            (every encoder channel, as the official code). Default: 'gaussian'.
        kernel_refine (bool): The head also predicts a per-pixel offset of the chosen kernel's (sigma, rho,
            opacity), so every pixel's Gaussian adapts to its content around the bank's choice. Default: False.
        gabor_bands (int): K learned frequencies of the Gabor texture each Gaussian carries (``archs/gabor.py``);
            2K more channels are splatted and decoded. 0: none. Default: 0.
        chunk_size (int): Queries rendered at once by ``upsample``, at most (fewer on a GPU short of free memory,
            ``fit_chunk_size``). Default: 131072.
        splat_backend (str): ``auto`` (CUDA kernel for CUDA tensors when built, else the reference; the environment
            variable ``GAUSSIANSR_SPLAT`` overrides it), ``cuda`` or ``reference``. Default: 'auto'.
        bank_balance (float): Weight of a load-balancing term on the kernel selection (``sgs.balance_loss``, Switch
            Transformer's auxiliary loss), computed in each training forward; the training code adds what
            ``take_balance_loss`` returns to its loss. 0: off. Default: 0.
        offset_encoding (str): How the decoder reads the query's offset r in [-1, 1) to the nearest LR centre
            (y, x): ``linear`` (r itself, as LIIF and the official code; it jumps from +1 to -1 at every LR cell
            border, where the decoded image can step) or ``periodic`` ((sin pi r, cos pi r): the same information
            within a cell, continuous across its borders). Default: 'linear'.
        cell_clip (float | None): Scales above it are decoded with its cell (LTE's cell clipping): the cell input
            stays in the range the decoder was trained on, set it to the training's largest scale; None: the true
            cell at every scale. Changes nothing up to that scale. Default: 4 (docs/quality.md: +0.08 to +0.13 dB
            PSNR-Y at x12, nothing lost at x4 or x6).
        splat_colour (bool): The Gaussians also splat the (normalised) LR colours, three more splatted channels the
            decoder reads: a content-adaptive, continuous interpolation of the colour beside the bicubic one. Needs
            a Gaussian bank. Default: False.

    Attributes:
        auto_cuda_graphs (bool): ``upsample`` in eval mode without gradients on CUDA replays whole-image calls from
            CUDA graphs once one shape repeats (``archs/upsample_graphs.py``); bitwise equal to the plain call.
            Default: True.
        auto_tile_side (int | None): ``upsample`` without ``tile`` of an image of more than ``auto_tile_side``²
            LR pixels encodes it in tiles of that side with the whole context its pixels depend on
            (``context_radius``): the untiled result up to float rounding, in the memory of one tile. None, or an
            encoder that is not convolutional (SwinIR), renders whole images. Default: 1024.
    """

    @strict_kwargs
    def __init__(self,
                 encoder: Optional[dict] = None,
                 num_gaussian_channels: int = 8,
                 bank_size: int = 100,
                 sigma_range: Sequence[float] = (0.3, 1.5),
                 radius: int = 3,
                 tau: float = 1.0,
                 gumbel_hard: bool = True,
                 eval_selection: str = 'argmax',
                 gaussian_norm: str = 'density',
                 mlp_hidden: Sequence[int] = (256, 256, 256, 256),
                 residual: Optional[str] = 'bicubic',
                 head_hidden: int = 64,
                 head_input: str = 'gaussian',
                 kernel_refine: bool = False,
                 gabor_bands: int = 0,
                 chunk_size: int = 131072,
                 splat_backend: str = 'auto',
                 bank_balance: float = 0.0,
                 offset_encoding: str = 'linear',
                 cell_clip: Optional[float] = 4.0,
                 splat_colour: bool = False):
        super().__init__()
        _check_sizes(bank_size, sigma_range, tau, mlp_hidden, head_hidden)
        self.encoder = build_encoder(encoder or {'type': 'edsr-baseline'})
        num_feat = self.encoder.num_feat_out
        if not (is_int_at_least(num_gaussian_channels, 0) and num_gaussian_channels <= num_feat):
            raise ValueError(f'num_gaussian_channels must be in [0, {num_feat}], got {num_gaussian_channels}')
        if gaussian_norm not in ('peak', 'density'):
            raise ValueError(f"gaussian_norm must be 'peak' or 'density', got {gaussian_norm!r}")
        if residual not in ('bicubic', 'none', None):
            raise ValueError(f"residual must be 'bicubic' or 'none', got {residual!r}")
        if eval_selection not in ('argmax', 'soft'):
            raise ValueError(f"eval_selection must be 'argmax' or 'soft', got {eval_selection!r}")
        if not (is_int_at_least(radius, 0) and radius <= SPLAT_MAX_RADIUS):
            raise ValueError(f'radius must be an int in [0, {SPLAT_MAX_RADIUS}], got {radius!r}')
        if head_input not in ('gaussian', 'all'):
            raise ValueError(f"head_input must be 'gaussian' or 'all', got {head_input!r}")
        if not is_int_at_least(gabor_bands, 0):
            raise ValueError(f'gabor_bands must be an int >= 0, got {gabor_bands!r}')
        if head_input == 'gaussian' and num_gaussian_channels == 0 and gabor_bands > 0:
            raise ValueError("head_input: 'gaussian' reads the splatted channels; with num_gaussian_channels: 0 "
                             "and gabor_bands > 0 use head_input: 'all'")
        check_int_option('chunk_size', chunk_size, 1, optional=False)
        if not (is_number(bank_balance) and bank_balance >= 0):
            raise ValueError(f'bank_balance must be a number >= 0, got {bank_balance!r}')
        if bank_balance > 0 and not (num_gaussian_channels > 0 or gabor_bands > 0):
            raise ValueError('bank_balance needs a Gaussian bank (num_gaussian_channels > 0 or gabor_bands > 0)')
        if offset_encoding not in OFFSET_ENCODINGS:
            raise ValueError(f'offset_encoding must be one of {OFFSET_ENCODINGS}, got {offset_encoding!r}')
        if cell_clip is not None and not (is_number(cell_clip) and cell_clip >= 1):
            raise ValueError(f'cell_clip must be a scale >= 1 or null, got {cell_clip!r}')
        if not isinstance(splat_colour, bool):
            raise ValueError(f'splat_colour must be true or false, got {splat_colour!r}')
        if splat_colour and not (num_gaussian_channels > 0 or gabor_bands > 0):
            raise ValueError('splat_colour needs a Gaussian bank (num_gaussian_channels > 0 or gabor_bands > 0)')
        if splat_backend not in SPLAT_BACKENDS:
            raise ValueError(f'splat_backend must be one of {SPLAT_BACKENDS}, got {splat_backend!r}')
        self.num_gaussian_channels = num_gaussian_channels
        self.radius = radius
        self.tau = float(tau)
        self.gumbel_hard = gumbel_hard
        self.eval_selection = eval_selection
        self.gaussian_norm = gaussian_norm
        self.residual = residual == 'bicubic'
        self.chunk_size = chunk_size
        self.auto_cuda_graphs = True
        self.auto_tile_side: Optional[int] = AUTO_TILE_SIDE
        self._graphs = UpsampleGraphs()
        self._addresses = TensorAddresses()
        self.splat_backend = splat_backend
        self.head_input = head_input
        self.kernel_refine = bool(kernel_refine)
        self.has_gaussians = num_gaussian_channels > 0 or gabor_bands > 0
        self.bank_balance = float(bank_balance)
        self.cell_clip = None if cell_clip is None else float(cell_clip)
        self.offset_encoding = offset_encoding
        self.splat_colour = splat_colour
        self._balance_loss: Optional[Tensor] = None  # of the last training forward, until take_balance_loss
        if self.has_gaussians:
            head_ch = num_gaussian_channels if head_input == 'gaussian' else num_feat
            self.head = GaussianHead(head_ch, bank_size, head_hidden, refine=self.kernel_refine)
            self.bank = GaussianBank(bank_size, tuple(sigma_range))
        self.gabor = GaborTexture(num_feat, gabor_bands) if gabor_bands > 0 else None
        self.decoder = MLPDecoder(num_feat + self.offset_features + 2 + 2 * gabor_bands + 3 * splat_colour, 3,
                                  tuple(mlp_hidden))
        # NHWC convolutions: cuDNN's tensor-core kernels (and oneDNN's) take this layout, so the NCHW one costs two
        # transposes around every convolution; moves and loaded weights keep it. Not with a registered encoder of
        # the user's, which may view its activations as NCHW.
        self.channels_last = is_builtin(self.encoder)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def output_options(self) -> dict:
        """The options that change the outputs without changing the weights' shapes, as checkpoints record them
        (``strict`` loading cannot tell a peak-trained bank from a density-trained one)."""
        bank = getattr(self, 'bank', None)
        return {'gaussian_norm': self.gaussian_norm, 'radius': self.radius,
                'residual': 'bicubic' if self.residual else 'none', 'eval_selection': self.eval_selection,
                'sigma_range': [bank.sigma_low, bank.sigma_high] if bank is not None else None,
                'cell_clip': self.cell_clip}

    def output_options_mismatch(self, saved: dict) -> str:
        """'' if ``saved`` (a checkpoint's ``output_options``) matches this network, else what differs, as
        ``gaussian_norm: checkpoint 'peak', network 'density'`` items joined by '; '."""
        mine = self.output_options()
        return '; '.join(f'{key}: checkpoint {saved[key]!r}, network {mine[key]!r}'
                         for key in mine if key in saved and saved[key] != mine[key])

    @staticmethod
    def normalize(lq: Tensor) -> Tensor:
        """[0, 1] RGB -> the network's input range."""
        return (lq - _NORM_MEAN) / _NORM_STD

    def encode(self, lq: Tensor) -> Tensor:
        """Encoder features of an LR image in [0, 1], [B, 3, h, w] -> [B, C, h, w] (channels-last memory with our
        encoders)."""
        x = self.normalize(lq)
        return self.encoder(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)

    def _head_out(self, feat: Tensor) -> Tensor:
        return self.head(feat[:, :self.num_gaussian_channels] if self.head_input == 'gaussian' else feat)

    def kernel_logits(self, feat: Tensor) -> Tensor:
        """Bank logits of every LR pixel, [B, C, h, w] -> [B, K, h, w]."""
        return self._head_out(feat)[:, :self.head.bank_size]

    def gaussians(self, feat: Tensor) -> Optional[Tensor]:
        """Per-pixel Gaussian parameters (sigma_y, sigma_x, rho, opacity), [B, 4, h, w]; None without splatting."""
        if not self.has_gaussians:
            return None
        out = self._head_out(feat)
        k = self.head.bank_size
        # computed here, where the logits are, and kept for the training code: forward's output stays [B, Q, 3]
        self._balance_loss = (self.bank_balance * balance_loss(out[:, :k])
                              if self.training and self.bank_balance > 0 else None)
        sigma_range = (self.bank.sigma_low, self.bank.sigma_high)
        if self.kernel_refine and not self.training and self.eval_selection == 'argmax':
            # the chosen kernel's own unconstrained parameters plus the offset: refine_kernels' value without its
            # round trip through constrain and unconstrain (17 fewer kernels per image)
            raw = self.bank.raw[out[:, :k].argmax(dim=1)].permute(0, 3, 1, 2)
            return constrain(raw + out[:, k:].float(), sigma_range)
        kernels = select_kernels(out[:, :k], self.bank(), self.training, self.tau, self.gumbel_hard,
                                 self.eval_selection)
        return refine_kernels(kernels, out[:, k:].float(), sigma_range) if self.kernel_refine else kernels

    def take_balance_loss(self) -> Optional[Tensor]:
        """``bank_balance`` x the load-balancing term of the last training forward, a scalar to add to the training
        loss; None in eval or with ``bank_balance: 0``. Handed over once, then cleared, so the module does not hold a
        finished step's autograd graph."""
        loss, self._balance_loss = self._balance_loss, None
        return loss

    def query(self, lq: Tensor, feat: Tensor, kernels: Optional[Tensor], coord: Tensor, cell: Tensor) -> Tensor:
        """Decode colours at continuous HR positions.

        Args:
            lq (Tensor): LR image in [0, 1], [B, 3, h, w].
            feat (Tensor): Encoder features, [B, C, h, w].
            kernels (Tensor | None): From ``gaussians``, [B, 4, h, w].
            coord (Tensor): Query centres in [-1, 1], (y, x), [B, Q, 2].
            cell (Tensor): Query cell sizes (2/H, 2/W), [B, Q, 2].

        Returns:
            Tensor: RGB in [0, 1] space (not clamped), [B, Q, 3].
        """
        splat_params = self._splat_params(lq, feat, kernels)
        return self._query(feat, splat_params, self._bicubic_stream(lq, feat), coord, cell)

    def _splat_params(self, lq: Tensor, feat: Tensor, kernels: Optional[Tensor]) -> Optional[SplatSource]:
        """The splat of one image (``splat_maps`` as a ``SplatSource``): once per image, not per query chunk
        (``SplatSource`` also lays the maps out for the CUDA kernels once, at inference)."""
        if kernels is None:
            return None
        return SplatSource(*self.splat_maps(lq, feat, kernels), self.radius, backend=self.splat_backend)

    def splat_maps(self, lq: Tensor, feat: Tensor, kernels: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """What the Gaussians splat, as ``splat`` takes it (maps, sigma, rho, opacity): the splatted channels, the
        demodulated Gabor bands and the normalised colours (``splat_colour``), with the density factor folded into the
        opacity."""
        sigma, rho, opacity = kernels[:, :2], kernels[:, 2:3], kernels[:, 3:4]
        if self.gaussian_norm == 'density':
            opacity = opacity * density_factor(sigma, rho)
        maps = [feat[:, :self.num_gaussian_channels]]
        if self.gabor is not None:
            maps.append(self.gabor.demodulated(feat))
        if self.splat_colour:
            maps.append(self.normalize(lq).to(feat.dtype))
        maps = torch.cat(maps, dim=1) if len(maps) > 1 else maps[0]
        return maps, sigma, rho, opacity

    def _bicubic_stream(self, lq: Tensor, feat: Tensor) -> Tensor:
        """The maps sampled bicubically at each query: non-splatted features, then the normalised LR image if the
        residual is on (one grid_sample call for both), [B, C - C_g (+3), h, w]."""
        side = feat[:, self.num_gaussian_channels:]
        if self.residual:
            side = torch.cat([side, self.normalize(lq).to(side.dtype)], dim=1)
        return side

    def _query(self, feat: Tensor, splat_params: Optional[SplatSource], side: Tensor, coord: Tensor,
               cell: Tensor) -> Tensor:
        """``query`` with the splat parameters (``_splat_params``) and the bicubic-stream maps (``_bicubic_stream``)
        computed once per image; of ``feat`` only its channels and dtype are read."""
        h, w = side.shape[-2:]
        ng = self.num_gaussian_channels
        lr_size = pair_tensor(h, w, coord.device, coord.dtype)
        pos = (coord + 1) * lr_size / 2 - 0.5  # continuous LR-pixel position
        parts = []
        if splat_params is not None:
            splatted = splat_params(coord).to(feat.dtype)
            parts.append(splatted[..., :ng])
            bands_end = ng + (2 * self.gabor.bands if self.gabor is not None else 0)
            if self.gabor is not None:
                parts.append(self.gabor.remodulate(splatted[..., ng:bands_end], pos))
            if self.splat_colour:
                parts.append(splatted[..., bands_end:])
        sampled = sample_bicubic(side, coord) if side.shape[1] > 0 else None
        num_side_feat = feat.shape[1] - ng
        if num_side_feat > 0:
            parts.append(sampled[..., :num_side_feat].to(feat.dtype))
        rel = 2 * (pos - torch.floor(pos + 0.5))  # offset to the nearest LR centre, in [-1, 1)
        if self.offset_encoding == 'periodic':
            rel = torch.cat([torch.sin(math.pi * rel), torch.cos(math.pi * rel)], dim=-1)
        cell_lr = cell * lr_size  # 2 / scale
        if self.cell_clip is not None:
            cell_lr = cell_lr.clamp_min(2 / self.cell_clip)
        parts += [rel.to(feat.dtype), cell_lr.to(feat.dtype)]
        out = self.decoder(torch.cat(parts, dim=-1))
        if self.residual:
            out = out + sampled[..., num_side_feat:]
        return out * _NORM_STD + _NORM_MEAN

    def forward(self, lq: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        """RGB at the queries, [B, 3, h, w], [B, Q, 2], [B, Q, 2] -> [B, Q, 3]."""
        feat = self.encode(lq)
        return self.query(lq, feat, self.gaussians(feat), coord, cell)

    def _render_grid(self, lq: Tensor, coord: Tensor, cell: Tensor, grid_size: Tuple[int, int],
                     chunk_size: int) -> Tensor:
        """Encode ``lq`` once, then decode a grid of queries in chunks.

        Args:
            lq (Tensor): LR images (or one LR tile) in [0, 1], [B, 3, h, w].
            coord (Tensor): Query centres in ``lq``'s frame, (y, x), row-major over ``grid_size``, [H*W, 2].
            cell (Tensor): Cell size in ``lq``'s frame, [1, 2].
            grid_size (tuple[int, int]): (H, W) of the query grid.
            chunk_size (int): Queries per chunk.

        Returns:
            Tensor: [B, 3, H, W].
        """
        b = lq.shape[0]
        feat = self.encode(lq)
        splat_params = self._splat_params(lq, feat, self.gaussians(feat))
        side = self._bicubic_stream(lq, feat)
        feat = feat.new_empty(b, feat.shape[1], 0, 0)  # free the encoder's map while decoding (1 GiB at 2048² LR)
        out = lq.new_empty(b, coord.shape[0], 3)
        for i in range(0, coord.shape[0], chunk_size):
            c = coord[None, i:i + chunk_size].expand(b, -1, -1)
            out[:, i:i + chunk_size] = self._query(feat, splat_params, side, c, cell.expand(b, c.shape[1], 2))
        return out.view(b, grid_size[0], grid_size[1], 3).permute(0, 3, 1, 2)

    @property
    def offset_features(self) -> int:
        """Decoder inputs that encode the offset to the nearest LR centre (``offset_encoding``)."""
        return 4 if self.offset_encoding == 'periodic' else 2

    @property
    def splatted_channels(self) -> int:
        """Channels the splat op carries to each query: the splatted features, two per Gabor band, then the three
        colours with ``splat_colour``; 0 without Gaussians."""
        if not self.has_gaussians:
            return 0
        return self.num_gaussian_channels + (2 * self.gabor.bands if self.gabor is not None else 0) \
            + 3 * self.splat_colour

    def query_bytes(self, dtype: Optional[torch.dtype] = None) -> int:
        """Memory one query of a batch item holds at the peak of decoding its chunk (``_query``), counted from the
        layer shapes: the float32 streams kept until the decoder returns (splat output, remodulated Gabor bands,
        bicubic samples, position, offset, cell), their conversion to ``dtype`` when it is not float32, the decoder
        input and two activations of its widest layer (a Linear output and its GELU) in ``dtype``. The splat
        reference's window on the CPU comes on top (``inference.memory_plan``).

        Args:
            dtype (torch.dtype, optional): Dtype of the features and the decoder. Default: the decoder's.

        Returns:
            int: Bytes per query.
        """
        linears = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        dtype = dtype or linears[0].weight.dtype
        bands = 2 * self.gabor.bands if self.gabor is not None else 0
        splatted = self.splatted_channels
        sampled = self.encoder.num_feat_out - self.num_gaussian_channels + (3 if self.residual else 0)
        streams = splatted + bands + sampled + 4 + self.offset_features  # + position, cell, the offset's features
        in_features = linears[0].in_features
        converted = in_features if dtype != torch.float32 else 0
        activations = converted + in_features + 2 * max(m.out_features for m in linears)
        return 4 * streams + torch.empty((), dtype=dtype).element_size() * activations

    def fit_chunk_size(self, lq: Tensor, chunk_size: int) -> int:
        """``chunk_size``, or fewer queries on a GPU whose free memory could not hold the chunks of ``lq``'s batch
        in half of it (at least ``MIN_CHUNK_SIZE``; the rest is left to the out-of-memory fallbacks). Unchanged
        on the CPU and while a CUDA graph is being captured."""
        if not lq.is_cuda or torch.cuda.is_current_stream_capturing():
            return chunk_size
        free_bytes, _ = torch.cuda.mem_get_info(lq.device)
        fitting = free_bytes // (2 * lq.shape[0] * self.query_bytes())
        return max(min(chunk_size, MIN_CHUNK_SIZE), min(chunk_size, int(fitting)))

    def upsample(self, lq: Tensor, size: Tuple[int, int], chunk_size: Optional[int] = None,
                 tile: Optional[int] = None, tile_overlap: int = 16, out: Optional[Tensor] = None) -> Tensor:
        """Super-resolve whole images to ``size`` with bounded memory.

        Args:
            lq (Tensor): LR images in [0, 1], [B, 3, h, w].
            size (tuple[int, int]): Output (H, W).
            chunk_size (int, optional): Queries per chunk, at most (``fit_chunk_size``). Default: ``self.chunk_size``.
            tile (int, optional): LR tile side; tiles are encoded separately with ``tile_overlap`` LR pixels of
                context on each side, and every HR pixel is rendered by the tile that owns its nearest LR pixel.
                Default: None, whole images up to ``auto_tile_side``² LR pixels, exact tiles beyond.
            tile_overlap (int): Context around each tile, in LR pixels. Default: 16.
            out (Tensor, optional): Receives the result, [B, 3, H, W], on any device and float dtype. With
                ``tile`` and a CPU ``out``, device memory stays bounded by one tile whatever the output size.

        Returns:
            Tensor: [B, 3, H, W], in [0, 1] space (not clamped); ``out`` if given.
        """
        check_upsample_args(self, lq, size, chunk_size, tile, tile_overlap)
        size = (int(size[0]), int(size[1]))
        chunk_size = int(chunk_size or self.chunk_size)
        h, w = lq.shape[-2:]
        tile, tile_overlap = self.tiling(h, w, tile, tile_overlap)
        if out is not None and tuple(out.shape) != (lq.shape[0], 3, *size):
            raise ValueError(f'out must have shape {(lq.shape[0], 3, *size)}, got {tuple(out.shape)}')
        if not tile or (tile >= h and tile >= w):
            render = self._whole_image_render(size, chunk_size)
            rendered = self._graphs(self._graph_key(lq, size, chunk_size), lq, render) \
                if self._graphable(lq, size) else None
            rendered = render(lq) if rendered is None else rendered
            return rendered if out is None else out.copy_(rendered)
        chunk_size = self.fit_chunk_size(lq, chunk_size)
        out = lq.new_empty(lq.shape[0], 3, *size) if out is None else out
        for t in tile_plan((h, w), size, int(tile), int(tile_overlap)):
            rendered = self._render_tile(lq, t, (size[0] / h, size[1] / w), chunk_size)
            out[..., t.hr_y0:t.hr_y1, t.hr_x0:t.hr_x1] = rendered.to(out.device, out.dtype)
        return out

    @property
    def context_radius(self) -> Optional[int]:
        """LR pixels around an HR pixel's nearest LR pixel that its colour may depend on: the convolutions' radii
        summed (a bound for any path through them), plus the splat window or the bicubic taps; None when the encoder
        is not convolutional."""
        if not is_convolutional(self.encoder):
            return None
        convs = sum(max(d * (k // 2) for d, k in zip(m.dilation, m.kernel_size))
                    for m in self.modules() if isinstance(m, nn.Conv2d))
        return convs + max(self.radius, 2)

    def tiling(self, h: int, w: int, tile: Optional[int], tile_overlap: int) -> Tuple[Optional[int], int]:
        """The (tile, tile_overlap) ``upsample`` renders an h x w image with: as given with a ``tile``; without one,
        ``auto_tile_side`` with the exact context for an image of more than ``auto_tile_side``² pixels, else None."""
        side = self.auto_tile_side
        if tile is not None or side is None or h * w <= side * side:
            return tile, tile_overlap
        context = self.context_radius  # counted here only: it walks the modules
        return (tile, tile_overlap) if context is None else (side, context)

    def _whole_image_render(self, size: Tuple[int, int], chunk_size: int) -> Callable[[Tensor], Tensor]:
        """``render(image)`` of ``upsample``: ``render_whole`` at ``chunk_size`` fitted to the free memory at its first
        call and kept, so that a graph recorded from it (keyed by the requested chunk) replays without asking the
        driver for free memory at every call."""
        fitted: List[int] = []

        def render(image: Tensor) -> Tensor:
            if not fitted:
                fitted.append(self.fit_chunk_size(image, chunk_size))
            return self.render_whole(image, size, fitted[0])

        return render

    def render_whole(self, lq: Tensor, size: Tuple[int, int], chunk_size: int) -> Tensor:
        """``upsample`` of whole images, always eager: [B, 3, h, w] -> [B, 3, H, W]."""
        coord = make_coord(size, device=lq.device)
        return self._render_grid(lq, coord, make_cell(1, size, device=lq.device), size, chunk_size)

    def _graphable(self, lq: Tensor, size: Tuple[int, int]) -> bool:
        """Whether ``upsample`` may replay this call from a CUDA graph (``auto_cuda_graphs``): inference on CUDA,
        outputs small enough for launches to matter, nothing watching the kernels one by one (a progress bar's
        hook, a dispatch mode such as a FLOP counter) and no capture under way already."""
        return (self.auto_cuda_graphs and lq.is_cuda and not self.training and not torch.is_grad_enabled()
                and lq.shape[0] * size[0] * size[1] <= MAX_GRAPH_PIXELS
                and not torch.cuda.is_current_stream_capturing() and _get_current_dispatch_mode() is None
                and not any(m._forward_hooks or m._forward_pre_hooks for m in (self, self.decoder)))

    def _apply(self, fn, *args, **kwargs):
        self._addresses.forget()  # .to() and .half() replace the buffers without registering them
        return super()._apply(fn, *args, **kwargs)

    def _graph_key(self, lq: Tensor, size: Tuple[int, int], chunk_size: int) -> tuple:
        """What a recorded upsample depends on beyond the input's pixels and the weights' values."""
        autocast = torch.get_autocast_dtype('cuda') if torch.is_autocast_enabled('cuda') else None
        return (tuple(lq.shape), lq.dtype, lq.device, size, chunk_size, autocast,
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, self.cell_clip,
                self.eval_selection, self.decoder.fuse_bf16, self._addresses(self))

    def _render_tile(self, lq: Tensor, t: Tile, scale: Tuple[float, float], chunk_size: int) -> Tensor:
        """Render the HR pixels [t.hr_y0, t.hr_y1) x [t.hr_x0, t.hr_x1) from the LR window of tile ``t``;
        ``scale`` is the global (H / h, W / w), so the queries keep their positions of the untiled image."""
        patch = lq[..., t.lr_y0:t.lr_y1, t.lr_x0:t.lr_x1]
        ph, pw = patch.shape[-2:]
        sy, sx = scale
        ys = (torch.arange(t.hr_y0, t.hr_y1, device=lq.device) + 0.5) / sy - t.lr_y0
        xs = (torch.arange(t.hr_x0, t.hr_x1, device=lq.device) + 0.5) / sx - t.lr_x0
        coord = torch.stack(torch.meshgrid(2 * ys / ph - 1, 2 * xs / pw - 1, indexing='ij'), dim=-1).reshape(-1, 2)
        cell = pair_tensor(2 / (sy * ph), 2 / (sx * pw), lq.device, lq.dtype).expand(1, 2)
        return self._render_grid(patch, coord, cell, (t.hr_y1 - t.hr_y0, t.hr_x1 - t.hr_x0), chunk_size)
