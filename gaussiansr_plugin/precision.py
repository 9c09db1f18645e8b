"""Inference precision, one context for ``gaussiansr upscale --precision`` and BasicSR validation (``val.precision``).

- ``fp32``: float32 throughout, TF32 off for matmuls and convolutions: the exact reference.
- ``tf32``: float32 storage, TF32 tensor cores for matmuls and convolutions (CUDA, Ampere and later; the same as
  ``fp32`` elsewhere).
- ``bf16``: autocast to bfloat16 for the encoder's convolutions and the decoder's matmuls (float32 accumulation);
  the splat op computes in float32 whatever its inputs, and the output buffer stays float32.

The default, ``tf32``, is the fastest precision whose PSNR-Y stays within 0.01 dB of ``fp32`` at every scale on the
held-out photos (docs/usage.md has the table: TF32 within 0.0004 dB, bf16 down to -0.011 dB at x2); on the CPU it is
``fp32``. ``PRECISIONS`` runs from the slowest to the fastest on tensor-core GPUs.

The memory plans (``GaussianSR.fit_chunk_size``, ``inference.memory_plan``) count float32 queries, which bound the
bfloat16 ones too.
"""
from contextlib import contextmanager
from typing import Iterator

import torch

PRECISIONS = ('fp32', 'tf32', 'bf16')
DEFAULT_PRECISION = 'tf32'


def check_precision(value: object, name: str = 'precision') -> str:
    """``value`` if it names a precision, else a ``ValueError`` naming ``name``."""
    if value not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


@contextmanager
def inference_precision(precision: str, device_type: str) -> Iterator[None]:
    """Run the block at ``precision`` on devices of ``device_type`` (``cpu``, ``cuda``); the global TF32 switches
    are restored afterwards."""
    check_precision(precision)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == 'tf32'
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == 'bf16'):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
