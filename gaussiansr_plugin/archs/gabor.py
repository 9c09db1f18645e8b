"""Gabor textures carried by the Gaussians: each LR pixel's Gaussian is also the envelope of a local texture.

Pixel ``j`` (centre ``c_j``) carries, for each of ``K`` learned frequencies ``f_k`` (cycles per LR pixel), a complex
amplitude ``a_jk = A_jk + i B_jk`` predicted from the encoder features. Its contribution at a query ``p`` is the
Gabor function ``w_j(p) Re[conj(a_jk) e^{i theta_k(p - c_j)}]``, ``theta_k(x) = 2 pi f_k . x``, with ``w_j`` the
pixel's Gaussian weight. Because ``e^{i theta_k(p - c_j)} = e^{i theta_k(p)} e^{-i theta_k(c_j)}``, the sum over the
window is a plain splat of the demodulated amplitudes ``a_jk e^{-i theta_k(c_j)}`` (two channels per band, computed
once per image), remodulated at the query by ``e^{i theta_k(p)}``: high-frequency content at any scale, continuous
across LR cell borders, through the same splat op as the features.
"""
import math

import torch
from torch import Tensor, nn


class GaborTexture(nn.Module):
    """Per-pixel complex amplitudes of ``bands`` learned frequencies, their demodulation and remodulation.

    Args:
        in_ch (int): Encoder channels the amplitudes are predicted from.
        bands (int): K, the number of frequencies.
        max_freq (float): Initial frequencies have radii spread over (0, max_freq] cycles per LR pixel (the LR
            Nyquist frequency is 0.5; x4 content reaches 2). Default: 1.5.
    """

    def __init__(self, in_ch: int, bands: int, max_freq: float = 1.5):
        super().__init__()
        self.bands = bands
        self.amplitude = nn.Conv2d(in_ch, 2 * bands, 3, 1, 1)
        radius = max_freq * (torch.arange(bands, dtype=torch.float32) + 1) / bands
        angle = math.pi * ((torch.arange(bands, dtype=torch.float32) * 0.618034) % 1.0)  # golden-ratio spread
        self.freq = nn.Parameter(torch.stack([radius * torch.sin(angle), radius * torch.cos(angle)], dim=1))  # (y, x)

    def _phase(self, pos: Tensor) -> Tensor:
        """theta_k(pos) mod 2 pi for LR-pixel positions ``pos`` [..., 2] -> [..., K]; the cycles are reduced in
        float64 so that large images keep the phase exact."""
        cycles = pos.double() @ self.freq.double().t()
        return (2 * math.pi) * (cycles - torch.floor(cycles)).to(self.freq.dtype)

    def demodulated(self, feat: Tensor) -> Tensor:
        """The maps to splat, ``a_jk e^{-i theta_k(c_j)}`` as (real, imaginary) channels,
        [B, C, h, w] -> [B, 2K, h, w]."""
        h, w = feat.shape[-2:]
        amp_re, amp_im = self.amplitude(feat).float().chunk(2, dim=1)
        ys = torch.arange(h, device=feat.device, dtype=torch.float32)
        xs = torch.arange(w, device=feat.device, dtype=torch.float32)
        centres = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1)  # [h, w, 2]
        phase = self._phase(centres).permute(2, 0, 1)[None]  # [1, K, h, w]
        cos, sin = torch.cos(phase), torch.sin(phase)
        return torch.cat([amp_re * cos + amp_im * sin, amp_im * cos - amp_re * sin], dim=1).to(feat.dtype)

    def remodulate(self, splatted: Tensor, pos: Tensor) -> Tensor:
        """Texture features at the queries: the in-phase and quadrature parts of the splatted bands.

        Args:
            splatted (Tensor): Splat of ``demodulated``, [B, Q, 2K].
            pos (Tensor): Continuous LR-pixel positions of the queries, [B, Q, 2].

        Returns:
            Tensor: [B, Q, 2K].
        """
        re, im = splatted.float().chunk(2, dim=-1)
        phase = self._phase(pos)
        cos, sin = torch.cos(phase), torch.sin(phase)
        return torch.cat([re * cos - im * sin, re * sin + im * cos], dim=-1).to(splatted.dtype)
