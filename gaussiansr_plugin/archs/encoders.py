"""Feature-only encoders (no upsampler): LR image [B, 3, h, w] -> features [B, C, h, w].

Built from the ``encoder`` option dict of ``GaussianSR``: ``type`` is one of ``edsr-baseline``, ``edsr``,
``rdn``, ``swinir`` or the name of any class in BasicSR's ``ARCH_REGISTRY`` that maps [B, 3, h, w] to
[B, C, h, w]; the remaining keys are its keyword arguments. Every encoder exposes ``num_feat_out``.
"""
import copy
import inspect
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer
from basicsr.utils.registry import ARCH_REGISTRY
from ..option_checks import check_keys, is_int_at_least, keyword_names
from ..safe_load import load_weights, read_checkpoint, select_weights


class EDSREncoder(nn.Module):
    """EDSR body without upsampler (Lim et al., CVPR-W 2017), as LIIF and GaussianSR use it.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks. Default: 16.
        res_scale (float): Residual scaling. Default: 1.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, num_block: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.num_feat_out = num_feat
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat, res_scale=res_scale, pytorch_init=True)
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_first(x)
        res = x
        for block in self.body:
            res = residual_block(block, res)
        return self.conv_after_body(res).add_(x)


def residual_block(block: ResidualBlockNoBN, x: Tensor) -> Tensor:
    """``block(x)``, with the scaling and the skip added in place into conv2's fresh output: BasicSR's forward
    allocates ``out * res_scale`` and the sum, two more feature maps and kernels per block (1 GiB each at 2048² LR).
    Safe under autograd: a convolution's backward does not read its output."""
    out = block.conv2(block.relu(block.conv1(x)))
    if block.res_scale != 1:
        out.mul_(block.res_scale)
    return out.add_(x)


class _DenseLayer(nn.Module):

    def __init__(self, in_ch: int, growth: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, growth, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, F.relu(self.conv(x))], dim=1)


class _RDB(nn.Module):
    """Residual dense block: ``num_layer`` densely connected convs, 1x1 fusion, local residual."""

    def __init__(self, num_feat: int, growth: int, num_layer: int):
        super().__init__()
        self.layers = nn.Sequential(*[_DenseLayer(num_feat + i * growth, growth) for i in range(num_layer)])
        self.fuse = nn.Conv2d(num_feat + num_layer * growth, num_feat, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.layers(x)) + x


class RDNEncoder(nn.Module):
    """RDN without upsampler (Zhang et al., CVPR 2018), configuration B of LIIF/GaussianSR.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_feat (int): G0, feature channels. Default: 64.
        growth (int): G, growth rate. Default: 64.
        num_block (int): D, residual dense blocks. Default: 16.
        num_layer (int): C, convs per block. Default: 8.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, growth: int = 64, num_block: int = 16,
                 num_layer: int = 8):
        super().__init__()
        self.num_feat_out = num_feat
        self.sfe1 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.sfe2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.blocks = nn.ModuleList([_RDB(num_feat, growth, num_layer) for _ in range(num_block)])
        self.gff = nn.Sequential(nn.Conv2d(num_block * num_feat, num_feat, 1), nn.Conv2d(num_feat, num_feat, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        f1 = self.sfe1(x)
        x = self.sfe2(f1)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return self.gff(torch.cat(outs, dim=1)) + f1


class SwinIREncoder(nn.Module):
    """SwinIR-classical body without its upsampler (Liang et al., ICCV-W 2021), built from BasicSR's SwinIR.

    Inputs are reflect-padded to a multiple of ``window_size`` and the features cropped back.

    Args:
        embed_dim (int): Channels, also ``num_feat_out``. Default: 180.
        depths (list[int]): Swin blocks per RSTB. Default: [6] * 6.
        num_heads (list[int]): Attention heads per RSTB. Default: [6] * 6.
        window_size (int): Attention window. Default: 8.
        mlp_ratio (float): MLP expansion. Default: 2.
        img_size (int): Training patch size (sets the cached attention mask). Default: 48.
    """

    def __init__(self, embed_dim: int = 180, depths: Optional[list] = None, num_heads: Optional[list] = None,
                 window_size: int = 8, mlp_ratio: float = 2.0, img_size: int = 48, **kwargs):
        super().__init__()
        from basicsr.archs.swinir_arch import SwinIR
        swin = SwinIR(
            img_size=img_size, in_chans=3, embed_dim=embed_dim, depths=depths or [6] * 6,
            num_heads=num_heads or [6] * 6, window_size=window_size, mlp_ratio=mlp_ratio, upscale=1,
            upsampler='', resi_connection='1conv', **kwargs)
        self.window_size = window_size
        self.num_feat_out = embed_dim
        self.conv_first = swin.conv_first
        self.swin = swin
        del swin.conv_last  # the image-reconstruction head: not part of a feature encoder

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.window_size, (-w) % self.window_size
        mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        first = self.conv_first(x)
        feat = self.swin.conv_after_body(self.swin.forward_features(first)) + first
        return feat[..., :h, :w]


_BUILTIN = {
    'edsr-baseline': (EDSREncoder, dict(num_feat=64, num_block=16, res_scale=1.0)),
    'edsr': (EDSREncoder, dict(num_feat=256, num_block=32, res_scale=0.1)),
    'rdn': (RDNEncoder, {}),
    'swinir': (SwinIREncoder, {}),
}


def is_builtin(encoder: nn.Module) -> bool:
    """Whether ``encoder`` is one of ours (EDSR, RDN, SwinIR), not a class from BasicSR's ``ARCH_REGISTRY``."""
    return isinstance(encoder, tuple(cls for cls, _ in _BUILTIN.values()))


