"""Cost of a GaussianSR model: parameters per part, FLOPs (mmengine), latency and peak memory per scale."""
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from ..archs.gaussian_util import output_size
from ..archs.gaussiansr_arch import GaussianSR
from ..errors import first_line
from .upscaler import RenderPlan, render


class UpsampleAt(nn.Module):
    """``net.upsample`` at a fixed output size, as a module whose ``forward`` takes only the LR image."""

    def __init__(self, net: GaussianSR, size: Tuple[int, int]):
        super().__init__()
        self.net = net
        self.size = size

    def forward(self, lq: Tensor) -> Tensor:
        return self.net.upsample(lq, self.size)


def parameter_counts(net: GaussianSR) -> Dict[str, int]:
    """Parameters of ``encoder``, ``Gaussians`` (the selection head, the bank and the Gabor amplitudes), ``decoder``
    and in ``total``."""

    def count(*modules: Optional[nn.Module]) -> int:
        return sum(p.numel() for m in modules if m is not None for p in m.parameters())

    return {
        'encoder': count(net.encoder),
        'Gaussians': count(getattr(net, 'head', None), getattr(net, 'bank', None), net.gabor),
        'decoder': count(net.decoder),
        'total': count(net),
    }


@dataclass
class Flops:
    """FLOPs counted by mmengine (one multiply-add = 1, its convention), or why they could not be."""
    total: Optional[float] = None
    by_part: Dict[str, float] = field(default_factory=dict)
    uncounted_ops: List[str] = field(default_factory=list)
    error: Optional[str] = None


def count_flops(net: GaussianSR, lq: Tensor, size: Tuple[int, int]) -> Flops:
    """FLOPs of ``net.upsample(lq, size)`` with mmengine's ``FlopAnalyzer`` (the counter behind its
    ``get_model_complexity_info``), by part, with the operators it could not count; never raises on a failed trace.
    """
    from mmengine.analysis import FlopAnalyzer
    try:
        analyzer = FlopAnalyzer(UpsampleAt(net, size).eval(), (lq, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        with torch.no_grad():
            by_module = analyzer.by_module()
            ops = analyzer.unsupported_ops()
    except Exception as exc:  # a trace can fail on any op; report it in the table instead
        return Flops(error=f'{type(exc).__name__}: {first_line(exc)}')
    parts = {'encoder': ['net.encoder'], 'Gaussians': ['net.head', 'net.bank', 'net.gabor'], 'decoder': ['net.decoder']}
    by_part = {name: float(sum(by_module.get(m, 0) for m in modules)) for name, modules in parts.items()}
    return Flops(total=float(by_module['']), by_part=by_part, uncounted_ops=sorted(ops))


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """What a published figure names as its machine: the GPU's name, or the CPU's architecture."""
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in ms after ``warmup`` calls (CUDA events on CUDA, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            start_s = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start_s) * 1000)
    return statistics.median(times)


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of the CPU memory torch's allocator holds during one call of ``fn``, above what it held before: the
    running sum of the allocations and frees the torch profiler records (``profile_memory``)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == '[memory]' and e.device_type() == torch.autograd.DeviceType.CPU]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return peak


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call of ``fn`` in MB, above what was allocated before, as torch reports it:
    ``torch.cuda.max_memory_allocated`` on CUDA, the torch profiler's memory events on the CPU (tensors only, not
    the interpreter or the allocator's cache)."""
    if device.type != 'cuda':
        return _cpu_peak_bytes(fn) / 2**20
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


@dataclass
class ScaleCost:
    """Cost of upscaling one LR image at one scale."""
    scale: float
    size: Tuple[int, int]
    flops: Flops
    latency_ms: float
    peak_mb: float


def profile_scale(net: GaussianSR, lq: Tensor, scale: float, repeats: int) -> ScaleCost:
    """FLOPs, median latency and peak memory of ``net.upsample`` at one scale (``lq`` on the target device), as one
    image costs: the repeated calls here would otherwise be replayed from a CUDA graph (``auto_cuda_graphs``)."""
    size = output_size(lq.shape[-2:], scale)
    plan = RenderPlan(chunk_size=net.chunk_size)
    auto_cuda_graphs, net.auto_cuda_graphs = net.auto_cuda_graphs, False
    try:
        counted = count_flops(net, lq, size)

        def call() -> Tensor:
            return render(net, lq, size, plan)

        latency = time_call(call, lq.device, repeats)
        peak_mb = peak_memory_mb(call, lq.device)
    finally:
        net.auto_cuda_graphs = auto_cuda_graphs
    return ScaleCost(scale=scale, size=size, flops=counted, latency_ms=latency, peak_mb=peak_mb)