def is_convolutional(encoder: nn.Module) -> bool:
    """Whether ``encoder`` mixes pixels by stride-1 convolutions only (EDSR, RDN; not SwinIR's attention), so that
    its receptive field is bounded by its convolutions' radii."""
    return isinstance(encoder, (EDSREncoder, RDNEncoder))


# keys every encoder option dict may hold besides its class's arguments (read by ``build_encoder``)
_COMMON_KEYS = ('type', 'pretrain_path', 'num_feat_out')
# SwinIR arguments that SwinIREncoder sets itself
_SWINIR_FIXED = ('in_chans', 'upscale', 'upsampler', 'resi_connection')
# size arguments of the built-in encoders that must be ints >= 1
_SIZE_KEYS = ('num_in_ch', 'num_feat', 'num_block', 'growth', 'num_layer', 'embed_dim', 'window_size', 'img_size')


def _accepted_keys(cls) -> Optional[list]:
    """Keyword arguments ``cls`` accepts, or None when it takes any (``**kwargs`` that are not forwarded to a
    known signature)."""
    if cls is SwinIREncoder:
        from basicsr.archs.swinir_arch import SwinIR
        own = keyword_names(cls.__init__)
        return own + [k for k in keyword_names(SwinIR.__init__) if k not in own and k not in _SWINIR_FIXED]
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return keyword_names(cls.__init__)


def _check_encoder_options(enc_type: str, cls, opt: dict) -> None:
    """Unknown keys and impossible sizes of an encoder option dict -> ``ValueError`` naming them."""
    accepted = _accepted_keys(cls)
    if accepted is not None:
        check_keys(opt, list(accepted) + list(_COMMON_KEYS), f"encoder '{enc_type}'")
    if enc_type not in _BUILTIN:
        return
    for key in _SIZE_KEYS:
        value = opt.get(key)
        if value is not None and not is_int_at_least(value, 1):
            raise ValueError(f"encoder '{enc_type}': {key} must be an int >= 1, got {value!r}")
    for key in ('depths', 'num_heads'):
        value = opt.get(key)
        if value is not None and not (isinstance(value, (list, tuple)) and value
                                      and all(isinstance(v, int) and v >= 1 for v in value)):
            raise ValueError(f"encoder '{enc_type}': {key} must be a non-empty list of ints >= 1, got {value!r}")


def _infer_out_channels(net: nn.Module) -> int:
    with torch.no_grad():
        return int(net(torch.zeros(1, 3, 16, 16)).shape[1])


def _effective(opt: dict) -> dict:
    """Encoder options with the defaults of a built-in type filled in (``pretrain_path`` left out)."""
    enc_type = opt.get('type', 'edsr-baseline')
    defaults = _BUILTIN[enc_type][1] if enc_type in _BUILTIN else {}
    return {k: v for k, v in {**defaults, **opt, 'type': enc_type}.items() if k != 'pretrain_path'}


def check_encoder_output_options(opt: dict, checkpoint: dict, path: str) -> None:
    """Refuse encoder weights from a GaussianSR checkpoint whose recorded ``network_g.encoder`` options differ from
    ``opt`` (e.g. ``res_scale``, which strict loading cannot see), naming the option and both values."""
    saved = checkpoint.get('network_g', {}).get('encoder') if isinstance(checkpoint.get('network_g'), dict) else None
    if not isinstance(saved, dict):
        return
    saved, mine = _effective(saved), _effective(opt)
    differs = '; '.join(f'{k}: checkpoint {saved[k]!r}, network {mine[k]!r}'
                        for k in mine if k in saved and saved[k] != mine[k])
    if differs:
        raise ValueError(f'encoder.pretrain_path {path} was trained with other encoder options ({differs})')


def load_encoder_weights(encoder: nn.Module, path: str, opt: Optional[dict] = None) -> None:
    """Load encoder-only weights strictly from a checkpoint (raw state dict, ``params`` / ``params_ema``, or a
    full GaussianSR state dict whose keys start with ``encoder.``); with ``opt`` (the encoder's options), options
    recorded in the checkpoint must match them, and every weight must be finite."""
    what = f'encoder.pretrain_path {path}'
    checkpoint = read_checkpoint(path, 'encoder.pretrain_path')
    if opt is not None:
        check_encoder_output_options(opt, checkpoint, path)
    state, _ = select_weights(checkpoint)
    if any(k.startswith('encoder.') for k in state):
        state = {k[len('encoder.'):]: v for k, v in state.items() if k.startswith('encoder.')}
    load_weights(encoder, state, what, 'the encoder')


def build_encoder(opt: dict) -> nn.Module:
    """Build a feature encoder from its option dict (not mutated). Sets ``num_feat_out`` if missing."""
    if not isinstance(opt, dict):
        raise ValueError(f'encoder must be a dict of options with a type, got {opt!r}')
    opt = copy.deepcopy(opt)
    enc_type = opt.get('type', 'edsr-baseline')
    if enc_type in _BUILTIN:
        cls, defaults = _BUILTIN[enc_type]
    elif enc_type in ARCH_REGISTRY:
        cls, defaults = ARCH_REGISTRY.get(enc_type), {}
    else:
        raise ValueError(f"unknown encoder type '{enc_type}': use one of {sorted(_BUILTIN)} or a registered arch")
    _check_encoder_options(enc_type, cls, opt)
    opt.pop('type', None)
    pretrain_path = opt.pop('pretrain_path', None)
    num_feat_out = opt.pop('num_feat_out', None)
    encoder = cls(**{**defaults, **opt})
    if not hasattr(encoder, 'num_feat_out'):
        encoder.num_feat_out = num_feat_out or _infer_out_channels(encoder)
    if pretrain_path:
        load_encoder_weights(encoder, pretrain_path, {'type': enc_type, **opt})
    return encoder
